"""The shared systems' section of the monthly report as tables: one row per system (its
availability seen from the communes, the time left out, its response times, its
incidents), then the incidents themselves, when, how long and what.

Every format lays these out its own way (render.py, docx.py); a report without shared
systems (a province without a catalogue) has none.
"""

from __future__ import annotations

from dataclasses import dataclass

from collector.common.localtime import local
from collector.common.words import KINDS, Language
from collector.common.words import REPORT as TEXT
from collector.outputs.report.build import MonthlyReport
from collector.outputs.report.cells import Cell, Duration, Table
from collector.outputs.report.sentences import number
from collector.outputs.report.systemwords import INCIDENTS, SYSTEMS_TEXT, system_name
from collector.state.systemhealth import Incident


@dataclass(frozen=True)
class Section:
    """One table of the section: its heading, its sheet's name in a workbook, its cells."""

    heading: str
    sheet: str
    table: Table


def _rounded(value: float | None, digits: int) -> Cell:
    return None if value is None else round(value, digits)


def _milliseconds(value: float | None) -> Cell:
    return None if value is None else round(value)


def system_tables(report: MonthlyReport, language: Language) -> list[Section]:
    """The systems' table and the incidents' table; none without shared systems."""
    if not report.systems:
        return []
    w = SYSTEMS_TEXT[language]
    columns = [
        TEXT[language]["no"],
        w["system"],
        w["used_by"],
        w["watched"],
        w["availability"],
        w["availability_with"],
        w["downtime"],
        w["maintenance"],
        w["line"],
        w["p50"],
        w["p95"],
        w["incidents"],
    ]
    rows: list[list[Cell]] = []
    for index, system in enumerate(report.systems, 1):
        f = system.figures
        rows.append(
            [
                index,
                system_name(system, language),
                system.communes,
                f.communes,
                _rounded(f.availability, 3),
                _rounded(f.availability_with_maintenance, 3),
                Duration(f.down_s),
                Duration(f.maintenance_s),
                Duration(f.line_excluded_s),
                _milliseconds(f.p50_ms),
                _milliseconds(f.p95_ms),
                len(f.incidents),
            ]
        )
    return [
        Section(w["heading"], w["sheet"], (columns, rows)),
        Section(w["incidents_heading"], w["incidents_sheet"], incidents_table(report, language)),
    ]


def incidents_table(report: MonthlyReport, language: Language) -> Table:
    """Every system's incidents in the month, system by system, each in the order it began."""
    w = SYSTEMS_TEXT[language]
    names = {c.slug: c.name for c in report.communes}
    columns = [TEXT[language]["no"], w["system"], w["started"], w["ended"], w["lasted"], w["what"]]
    rows: list[list[Cell]] = []
    for system in report.systems:
        for incident in sorted(system.figures.incidents, key=lambda i: (i.started, i.alert_id)):
            rows.append(
                [
                    len(rows) + 1,
                    system_name(system, language),
                    _when(incident.started),
                    w["ongoing"] if incident.ended is None else _when(incident.ended),
                    Duration(_lasted(incident, report)),
                    incident_what(incident, names, language),
                ]
            )
    return columns, rows


def _when(ts: float) -> str:
    return local(ts).strftime("%d/%m/%Y %H:%M")


def _lasted(incident: Incident, report: MonthlyReport) -> float:
    """From its start to its end; one not over yet, to the report's end."""
    end = report.end if incident.ended is None else incident.ended
    return max(end - incident.started, 0.0)


def incident_what(incident: Incident, names: dict[str, str], language: Language) -> str:
    """What the incident was, in the report's words: the alert's kind, the commune it is
    about (none for the system as a whole), what the alert measured."""
    commune = names.get(incident.communes, incident.communes)
    value = _value(incident.value, language)
    template = INCIDENTS[language].get(incident.rule)
    if template is not None:
        return template.format(commune=commune or "—", value=value)
    # A rule the report has no words for: its name in the console's words.
    what = KINDS[language].get(incident.rule, incident.rule)
    if commune:
        what += f" — {commune}"
    return what + (f" ({value})" if value != "—" else "")


def _value(text: str, language: Language) -> str:
    """An alert's measure as the report writes numbers ("9,5" in Vietnamese)."""
    if not text:
        return "—"
    try:
        measured = float(text)
    except ValueError:
        return text
    return number(measured, 0 if measured.is_integer() else 1, language)

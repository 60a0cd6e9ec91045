"""The sentences the province's reports are written in, filled from the month's figures.

The province's monthly report does not paste tables: it states, item by item, e.g.
"Hệ thống phòng chống mã độc: 98,7% máy tính tại các phường, xã (4.934/5.000 máy)
được cài đặt và hoạt động phần mềm phòng chống mã độc". These are those sentences,
numbers written the Vietnamese way (4.934; 98,7%), so they go into the report as
they are. The shared systems are said as the seeds list them, one item each ("Hệ
thống quản lý văn bản: ..."). English is given for the IOC's own use.
"""

from __future__ import annotations

from collector.common.shares import below_whole
from collector.common.words import Language
from collector.outputs.report.build import CommuneMonth, MonthlyReport
from collector.outputs.report.systemwords import system_name
from collector.state.systemhealth import SystemPeriod


def number(value: float, digits: int = 0, language: Language = "vi") -> str:
    """4934 → "4.934", 98.71 → "98,7" (vi); "4,934", "98.7" (en)."""
    text = f"{value:,.{digits}f}"
    if language == "vi":
        text = text.replace(",", " ").replace(".", ",").replace(" ", ".")
    return text


def hours(seconds: float, language: Language = "vi") -> str:
    minutes = round(seconds / 60)
    h, m = divmod(minutes, 60)
    if language == "vi":
        return f"{h} giờ {m:02d} phút" if h else f"{m} phút"
    return f"{h} h {m:02d} min" if h else f"{m} min"


def _percent(value: float | None, language: Language, digits: int = 1) -> str:
    return "—" if value is None else f"{number(below_whole(value, digits), digits, language)}%"


def antimalware(total: CommuneMonth, language: Language = "vi") -> str:
    denominator = total.pcs_expected or total.pcs_reporting
    share = 100.0 * total.pcs_protected_at_end / denominator if denominator else None
    p = _percent(share, language)
    n = number(total.pcs_protected_at_end, 0, language)
    d = number(denominator, 0, language)
    old = number(total.pcs_old_signatures_at_end, 0, language)
    time_share = _percent(total.protected_percent, language)
    if language == "vi":
        return (
            f"Hệ thống phòng chống mã độc: {p} máy tính tại các phường, xã ({n}/{d} máy) "
            f"được cài đặt và hoạt động phần mềm phòng chống mã độc; {old} máy có mẫu nhận "
            f"diện cũ; tỷ lệ thời gian máy tính được bảo vệ trong tháng: {time_share}."
        )
    return (
        f"Anti-malware: {p} of the communes' PCs ({n}/{d}) have anti-malware installed and "
        f"running; {old} with old signatures; share of PC time protected in the month: "
        f"{time_share}."
    )


def network(total: CommuneMonth, communes: int, language: Language = "vi") -> str:
    watched = number(total.communes_line_monitored, 0, language)
    of = number(communes, 0, language)
    with_m = _percent(total.line_availability, language, 2)
    without = _percent(total.line_availability_excl_maintenance, language, 2)
    outages = number(total.line_outages, 0, language)
    down = hours(total.line_downtime_s, language)
    kept = hours(total.line_maintenance_s, language)
    if language == "vi":
        return (
            f"Mạng truyền số liệu chuyên dùng: {watched}/{of} xã, phường được giám sát đường "
            f"truyền; tỷ lệ sẵn sàng bình quân {with_m} (không tính thời gian bảo trì: "
            f"{without}; thời gian bảo trì {kept}); {outages} lần gián đoạn, tổng thời gian "
            f"gián đoạn {down}."
        )
    return (
        f"Dedicated data network (TSLCD): {watched}/{of} communes' lines monitored; mean "
        f"availability {with_m} (without maintenance: {without}; maintenance {kept}); "
        f"{outages} outages, {down} in all."
    )


def conference(total: CommuneMonth, language: Language = "vi") -> str:
    ready = number(total.communes_ready, 0, language)
    of = number(total.communes_with_polycom, 0, language)
    share = _percent(total.polycom_ready_percent, language)
    without = _percent(total.polycom_ready_percent_excl_maintenance, language)
    if language == "vi":
        return (
            f"Hội nghị truyền hình trực tuyến: {ready}/{of} UBND xã/phường sẵn sàng họp trực "
            f"tuyến qua đường Truyền số liệu chuyên dùng (tỷ lệ thời gian sẵn sàng {share}; "
            f"không tính thời gian bảo trì: {without})."
        )
    return (
        f"Online conferencing: {ready}/{of} commune People's Committees ready to meet over "
        f"the dedicated network (share of time ready {share}; without maintenance: {without})."
    )


def alerts(total: CommuneMonth, language: Language = "vi") -> str:
    count = number(total.alerts, 0, language)
    acked = number(total.alerts_acked, 0, language)
    mean = (
        "—"
        if total.mean_ack_minutes is None
        else number(total.mean_ack_minutes, 0, language) + (" phút" if language == "vi" else " min")
    )
    if language == "vi":
        return (
            f"Cảnh báo: {count} cảnh báo trong tháng, {acked} đã được cán bộ kỹ thuật xác "
            f"nhận; thời gian xác nhận trung bình {mean}."
        )
    return f"Alerts: {count} in the month, {acked} acknowledged; mean time to acknowledge {mean}."


def _ms(value: float | None, language: Language) -> str:
    return "—" if value is None else f"{number(value, 0, language)} ms"


def shared_systems(systems: list[SystemPeriod], language: Language = "vi") -> str:
    """The section's item: how many systems, the least available, the incidents."""
    watched = [s for s in systems if s.figures.availability is not None]
    count, with_figures = number(len(systems), 0, language), number(len(watched), 0, language)
    incidents = number(sum(len(s.figures.incidents) for s in systems), 0, language)
    lowest = ""
    if watched:
        worst = min(watched, key=lambda s: s.figures.availability or 0.0)
        share = _percent(worst.figures.availability, language, 2)
        lowest = f"{system_name(worst, language)} ({share})"
    if language == "vi":
        least = f"; tỷ lệ sẵn sàng thấp nhất: {lowest}" if lowest else ""
        return (
            f"Các hệ thống thông tin dùng chung: {count} hệ thống được giám sát từ các xã, "
            f"phường, {with_figures} hệ thống có số liệu trong tháng{least}; {incidents} sự "
            "cố trong tháng."
        )
    least = f"; lowest availability: {lowest}" if lowest else ""
    return (
        f"Shared information systems: {count} systems watched from the communes, "
        f"{with_figures} with figures in the month{least}; {incidents} incidents in the month."
    )


def shared_system(system: SystemPeriod, language: Language = "vi") -> str:
    """One system over the month, as the seeds state an item: its name, then its figures."""
    f, name = system.figures, system_name(system, language)
    used = number(system.communes, 0, language)
    if f.availability is None:
        if language == "vi":
            return f"{name}: chưa có số liệu giám sát trong tháng ({used} xã, phường sử dụng)."
        return f"{name}: no figures in the month ({used} communes use it)."
    share = _percent(f.availability, language, 2)
    with_m = _percent(f.availability_with_maintenance, language, 2)
    watched = number(f.communes, 0, language)
    kept, line = hours(f.maintenance_s, language), hours(f.line_excluded_s, language)
    p50, p95 = _ms(f.p50_ms, language), _ms(f.p95_ms, language)
    incidents = number(len(f.incidents), 0, language)
    if language == "vi":
        return (
            f"{name}: tỷ lệ sẵn sàng {share} (tính cả thời gian bảo trì: {with_m}), theo dõi "
            f"từ {watched}/{used} xã, phường; không tính thời gian bảo trì ({kept}) và thời "
            f"gian mất đường truyền của xã ({line}); thời gian phản hồi trung vị {p50}, phân "
            f"vị 95: {p95}; {incidents} sự cố."
        )
    return (
        f"{name}: availability {share} (with maintenance: {with_m}), watched from "
        f"{watched}/{used} communes; less maintenance ({kept}) and the communes' own line "
        f"outages ({line}); median response time {p50}, 95th percentile {p95}; "
        f"{incidents} incidents."
    )


def _systems_shortcoming(systems: list[SystemPeriod], language: Language, worst: int) -> list[str]:
    """The systems with incidents or time the communes could not use them, least
    available first."""
    failing = sorted(
        (s for s in systems if s.figures.incidents or s.figures.down_s > 0),
        key=lambda s: (s.figures.availability is None, s.figures.availability or 0.0),
    )[:worst]
    if not failing:
        return []
    vi = language == "vi"

    def one(system: SystemPeriod) -> str:
        share = _percent(system.figures.availability, language, 2)
        count = number(len(system.figures.incidents), 0, language)
        figures = f"sẵn sàng {share}, {count} sự cố" if vi else f"{share}, {count} incidents"
        return f"{system_name(system, language)} ({figures})"

    named = ", ".join(one(s) for s in failing)
    return [
        f"Hệ thống thông tin dùng chung có sự cố hoặc gián đoạn trong tháng: {named}."
        if vi
        else f"Shared systems with incidents or outages in the month: {named}."
    ]


def shortcomings(report: MonthlyReport, language: Language = "vi", worst: int = 3) -> list[str]:
    """What the figures show is still wrong, one sentence each (none when all is well):
    the opening of "Tồn tại, hạn chế", which the office completes."""
    total, vi = report.total, language == "vi"
    said = []
    expected = total.pcs_expected or total.pcs_reporting
    unprotected = max(expected - total.pcs_protected_at_end, 0)
    if unprotected:
        n, d = number(unprotected, 0, language), number(expected, 0, language)
        said.append(
            f"{n}/{d} máy tính chưa được bảo vệ (chưa cài đặt, chưa hoạt động phần mềm phòng "
            "chống mã độc hoặc chưa báo cáo) vào cuối tháng."
            if vi
            else f"{n}/{d} PCs not protected at the end of the month (no anti-malware, "
            "not running, or not reporting)."
        )
    if total.pcs_old_signatures_at_end:
        old = number(total.pcs_old_signatures_at_end, 0, language)
        said.append(
            f"{old} máy tính có mẫu nhận diện mã độc cũ vào cuối tháng."
            if vi
            else f"{old} PCs with old signatures at the end of the month."
        )
    unwatched = len(report.communes) - total.communes_line_monitored
    if unwatched > 0:
        n, d = number(unwatched, 0, language), number(len(report.communes), 0, language)
        said.append(
            f"{n}/{d} xã, phường chưa được giám sát đường truyền số liệu chuyên dùng."
            if vi
            else f"{n}/{d} communes' dedicated lines not monitored."
        )
    down = sorted(
        (c for c in report.communes if c.line_downtime_s > 0), key=lambda c: -c.line_downtime_s
    )[:worst]
    if down:
        names = ", ".join(f"{c.name} ({hours(c.line_downtime_s, language)})" for c in down)
        said.append(
            f"Đường truyền gián đoạn lâu nhất trong tháng: {names}."
            if vi
            else f"Longest line outages in the month: {names}."
        )
    not_ready = total.communes_with_polycom - total.communes_ready
    if not_ready > 0:
        n, d = number(not_ready, 0, language), number(total.communes_with_polycom, 0, language)
        said.append(
            f"{n}/{d} xã, phường có thiết bị hội nghị truyền hình chưa sẵn sàng vào cuối tháng."
            if vi
            else f"{n}/{d} communes' conferencing endpoints not ready at the end of the month."
        )
    unacked = total.alerts - total.alerts_acked
    if unacked > 0:
        n, d = number(unacked, 0, language), number(total.alerts, 0, language)
        said.append(
            f"{n}/{d} cảnh báo chưa được cán bộ kỹ thuật xác nhận."
            if vi
            else f"{n}/{d} alerts never acknowledged."
        )
    return said + _systems_shortcoming(report.systems, language, worst)


def all_sentences(report: MonthlyReport, language: Language = "vi") -> list[str]:
    """One sentence per section, in the report's order (the shared systems' when the
    province has a catalogue of them)."""
    total = report.total
    said = [
        antimalware(total, language),
        network(total, len(report.communes), language),
        conference(total, language),
        alerts(total, language),
    ]
    if report.systems:
        said.append(shared_systems(report.systems, language))
    return said

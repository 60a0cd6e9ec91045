"""The sentences the province's reports are written in, filled from the month's figures.

The province's monthly report does not paste tables: it states, item by item, e.g.
"Hệ thống phòng chống mã độc: 98,7% máy tính tại các phường, xã (4.934/5.000 máy)
được cài đặt và hoạt động phần mềm phòng chống mã độc". These are those sentences,
numbers written the Vietnamese way (4.934; 98,7%), so they go into the report as
they are. English is given for the IOC's own use.
"""

from __future__ import annotations

from collector.common.words import Language
from collector.outputs.report.build import CommuneMonth, MonthlyReport


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
    return "—" if value is None else f"{number(value, digits, language)}%"


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
    return said


def all_sentences(report: MonthlyReport, language: Language = "vi") -> list[str]:
    """One sentence per section, in the report's order."""
    total = report.total
    return [
        antimalware(total, language),
        network(total, len(report.communes), language),
        conference(total, language),
        alerts(total, language),
    ]

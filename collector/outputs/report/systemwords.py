"""The words of the monthly report's section on the province's shared systems.

In the seed reports' terms: "các hệ thống thông tin dùng chung" are the systems the
province runs for every commune office (Hệ thống một cửa điện tử, Hệ thống quản lý
văn bản, thư điện tử, họp không giấy tờ, Hệ thống thông tin báo cáo, DongNai.LIS,
LGSP, IOC), and "Trang thông tin điện tử" each commune's own website. English is
given for the IOC's own use.
"""

from __future__ import annotations

from collector.common.words import Language
from collector.state.systemhealth import SystemPeriod
from collector.state.systems import WEBSITE

SYSTEMS_TEXT: dict[Language, dict[str, str]] = {
    "vi": {
        "heading": "V. Các hệ thống thông tin dùng chung",
        "item": "Các hệ thống thông tin dùng chung",
        "incidents_heading": "Sự cố các hệ thống thông tin dùng chung",
        "sheet": "5. Hệ thống dùng chung",
        "incidents_sheet": "6. Sự cố hệ thống dùng chung",
        "websites": "Trang thông tin điện tử của các xã",
        "system": "Hệ thống",
        "used_by": "Số xã, phường sử dụng",
        "watched": "Số xã, phường có số liệu",
        "availability": "Tỷ lệ sẵn sàng (%)",
        "availability_with": "Tỷ lệ sẵn sàng tính cả thời gian bảo trì (%)",
        "downtime": "Thời gian không truy cập được, cộng dồn các xã (giờ:phút)",
        "maintenance": "Thời gian bảo trì, cộng dồn các xã (giờ:phút)",
        "line": "Thời gian mất đường truyền của xã, cộng dồn (giờ:phút)",
        "unwatched": "Thời gian không có số liệu do máy đo tắt, cộng dồn (giờ:phút)",
        "p50": "Thời gian phản hồi trung vị (ms)",
        "p95": "Thời gian phản hồi phân vị 95 (ms)",
        "incidents": "Số sự cố",
        "started": "Bắt đầu",
        "ended": "Kết thúc",
        "lasted": "Thời gian (giờ:phút)",
        "what": "Nội dung",
        "ongoing": "Chưa kết thúc",
        "no_incidents": "Không có sự cố trong tháng.",
        "notes": (
            "Tỷ lệ sẵn sàng của mỗi hệ thống tính theo thời gian, trên tổng thời gian các "
            "xã, phường theo dõi hệ thống (mỗi xã một điểm đo), không tính thời gian bảo trì "
            "và thời gian đường truyền của chính xã bị gián đoạn; hai khoảng thời gian này và "
            "thời gian không truy cập được là tổng của các xã, phường. Thời gian phản hồi tính "
            "trên các lần truy cập thành công."
        ),
    },
    "en": {
        "heading": "V. Shared information systems",
        "item": "Shared information systems",
        "incidents_heading": "Incidents of the shared information systems",
        "sheet": "5. Shared systems",
        "incidents_sheet": "6. Shared systems' incidents",
        "websites": "The communes' own websites",
        "system": "System",
        "used_by": "Communes using it",
        "watched": "Communes with figures",
        "availability": "Availability (%)",
        "availability_with": "Availability with maintenance (%)",
        "downtime": "Time unreachable, summed over the communes (h:mm)",
        "maintenance": "Maintenance, summed over the communes (h:mm)",
        "line": "Communes' own line outages, summed (h:mm)",
        "unwatched": "No data as the probing PC was off, summed (h:mm)",
        "p50": "Median response time (ms)",
        "p95": "95th percentile response time (ms)",
        "incidents": "Incidents",
        "started": "Started",
        "ended": "Ended",
        "lasted": "Lasted (h:mm)",
        "what": "What",
        "ongoing": "Not over",
        "no_incidents": "No incident in the month.",
        "notes": (
            "Each system's availability is time-weighted over the time the communes watched "
            "it (one probe per commune), less its maintenance and the time each commune's own "
            "line was down; those two and the time unreachable are summed over the communes. "
            "Response times are of the healthy answers."
        ),
    },
}


#: An incident in the report's words, by the alert's rule ({commune}: the commune it is
#: about, {value}: what the alert measured; collector/alerts/defaults.toml).
INCIDENTS: dict[Language, dict[str, str]] = {
    "vi": {
        "system_down": "Không truy cập được từ {value} xã, phường có đường truyền bình thường",
        "system_slow": "Chậm tại hầu hết các xã, phường (trung vị {value} ms)",
        "system_certificate_expiring": "Chứng thư số sắp hết hạn (còn {value} ngày)",
        "system_unreachable_here": "{commune} không truy cập được trong khi đường truyền vẫn "
        "hoạt động ({value})",
        "system_slow_here": "Chậm tại {commune} ({value})",
        "website_down": "Trang của {commune} không truy cập được ({value})",
        "website_certificate_expiring": "Chứng thư số của trang {commune} sắp hết hạn "
        "(còn {value} ngày)",
    },
    "en": {
        "system_down": "Unreachable from {value} communes whose line was up",
        "system_slow": "Slow from most communes (median {value} ms)",
        "system_certificate_expiring": "Certificate about to expire ({value} days left)",
        "system_unreachable_here": "Unreachable from {commune} while its line was up ({value})",
        "system_slow_here": "Slow at {commune} ({value})",
        "website_down": "{commune}'s site unreachable ({value})",
        "website_certificate_expiring": "{commune}'s site certificate about to expire "
        "({value} days left)",
    },
}


def system_name(system: SystemPeriod, language: Language) -> str:
    """The system as the report names it: the catalogue's name, and one name for the
    communes' websites together."""
    return SYSTEMS_TEXT[language]["websites"] if system.id == WEBSITE else system.name

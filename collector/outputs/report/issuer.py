"""Who issues the monthly report's Word document: its body, number, signer, recipients."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Issuer:
    """Who issues the report: from ``[report]`` in the collector's config."""

    parent: str = ""
    """The body above the issuer, e.g. "UBND TỈNH ĐỒNG NAI"; default from the province."""
    body: str = "SỞ KHOA HỌC VÀ CÔNG NGHỆ"
    short: str = "SKHCN"
    """In the number: "Số: …/BC-SKHCN"."""
    number: str = ""
    """The document's number once registered; empty leaves the dots to fill in."""
    place: str = ""
    """In "Đồng Nai, ngày … tháng … năm …"; default the province's name."""
    signer_title: str = "GIÁM ĐỐC"
    signer_name: str = ""
    recipients: tuple[str, ...] = field(default=("Như trên;", "Lưu: VT."))

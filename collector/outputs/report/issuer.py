"""Who issues the monthly report's Word document: its body, number, addressee, signer,
recipients, in Vietnamese and in English."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from collector.common.words import Language


@dataclass(frozen=True)
class Issuer:
    """Who issues the report: from ``[report]`` (and ``[report.en]``) in the collector's
    config. Empty texts take the defaults said beside them."""

    parent: str = ""
    """The body above the issuer, e.g. "UBND TỈNH ĐỒNG NAI"; default from the province."""
    body: str = "SỞ KHOA HỌC VÀ CÔNG NGHỆ"
    body_name: str = "Sở Khoa học và Công nghệ"
    """The body as running text names it ("… Sở Khoa học và Công nghệ báo cáo …")."""
    short: str = "SKHCN"
    """In the number: "Số: …/BC-SKHCN"."""
    number: str = ""
    """The document's number once registered; empty leaves room to fill it in."""
    place: str = ""
    """In "Đồng Nai, ngày … tháng … năm …"; default the province's name."""
    addressee: str = "UBND tỉnh"
    """After "Kính gửi:"; the recipients' "Như trên" refers to it."""
    basis: tuple[str, ...] = ()
    """The documents the report answers ("Căn cứ …"); none leaves a line to fill in."""
    signer_authority: str = "KT. GIÁM ĐỐC"
    """Above the title when a deputy signs for the head ("KT." ký thay); "" when the
    head signs."""
    signer_title: str = "PHÓ GIÁM ĐỐC"
    signer_name: str = ""
    recipients: tuple[str, ...] = field(default=("Như trên;", "Ban Giám đốc Sở;", "Lưu: VT, CĐS."))
    english: Issuer | None = None
    """The same in English, for ``--lang en``; default ``ENGLISH`` with this number,
    signer's name and place."""

    def in_language(self, language: Language) -> Issuer:
        """The texts the document in ``language`` is written with."""
        if language == "vi":
            return self
        english = self.english or ENGLISH
        return replace(
            english,
            number=self.number,
            short=self.short,
            signer_name=english.signer_name or self.signer_name,
            place=english.place or self.place,
            english=None,
        )


#: The English defaults, matching the Vietnamese ones above.
ENGLISH = Issuer(
    parent="",
    body="DEPARTMENT OF SCIENCE AND TECHNOLOGY",
    body_name="the Department of Science and Technology",
    addressee="the Provincial People's Committee",
    signer_authority="FOR THE DIRECTOR",
    signer_title="DEPUTY DIRECTOR",
    recipients=("As above;", "The Department's Board of Directors;", "Archives: VT, CĐS."),
)


def recipients(issuer: Issuer, as_above: str) -> list[str]:
    """The "Nơi nhận" list, consistent with the addressee: "Như trên" (``as_above``)
    first when the report is addressed to someone, never when it is not."""
    others = [r for r in issuer.recipients if r.rstrip(";.").strip() != as_above]
    return [f"{as_above};", *others] if issuer.addressee else others

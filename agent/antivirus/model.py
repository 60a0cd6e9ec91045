"""What the agent knows about one anti-malware product, and a PC's verdict."""

from __future__ import annotations

from typing import Literal

import msgspec

ProductStateName = Literal["on", "off", "snoozed", "expired", "unknown"]
Source = Literal["security_center", "defender", "process", "clamav"]
Verdict = Literal["protected", "outdated", "unprotected", "none", "unknown"]
"""protected: >=1 product on and up to date. outdated: on, but signatures too old.
unprotected: products found, all off/snoozed/expired. none: no product detected.
unknown: a product is present whose state cannot be read."""


class Product(msgspec.Struct, frozen=True):
    """One anti-malware product as this PC reports it."""

    name: str
    source: Source
    state: ProductStateName
    up_to_date: bool | None = None
    """Signatures current; None when nothing says."""
    realtime: bool | None = None
    signature_age_days: float | None = None
    last_scan_age_days: float | None = None
    product_state: int | None = None
    """Security Center's raw productState, kept for diagnosis."""
    owner: str = ""
    version: str = ""
    detail: str = ""

    @property
    def enabled(self) -> bool | None:
        return None if self.state == "unknown" else self.state == "on"


def apply_signature_limit(product: Product, max_age_days: float) -> Product:
    """A product whose signatures are older than the configured limit is not up to date,
    whatever its own flag says."""
    age = product.signature_age_days
    if age is None or age <= max_age_days or product.up_to_date is False:
        return product
    return msgspec.structs.replace(product, up_to_date=False)


def verdict(products: list[Product]) -> Verdict:
    if not products:
        return "none"
    if any(p.state == "on" and p.up_to_date is True for p in products):
        return "protected"
    if any(p.state == "on" and p.up_to_date is False for p in products):
        return "outdated"
    if all(p.state in ("off", "snoozed", "expired") for p in products):
        return "unprotected"
    return "unknown"

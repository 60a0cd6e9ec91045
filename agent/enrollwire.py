"""The enrollment contract: what ``commune-agent enroll`` sends to the collector's
``POST /api/v1/enroll`` and what it gets back. Both sides decode with these types,
strictly, so the two cannot drift apart."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from agent.wire import Ident, KeyId, PublicKey, whole

#: A CSR is a few hundred bytes; anything far larger is not one.
MAX_CSR_BYTES = 16 * 1024


class EnrollRequest(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, omit_defaults=True
):
    token: Annotated[str, msgspec.Meta(max_length=128)]
    agent: Ident
    """The PC's agent id: its host name in slug form unless the technician chose one."""
    password: Annotated[str, msgspec.Meta(max_length=128, pattern=r"^(?:[!-~]{24,128})?$")] = ""
    """Made on the PC; the broker account's password (or a CSR instead)."""
    csr: Annotated[str, msgspec.Meta(max_length=MAX_CSR_BYTES)] = ""
    """A certificate signing request (PEM) for a key the PC made and keeps: the
    collector answers with a client certificate for the account."""
    replace: bool = False
    """This PC takes the place of one enrolled under the same id (tokens that allow it)."""
    commune: Annotated[
        str, msgspec.Meta(pattern=whole(r"(?:[A-Za-z0-9][A-Za-z0-9._-]{0,63})?"))
    ] = ""
    """The commune the technician means to enroll this PC in ("" : the token's): a token
    of another commune is refused instead of enrolling the PC in the wrong place."""


class EnrollTopics(msgspec.Struct, frozen=True):
    status: str
    data: str
    config: str


class EnrollAnswer(msgspec.Struct, frozen=True, omit_defaults=True):
    province: Ident
    commune: Ident
    agent: Ident
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
    broker_url: Annotated[str, msgspec.Meta(pattern=r"^mqtts?://[^\s/]+$", max_length=256)]
    broker_ca: Annotated[str, msgspec.Meta(max_length=64 * 1024)]
    """The CA that signs the broker's certificate, PEM ("" : the system's CAs)."""
    profile: Annotated[str, msgspec.Meta(max_length=64)]
    topics: EnrollTopics
    replaced: bool = False
    certificate: Annotated[str, msgspec.Meta(max_length=64 * 1024)] = ""
    """For a CSR: the PC's client certificate (PEM); its Common Name is ``username``."""
    config_keys: Annotated[list[PublicKey], msgspec.Meta(max_length=4)] = []
    """The public halves of the keys that sign this agent's configs: the collector's
    current one, and the next during a rotation (``config-key.pub`` on the PC)."""


class ConfigKey(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: KeyId
    public: PublicKey
    role: Literal["current", "next"]
    """``next``: made by a rotation, announced in the configs the current key signs."""


class ConfigKeys(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """``GET /api/v1/config-keys``: the collector's config signing keys (public halves),
    for ``commune-agent config-key fetch``."""

    keys: Annotated[list[ConfigKey], msgspec.Meta(min_length=1, max_length=4)]

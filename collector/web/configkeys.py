"""The collector's config signing keys, public halves: ``GET /api/v1/config-keys``.

Public like ``POST /api/v1/enroll`` (nothing secret in it): a PC enrolled before configs
were signed fetches them over the same verified HTTPS as enrollment
(``commune-agent config-key fetch``), rather than trusting whatever the broker brings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import APIRouter, HTTPException

from collector.web.auth import Context, errors

router = APIRouter()


@dataclass
class PublicKey:
    id: str
    """The key id configs name (the first 8 bytes of the SHA-256 of the key, hex)."""
    public: str
    """The Ed25519 public key, base64 (as in the agent's config-key.pub)."""
    role: Literal["current", "next"]
    """``next``: made by a rotation, announced in the configs the current key signs."""


@dataclass
class PublicKeys:
    keys: list[PublicKey]


@router.get("/api/v1/config-keys", tags=["enrollment"], responses=errors(404))
def config_keys(context: Context) -> PublicKeys:
    """The keys that sign the agents' configs: the current one, and the next one during a
    rotation (``commune-agent config-key fetch`` writes them to config-key.pub)."""
    if context.rollout is None:
        raise HTTPException(404, "enrollment is not configured on this collector ([enrollment])")
    keys = context.rollout.keys()
    found = [PublicKey(keys.current.id, keys.current.public_text, "current")]
    if keys.next is not None:
        found.append(PublicKey(keys.next.id, keys.next.public_text, "next"))
    return PublicKeys(found)

"""Checks one Ed25519 signature in a process of its own: ``python -m agent.sigcheck``.

Standard input: the 32-byte public key, the 64-byte signature, then the signed message.
Exit 0: the signature is valid; ``INVALID``: it is not; anything else: it could not be
checked. ``agent.configkeys.verify`` runs it for each config the collector sends: the
``cryptography`` package it loads (7 MB of memory) is gone with the process, instead of
staying in the agent for as long as it runs for a check made a few times a day.
"""

from __future__ import annotations

import sys

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
INVALID = 3


def check(data: bytes) -> bool:
    """Whether ``data`` (key, signature, message) holds a valid signature; ValueError when
    it is not laid out so (no verdict)."""
    if len(data) < PUBLIC_KEY_BYTES + SIGNATURE_BYTES:
        raise ValueError(f"{len(data)} bytes: a key and a signature take 96")
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    public = data[:PUBLIC_KEY_BYTES]
    signature = data[PUBLIC_KEY_BYTES : PUBLIC_KEY_BYTES + SIGNATURE_BYTES]
    message = data[PUBLIC_KEY_BYTES + SIGNATURE_BYTES :]
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except InvalidSignature:
        return False
    return True


if __name__ == "__main__":
    sys.exit(0 if check(sys.stdin.buffer.read()) else INVALID)

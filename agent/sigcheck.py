"""Checks one Ed25519 signature in a process of its own: ``python -m agent.sigcheck``.

Standard input: the 32-byte public key, the 64-byte signature, then the signed message.
Exit 0 with ``VALID`` and the SHA-256 of the whole input on standard output: the
signature is valid; ``INVALID``: it is not; anything else: it could not be checked. The
agent takes a signature as valid only on that exact answer about that exact input, so
that nothing else exiting 0 in its place passes a config. ``agent.configkeys.verify``
runs it for each config the collector sends: the ``cryptography`` package it loads (7 MB
of memory) is gone with the process, instead of staying in the agent for as long as it
runs, for a check made a few times a day.
"""

from __future__ import annotations

import hashlib
import sys

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
INVALID = 3
VALID = b"valid "


def answer(data: bytes) -> bytes:
    """What a check of ``data`` prints when its signature is valid."""
    return VALID + hashlib.sha256(data).hexdigest().encode()


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
    given = sys.stdin.buffer.read()
    if not check(given):
        sys.exit(INVALID)
    sys.stdout.buffer.write(answer(given))

"""The one error the Windows kit's build raises: what is wrong, for the operator."""

from __future__ import annotations


class KitError(Exception):
    """The kit cannot be built; the message names what is missing or wrong."""

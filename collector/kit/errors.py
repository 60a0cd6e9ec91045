"""The one error of the kit builder: what is wrong, said so an operator can fix it."""


class KitError(Exception):
    """The kit cannot be built as asked; the message says why and what to do."""

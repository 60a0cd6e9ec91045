"""Standard-library modules the agent's libraries import but a running agent never uses.

paho-mqtt imports ``urllib.request`` for one thing: reading proxy settings, which it does
only when PySocks is installed (the agent does not install it). Importing it loads the
HTTP client and the whole e-mail package with it: about 2 MB of a 25 MB agent, for
nothing. ``defer_unused()``, called before the agent's modules are imported, puts a
stand-in in its place that imports the real module the first time anything is read from
it: code that does use it (``commune-agent enroll``) works as before, the running agent
never pays for it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from typing import Any

#: Imported by a library the agent runs and never used by the running agent.
UNUSED = ("urllib.request",)


class DeferredModule(types.ModuleType):
    """Stands for a module until an attribute is read: then the real one is imported, put
    in its place in ``sys.modules`` and its parent package, and answers."""

    def __getattr__(self, attribute: str) -> Any:
        # The import system and introspection ask for dunders (``__path__``, ``__file__``)
        # to learn what a module is; answering them would import it for no use.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        return getattr(importlib.import_module(self.__name__), attribute)


def defer(name: str) -> None:
    """Put a stand-in for the module ``name`` (a submodule of a package) unless it is
    imported already."""
    if name in sys.modules:
        return
    parent, _, child = name.rpartition(".")
    module = DeferredModule(name)
    module.__spec__ = importlib.util.find_spec(name)
    sys.modules[name] = module
    setattr(importlib.import_module(parent), child, module)


def defer_unused() -> None:
    """Stand-ins for ``UNUSED``: call it before the agent's libraries are imported."""
    for name in UNUSED:
        defer(name)

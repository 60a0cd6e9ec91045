"""Modules the agent's libraries import but a running agent never uses.

Each is imported at the top of a module the agent does use, for a function the agent
never calls (``UNUSED`` says which). Importing them costs memory kept for as long as
the agent runs: about 2.5 MB of a PC agent's, for nothing. ``defer_unused()``, called
before the agent's modules are imported, puts a stand-in in their place that imports
the real module the first time anything is read from it: code that does use one
(``commune-agent enroll``, a library on a path a PC never takes) works as before, the
running agent never pays for it.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import Any

#: Imported by a library the agent runs and never used by the running agent.
UNUSED = (
    # paho-mqtt's, to read proxy settings, which it does only with PySocks installed (the
    # agent does not install it): with it the HTTP client and the whole e-mail package.
    "urllib.request",
    # urllib.parse's (which pathlib imports), for hosts in brackets in a URL; the config's
    # loopback test, which only ``enroll`` and the collector call.
    "ipaddress",
    # subprocess's, for the encoding of text pipes; the agent's children speak bytes.
    "locale",
    # msgspec imports its type introspection (for schemas) whatever is used.
    "msgspec.inspect",
    # asyncio's and dataclasses', with ast and dis: dataclasses use it to write a docstring
    # for a class without one (the agent's have theirs), asyncio to check a signal handler
    # (agent/signals.py goes around it) and to describe a task in a message.
    "inspect",
)


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


def _spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """Where ``name`` would be imported from, without importing its parent package."""
    parent = name.rpartition(".")[0]
    if not parent or parent in sys.modules:
        return importlib.util.find_spec(name)
    package = importlib.util.find_spec(parent)
    if package is None or package.submodule_search_locations is None:
        return None
    return importlib.machinery.PathFinder.find_spec(name, list(package.submodule_search_locations))


def defer(name: str) -> None:
    """Put a stand-in for the module ``name`` unless it is imported already (or absent)."""
    if name in sys.modules:
        return
    spec = _spec(name)
    if spec is None:
        return
    module = DeferredModule(name)
    module.__spec__ = spec
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        # A package that imports the module itself (msgspec) finds the stand-in; for one
        # that does not, ``import parent.child`` must find it as an attribute.
        package = importlib.import_module(parent)
        if not hasattr(package, child):
            setattr(package, child, module)


def defer_unused() -> None:
    """Stand-ins for ``UNUSED``: call it before the agent's libraries are imported."""
    for name in UNUSED:
        defer(name)

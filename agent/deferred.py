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

import codecs
import encodings
import importlib
import importlib.machinery
import importlib.util
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Buffer

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
    # traceback's (logging's, asyncio's), to show a file's lines when an exception is
    # logged: the first one loads them. traceback itself stays: _asyncio takes a function
    # from it as it starts.
    "linecache",
    "tokenize",
    "textwrap",
    # ssl's, paho-mqtt's: PEM from DER, WebSocket keys.
    "base64",
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


def _stand_in(name: str) -> DeferredModule | None:
    """A stand-in for the module ``name`` in ``sys.modules``, unless it is imported
    already (or absent)."""
    if name in sys.modules:
        return None
    spec = _spec(name)
    if spec is None:
        return None
    module = DeferredModule(name)
    module.__spec__ = spec
    sys.modules[name] = module
    return module


def _attach(module: DeferredModule) -> None:
    """A package that imports the module itself (msgspec) finds the stand-in; for one that
    does not, ``import parent.child`` must find it as an attribute."""
    parent, _, child = module.__name__.rpartition(".")
    if parent:
        package = importlib.import_module(parent)
        if not hasattr(package, child):
            setattr(package, child, module)


def defer(*names: str) -> None:
    """Put stand-ins for the modules ``names``, all of them before any of their packages is
    imported: a package may import the others (msgspec imports textwrap)."""
    for module in [m for m in map(_stand_in, names) if m is not None]:
        _attach(module)


def defer_unused() -> None:
    """Stand-ins for ``UNUSED`` and the IDNA codec: call it before the agent's libraries
    are imported."""
    defer(*UNUSED)
    defer_idna()


# The IDNA codec ----------------------------------------------------------------------------
#
# Every host name the agent connects to goes through the "idna" codec (the socket module's
# getaddrinfo encodes a str host with it, ssl the name it verifies), and the codec's module
# imports stringprep and unicodedata's Unicode 3.2 tables: 0.4 MB of a PC agent's memory kept
# for as long as it runs, for names that are ASCII and which the codec returns unchanged.
# The stand-in does the codec's ASCII case itself and gives everything else to the codec.


def _idna() -> codecs.CodecInfo:
    import encodings.idna

    return encodings.idna.getregentry()


def _idna_encode(text: str, errors: str = "strict") -> tuple[bytes, int]:
    if errors == "strict" and text.isascii():
        # The codec's own ASCII path: the name as it is once its labels' lengths pass.
        labels = text.split(".")
        if all(0 < len(label) < 64 for label in labels[:-1]) and len(labels[-1]) < 64:
            return text.encode("ascii"), len(text)
    encoded: tuple[bytes, int] = _idna().encode(text, errors)
    return encoded


def _idna_decode(data: Buffer, errors: str = "strict") -> tuple[str, int]:
    decoded: tuple[str, int] = _idna().decode(data, errors)
    return decoded


def _idna_search(name: str) -> codecs.CodecInfo | None:
    if name != "idna":
        return None
    return codecs.CodecInfo(
        _idna_encode,
        _idna_decode,
        name="idna",
        incrementalencoder=lambda errors="strict": _idna().incrementalencoder(errors),
        incrementaldecoder=lambda errors="strict": _idna().incrementaldecoder(errors),
        streamwriter=lambda stream, errors="strict": _idna().streamwriter(stream, errors),
        streamreader=lambda stream, errors="strict": _idna().streamreader(stream, errors),
    )


def defer_idna() -> None:
    """Put the stand-in first among the codec searches, unless the codec is loaded."""
    if "encodings.idna" in sys.modules:
        return
    # Searches are asked in the order they were registered; the standard one is first.
    codecs.unregister(encodings.search_function)
    codecs.unregister(_idna_search)
    codecs.register(_idna_search)
    codecs.register(encodings.search_function)

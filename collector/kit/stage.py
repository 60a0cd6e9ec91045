"""The tree the MSI installs under ``%ProgramFiles%\\commune-agent``, laid out on Linux::

    runtime/   python.org's embeddable CPython, its ._pth with site on, the agent's
               dependencies (and pywin32) in Lib/site-packages from the Windows lock,
               pywin32's two DLLs beside python.exe (the service host)
    launcher/  the launcher and the MSI's setup step (``agent.update.install``)
    kit/       kit.json (version, collector, province), the agent version as a release
               bundle (unpacked on the PC by ``msi_setup`` like any release), the
               release root (root.json) and the province's CA (collector-ca.pem)

``versions/``, ``state/`` and ``tuf/`` are made on the PC, never shipped as MSI files.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from agent.update import VERSION_DIR_ENV, bundle, install
from collector.kit import embed as embedding
from collector.kit.errors import KitError

#: A runtime built from ._pth ignores PYTHONPATH, and must: a machine-wide PYTHONPATH
#: that another program set would run its code in a service running as SYSTEM. The
#: launcher names the agent version it starts in ``VERSION_DIR_ENV``; this hook (a
#: ``.pth`` line importing a module beside it) puts that folder first on ``sys.path``
#: only when it resolves to a folder right under ``<install>\versions``, the install
#: being three levels above site-packages (``runtime\Lib\site-packages``), which only
#: administrators can write. Anything else is ignored, as PYTHONPATH is.
PATH_HOOK_NAME: Final = "commune_agent_path.pth"
PATH_HOOK: Final = "import commune_agent_path\n"
PATH_HOOK_MODULE_NAME: Final = "commune_agent_path.py"
PATH_HOOK_MODULE: Final = f'''"""commune-monitor: the launched version first on sys.path."""

import os
import sys

_named = os.environ.get("{VERSION_DIR_ENV}", "")
_install = os.path.realpath(__file__)
for _level in range(4):  # the module, site-packages, Lib, runtime
    _install = os.path.dirname(_install)
_versions = os.path.join(_install, "versions")
if _named:
    _folder = os.path.realpath(_named)
    if os.path.normcase(os.path.dirname(_folder)) == os.path.normcase(_versions) and (
        os.path.isdir(_folder) and _folder not in sys.path
    ):
        sys.path.insert(0, _folder)
'''


@dataclass(frozen=True)
class KitFacts:
    version: str
    server: str
    province: str
    root_json: bytes
    collector_ca: bytes | None


def lay_out_runtime(
    stage: Path, embed: embedding.Embed, fill_site_packages: Callable[[Path], None]
) -> Path:
    """``stage/runtime``: the embeddable CPython with the agent's dependencies."""
    runtime = stage / "runtime"
    embedding.extract(embed, runtime)
    embedding.enable_site(runtime, embed)
    site_packages = runtime / "Lib" / "site-packages"
    site_packages.mkdir(parents=True, exist_ok=True)
    fill_site_packages(site_packages)
    (site_packages / PATH_HOOK_MODULE_NAME).write_text(PATH_HOOK_MODULE, encoding="utf-8")
    (site_packages / PATH_HOOK_NAME).write_text(PATH_HOOK, encoding="utf-8")
    dlls = sorted((site_packages / "pywin32_system32").glob("*.dll"))
    if not dlls:
        raise KitError("pywin32's DLLs are not in the runtime: the service could not start")
    for dll in dlls:  # beside the host exe, as pywin32's post-install would put them
        shutil.copyfile(dll, runtime / dll.name)
    return runtime


def lay_out_launcher(stage: Path) -> Path:
    return install.install_launcher(stage)


def lay_out_kit(stage: Path, facts: KitFacts, agent_source: Path) -> Path:
    """``stage/kit``: the agent version as a bundle, what it trusts and where it reports."""
    kit = stage / "kit"
    kit.mkdir(parents=True, exist_ok=True)
    bundle.build(agent_source, facts.version, kit / f"commune-agent-{facts.version}.zip")
    document = {"version": facts.version, "server": facts.server, "province": facts.province}
    (kit / "kit.json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    (kit / "root.json").write_bytes(facts.root_json)
    if facts.collector_ca is not None:
        (kit / "collector-ca.pem").write_bytes(facts.collector_ca)
    return kit


def drop_bytecode(stage: Path) -> None:
    """The build host's ``__pycache__``: another interpreter's, never the PC's."""
    for folder in sorted(stage.rglob("__pycache__"), reverse=True):
        shutil.rmtree(folder)

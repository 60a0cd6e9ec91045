"""commune-agent's entry point: ``run`` as the service and the launcher give it (``run``,
``run -c PATH``, ``run --config PATH``) starts the agent without loading the command-line
library, about 1.5 MB of a PC agent's memory kept for as long as it runs; any other
command line is agent/commands.py's (click), ``run --help`` included.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path


def service_config(arguments: list[str]) -> Path | None:
    """The config of a plain ``run`` command line, else None (for the full command line)."""
    if arguments[:1] != ["run"]:
        return None
    from pathlib import Path  # after main's stand-ins: it imports one of their modules

    rest = arguments[1:]
    if not rest:
        from agent.start import CONFIG_ENV, DEFAULT_CONFIG

        path = os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    elif len(rest) == 2 and rest[0] in ("-c", "--config") and not rest[1].startswith("-"):
        path = rest[1]
    elif len(rest) == 1 and rest[0].startswith("--config=") and len(rest[0]) > len("--config="):
        path = rest[0].removeprefix("--config=")
    else:
        return None
    # A folder is an error the full command line words.
    return None if Path(path).is_dir() else Path(path)


def main() -> None:
    """``commune-agent``."""
    if sys.argv[1:2] == ["run"]:
        from agent.deferred import defer_unused

        defer_unused()  # before anything imports the modules it stands for
    config = service_config(sys.argv[1:])
    if config is None:
        from agent.commands import main as commands

        commands()
        return
    from agent.start import StartError, run

    try:
        code = run(config)
    except StartError as exc:
        print(f"Error: {exc}", file=sys.stderr)  # as the command line says it
        sys.exit(1)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()

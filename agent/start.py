"""Starting the agent until it is stopped, as its service and launcher do.

Shared by ``commune-agent run`` (agent/commands.py) and the entry point's short way to it
(agent/cli.py), which takes the service's command line without loading the command-line
library: the config's path, logging, and the run with its errors in words.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from agent.config import Config, load_config
from agent.configtypes import ConfigError

#: Where the agent's config is unless a command says (``--config``) or the environment.
DEFAULT_CONFIG = (
    "/etc/commune-agent/agent.toml"
    if sys.platform != "win32"
    else r"C:\ProgramData\commune-agent\agent.toml"
)
CONFIG_ENV = "COMMUNE_AGENT_CONFIG"


class StartError(Exception):
    """The agent cannot start or stopped on an error: the message says why."""


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def load(path: Path) -> Config:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise StartError(str(exc)) from None


def run(config_path: Path) -> int:
    """Run the agent from this config until SIGTERM/Ctrl-C; its exit code (non-zero: a
    staged version for the launcher to start). StartError: a config or outbox problem."""
    config = load(config_path)
    setup_logging(config.agent.log_level)
    from agent.deferred import defer_unused

    defer_unused()  # before the runner imports paho-mqtt
    from agent.outbox import OutboxError
    from agent.runner import run_agent
    from agent.signals import take_interrupt

    take_interrupt()
    try:
        return run_agent(config)
    except (OutboxError, ConfigError) as exc:
        raise StartError(str(exc)) from None
    except KeyboardInterrupt:
        return 0

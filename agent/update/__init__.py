"""The agent's self-update: signed releases, side-by-side versions, a launcher that rolls back.

On disk, under the agent's home (``/opt/commune-agent`` on Linux,
``%ProgramFiles%\\commune-agent`` on Windows)::

    runtime/                CPython with the agent's dependencies (and pywin32) installed
                            into it; no venv (pywin32's maintainer advises against
                            services in venvs). On Linux, the interpreter the installer ran.
    launcher/launcher.py    the launcher: standard library (and pywin32) only, updated by
                            the installer in a slower ring, never by the update it watches.
    versions/<v>/           one folder per agent version: ``agent/`` and any package the
                            version brings, first on ``sys.path``; ``MANIFEST.json`` lists
                            every file's SHA-256 (checked before every start and commit).
    versions/.partial-*     an unpacking in progress (removed at the next attempt).
    state/current           the committed version            (one line, atomic rename)
    state/previous          the version to go back to        (one line, atomic rename)
    state/pending           a staged version on trial        (one line, atomic rename)
    state/bad               versions that failed, with why   (JSON, atomic rename)
    state/floor             the highest version ever committed: nothing below it is
                            installed again (a replayed old release never runs)
    state/decision.json     the launcher's last decision (committed, rolled back: which,
                            when, why), reported by the agent in its birth
    state/health/<v>.json   what the running agent says of its own health
    tuf/                    the TUF client's trusted metadata (``root.json`` from the kit
                            or enrollment) and its download cache

The agent's config, outbox, ``seq`` and identity live outside ``versions/`` (the config
folder and the state folder): every switch and rollback keeps them.

The running agent asks for nothing and installs nothing on its own: the collector's
signed config names a version (``wire.ReleaseOrder``); the agent starts a short-lived
update process (``python -m agent.update.fetch``) that refreshes the TUF metadata,
downloads and verifies the target, unpacks it beside the others, runs the new version's
self-check and writes ``pending``; then the agent stops cleanly with ``EXIT_UPDATE`` and
the launcher starts the pending version on trial.
"""

from __future__ import annotations

from typing import Final

#: The agent's exit code that means "a new version is staged (``state/pending``): start it".
#: EX_TEMPFAIL from sysexits.h: not an error, try again.
EXIT_UPDATE: Final = 75
#: The environment variable the launcher sets for the agent it starts: the home above.
HOME_ENV: Final = "COMMUNE_AGENT_HOME"
#: The environment variable that tells the agent which launcher runs it (here, not in
#: the launcher's module: the agent reads it without importing the launcher, 1.9 MB).
LAUNCHER_ENV: Final = "COMMUNE_AGENT_LAUNCHER"
#: The version folder the launcher starts, for the Windows runtime's path hook. A ._pth
#: runtime ignores PYTHONPATH (rightly: a machine-wide PYTHONPATH set by some other
#: program would put its code in a service running as SYSTEM); the hook reads this
#: variable instead, and only when it names a folder under the install's ``versions``.
VERSION_DIR_ENV: Final = "COMMUNE_AGENT_VERSION_DIR"

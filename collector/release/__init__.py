"""The release repository: agent versions as TUF targets, signed, served by the collector.

``keys``: the key files (offline root and targets keys the release manager keeps;
online snapshot and timestamp keys in the collector's state folder). ``repository``:
the metadata on disk, staged changes waiting for offline signatures, publishing.
``online``: the running collector's job that re-signs snapshot and timestamp before they
expire. The web app serves ``metadata/`` and ``targets/`` read-only (``web/releases.py``).
"""

"""A migrated Prefect SQLite database made once per machine, copied for each test server."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def _template_name() -> str:
    """The template's file name: it changes with Prefect's version and its SQLite migrations."""
    import prefect
    import prefect.server.database

    versions = Path(prefect.server.database.__file__).parent / "_migrations" / "versions" / "sqlite"
    digest = hashlib.sha256(prefect.__version__.encode())
    for migration in sorted(versions.glob("*.py")):
        digest.update(migration.name.encode())
    return f"moltbot-tests-prefect-{digest.hexdigest()[:16]}.db"


def migrated_template() -> Path:
    """A SQLite file with Prefect's schema at head, made once per machine; its path.

    A new Prefect server applies ~110 migrations to an empty SQLite file, about 4 s of CPU per
    server; the suite starts about ten. Each server gets a copy of this file instead and finds
    nothing to migrate. Two xdist workers may ask at once: a lock file makes one of them build it.
    """
    template = Path(tempfile.gettempdir()) / _template_name()
    if template.is_file():
        return template
    with open(f"{template}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not template.is_file():
            partial = template.with_suffix(f".{os.getpid()}.tmp")
            partial.unlink(missing_ok=True)
            env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")},
                "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{partial}",
                "PREFECT_HOME": str(partial.with_suffix(".home")),
                "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
                "DO_NOT_TRACK": "1",
            }
            upgraded = subprocess.run(
                [sys.executable, "-m", "prefect", "server", "database", "upgrade", "-y"],
                env=env, capture_output=True, text=True, timeout=300, check=False,
            )  # fmt: skip
            shutil.rmtree(partial.with_suffix(".home"), ignore_errors=True)
            if upgraded.returncode != 0:
                partial.unlink(missing_ok=True)
                raise RuntimeError(f"prefect server database upgrade failed: {upgraded.stderr}")
            partial.replace(template)  # atomic: a reader sees no file or the whole file
    return template


def copy_migrated_database(destination: Path) -> Path:
    """A copy of the migrated template at `destination` (its folder is made); `destination`."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(migrated_template(), destination)
    return destination

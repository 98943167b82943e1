"""How a result was made: commit, date, device, versions; and atomic JSON writes."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path


def git_commit(path=None) -> str:
    """The commit checked out in the git repository that holds `path`, with `-dirty` when
    its work tree has changes to tracked files; "unknown" when `path` is in no git
    checkout (or git is missing).

    `path` defaults to the folder of the dtp_eqx package itself, so a result records the
    code that made it wherever the command runs from; "unknown" also when the package
    is not tracked there (an installed copy, e.g. in a virtual environment inside some
    other repository).
    """
    package = path is None
    folder = Path(__file__).resolve().parent if package else Path(path)

    def git(*args) -> str:
        return subprocess.check_output(
            ["git", *args], cwd=folder, text=True, stderr=subprocess.DEVNULL
        ).strip()

    try:
        if package:
            git("ls-files", "--error-unmatch", Path(__file__).name)
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def provenance() -> dict:
    """Commit (of the repository holding dtp_eqx, see `git_commit`), UTC date, device,
    platform and library versions, for a results file."""
    import equinox
    import jax
    import optax

    from . import __version__

    return {
        "commit": git_commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "device": str(jax.devices()[0]),
        "device_kind": jax.devices()[0].device_kind,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "equinox": equinox.__version__,
        "optax": optax.__version__,
        "dtp_eqx": __version__,
    }


def write_json(path, obj) -> Path:
    """Write `obj` as JSON to `path` atomically: a temporary file, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes files private; results are not
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path

"""Guarding a run's output files: checked before training, locked while it runs.

A long run writes a results file and, beside it, checkpoints. `claim_outputs` is what
`reproduce` and `search_experiment` do before any training:

- every output path is a file path in a writable folder, and no two are the same file;
- outputs that already exist are never replaced silently: continuing them needs
  `resume=True` (`--resume`), replacing them `overwrite=True` (`--overwrite`);
- a lock per results file (`OUT.lock`, an advisory `flock` held for the whole run and
  released by the system if the process dies) makes a second run on the same output
  stop at once, naming the first.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

try:  # POSIX; elsewhere runs are not locked
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None


def check_output_paths(paths: dict[str, Path]) -> None:
    """Check that every output can be written, before anything is computed.

    Args:
        paths: `{what: path}`, e.g. `{"results file": out, "checkpoint": ckpt}`.

    Raises:
        ValueError: when a path is a folder, or two outputs are the same file.
        PermissionError: when a path's folder cannot be created or written.
    """
    seen: dict[Path, str] = {}
    for what, path in paths.items():
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"the {what} {str(path)!r} is a folder; give a file path.")
        resolved = path.resolve()
        if resolved in seen:
            raise ValueError(
                f"the {what} and the {seen[resolved]} would be the same file {str(path)!r}; "
                "give the results file another name (its checkpoint is the same name with "
                ".ckpt)."
            )
        seen[resolved] = what
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # the honest test: create and remove a file there (os.access is True for root)
            fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".probe")
            os.close(fd)
            os.remove(probe)
        except OSError as err:
            raise PermissionError(
                f"the {what} {str(path)!r} cannot be written: {err.strerror or err} "
                f"(folder {str(path.parent)!r})."
            ) from None
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(f"the {what} {str(path)!r} exists and is read-only.")


def check_not_replaced(paths: dict[str, Path], *, resume: bool, overwrite: bool,
                       resumable: tuple = ()) -> None:
    """Refuse to replace existing outputs unless asked to.

    Args:
        paths: `{what: path}` of every output the run writes.
        resume: the run continues from what `resumable` holds (keyword-only).
        overwrite: the run may replace every existing output (keyword-only).
        resumable: the files a resumed run continues from (its checkpoint, and for the
            auto-encoder its search and fine-tuning files); empty when the run cannot
            resume (keyword-only).

    Raises:
        FileExistsError: when an output exists and neither flag allows replacing it, or
            when `resume` is asked but none of `resumable` exists while other outputs
            do (resuming would start over and replace them).
        ValueError: when both `resume` and `overwrite` are asked.
    """
    if resume and overwrite:
        raise ValueError("resume=True and overwrite=True contradict each other; pass one.")
    if overwrite:
        return
    existing = {what: Path(p) for what, p in paths.items() if Path(p).exists()}
    if not existing:
        return
    listed = ", ".join(f"{w} {str(p)!r}" for w, p in existing.items())
    if resume and resumable:
        if any(Path(p).exists() for p in resumable):
            return
        raise FileExistsError(
            f"nothing to resume: the checkpoint {str(resumable[0])!r} does not exist, but "
            f"{listed} does; resuming would start again and replace it. Pass --overwrite "
            "(overwrite=True) to start again, or choose another --out."
        )
    how = "--resume (resume=True) to continue that run, or " if resumable else ""
    raise FileExistsError(
        f"{listed} already exists from an earlier run. Pass {how}--overwrite "
        "(overwrite=True) to replace it, or choose another --out."
    )


@contextlib.contextmanager
def output_lock(out: Path, *, command: str | None = None):
    """Hold `OUT.lock` for the duration of a run: a second holder fails at once.

    The lock is an advisory `flock` on the lock file, which also records who holds it
    (process, host, start time, command); the system releases it when the process
    ends, however it ends, so a killed run never leaves a stale lock behind.

    Raises:
        FileExistsError: when another process holds the lock; the message names it.
    """
    lock = Path(out).with_name(Path(out).name + ".lock")
    if fcntl is None:  # pragma: no cover
        yield lock
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FileExistsError(
                f"another run is writing {str(out)!r} ({_holder(lock)}); wait for it to "
                "finish or stop it, or choose another --out."
            ) from None
        # the file may have been removed by a holder that just finished: lock it again
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    holder = {"pid": os.getpid(), "host": socket.gethostname(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "command": command or " ".join(sys.argv)}
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(holder).encode())
    try:
        yield lock
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(lock)
        os.close(fd)


def _holder(lock: Path) -> str:
    try:
        holder = json.loads(lock.read_text())
        return (f"process {holder['pid']} on {holder['host']}, started "
                f"{holder['started']}: {holder['command']}")
    except (OSError, ValueError, KeyError):
        return f"its lock {str(lock)!r} is held"


@contextlib.contextmanager
def claim_outputs(out: Path, paths: dict[str, Path], *, resume: bool, overwrite: bool,
                  resumable: tuple = (), command: str | None = None):
    """Everything a run checks about its outputs before training, then its lock.

    Args:
        out: the results file; its lock is `OUT.lock`.
        paths: every output, `{what: path}` (the results file included).
        resume, overwrite, resumable: as for `check_not_replaced` (keyword-only).
        command: recorded in the lock, for the message a second run prints.
    """
    check_output_paths({**paths, "lock file": Path(out).with_name(Path(out).name + ".lock")})
    with output_lock(out, command=command) as lock:
        check_not_replaced(paths, resume=resume, overwrite=overwrite, resumable=resumable)
        yield lock

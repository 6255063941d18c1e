"""Files on disk: JSONL rows, atomic writes, run directories and run metadata.

Every writer that replaces a file is atomic (temp file in the same directory, fsync,
``os.replace``), so a crash leaves either the old file or the new one, never half of one.
``append_jsonl`` is the exception by design: it streams one flushed line per call so partial
results survive an interrupted run. Nothing here imports torch.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

__all__ = [
    "atomic_directory",
    "DataError", "iter_jsonl", "read_jsonl", "write_jsonl", "append_jsonl", "read_json",
    "atomic_write_bytes", "atomic_write_text", "atomic_write_json", "to_json",
    "git_revision", "git_dirty", "run_metadata",
]


class DataError(ValueError):
    """Bad or missing data file; the message starts with ``path`` or ``path:LINE``."""


# ----------------------------------------------------------------------------------------------
# JSON helpers


def _json_default(obj: Any) -> Any:
    """Make numpy scalars/arrays, paths, sets and dataclasses serialisable."""
    import dataclasses

    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy arrays and scalars
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj, key=repr)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"object of type {type(obj).__name__} is not JSON serializable")


def to_json(obj: Any, indent: int | None = None) -> str:
    """``json.dumps`` that also accepts numpy values, paths, sets and dataclasses.

    >>> to_json({"a": (1, 2), "b": None})
    '{"a": [1, 2], "b": null}'
    """
    return json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default)


# ----------------------------------------------------------------------------------------------
# reading


def iter_jsonl(path: str | Path, required_keys: Iterable[str] = ()) -> Iterator[dict]:
    """Yield one dict per non-blank line of a JSONL file.

    Raises:
        DataError: ``file not found: path``; ``path:LINE: invalid JSON (...)``;
            ``path:LINE: expected a JSON object, got list``; ``path:LINE: missing key 'k'``.
    """
    path = Path(path)
    required = tuple(required_keys)
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected a .jsonl file") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid UTF-8 ({exc.reason})") from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: invalid JSON ({exc.msg} at column "
                                f"{exc.colno})") from None
            if not isinstance(row, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, "
                                f"got {type(row).__name__}")
            for key in required:
                if key not in row:
                    raise DataError(f"{path}:{lineno}: missing key '{key}'")
            yield row


def read_jsonl(path: str | Path, required_keys: Iterable[str] = ()) -> list[dict]:
    """All rows of a JSONL file as a list (see :func:`iter_jsonl` for errors)."""
    return list(iter_jsonl(path, required_keys))


def read_json(path: str | Path) -> Any:
    """Parse a JSON file; DataError with ``path:LINE`` on bad JSON or ``file not found``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON ({exc.msg})") from None


# ----------------------------------------------------------------------------------------------
# writing


def _fsync_dir(directory: Path) -> None:
    """Best-effort fsync of a directory so a rename survives power loss (POSIX only)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _new_file_mode() -> int:
    """The mode ``open()`` gives a new file under the current umask (0644 for umask 022)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:     # reading it changes nothing
            umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        umask = os.umask(0o022)                                     # no /proc: read it by setting it
        os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Write a whole directory atomically: fill the yielded ``<path>.tmp``; on normal exit its
    files are fsynced and it replaces ``path`` by renames (the previous version is kept as
    ``<path>.old`` until the swap is done, so a crash leaves one complete directory). On an
    exception nothing is swapped and ``path`` is untouched."""
    final = Path(path)
    tmp, old = final.with_name(final.name + ".tmp"), final.with_name(final.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    mode = _new_file_mode()
    for item in tmp.rglob("*"):
        if item.is_file():
            os.chmod(item, mode)          # some writers (safetensors) create files 0600
            with open(item, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(tmp)
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; creates parent dirs; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        mode = path.stat().st_mode & 0o777 if path.exists() else _new_file_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode(encoding))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON (numpy/paths/dataclasses allowed) atomically, newline-terminated."""
    return atomic_write_text(path, to_json(obj, indent=indent) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> Path:
    """Write rows, one JSON object per line, atomically (serialised before touching the file)."""
    text = "".join(to_json(row) + "\n" for row in rows)
    return atomic_write_text(path, text)


def append_jsonl(path: str | Path, row: dict, fsync: bool = False) -> Path:
    """Append one row as a line and flush it (for streaming results).

    If the file ends in a partial line (a previous writer crashed mid-line), a newline is written
    first so the new row stays parseable; the broken line is left for ``read_jsonl`` to report.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = to_json(row) + "\n"
    with path.open("ab+") as handle:
        if handle.tell() > 0:
            handle.seek(-1, os.SEEK_END)
            if handle.read(1) != b"\n":
                line = "\n" + line
        handle.write(line.encode("utf-8"))
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    return path


# ----------------------------------------------------------------------------------------------
# runs


def _git(args: list[str], cwd: str | Path | None) -> str | None:
    where = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        proc = subprocess.run(["git", *args], cwd=where, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_revision(cwd: str | Path | None = None) -> str | None:
    """``git rev-parse HEAD`` run in ``cwd`` (default: this package's dir); None if unavailable."""
    out = _git(["rev-parse", "HEAD"], cwd)
    return (out.strip() or None) if out is not None else None


def git_dirty(cwd: str | Path | None = None) -> bool | None:
    """True if the work tree has uncommitted changes to tracked files; None if git is unavailable."""
    out = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return None if out is None else bool(out.strip())


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def run_metadata(seed: int | None = None) -> dict:
    """JSON-safe facts about this run: seed, git revision/dirty, versions, host, time.

    Versions come from installed package metadata, so torch is never imported here.
    """
    now = _dt.datetime.now(_dt.timezone.utc)
    return {
        "seed": seed,
        "git_rev": git_revision(),
        "git_dirty": git_dirty(),
        "python": platform.python_version(),
        "reasonlab": _dist_version("reasonlab"),
        "torch": _dist_version("torch"),
        "numpy": _dist_version("numpy"),
        "transformers": _dist_version("transformers"),
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "pid": os.getpid(),
        "argv": list(sys.argv),
        "time": now.isoformat(timespec="seconds"),
        "unix_time": now.timestamp(),
    }

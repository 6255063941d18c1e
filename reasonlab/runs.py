"""Run directories that are never destroyed by accident, and resumes that never mix experiments.

Every stage opens its directory with :func:`open_run` *after* its whole config has been checked:

- a fresh name (or an empty directory) starts a new run;
- a directory that holds anything is refused, unless ``resume: true`` (continue it) or
  ``overwrite: true`` (delete it and start over);
- ``run.json`` records a *fingerprint* of everything that changes the run's results: the config
  (minus names, paths and switches that do not), a digest of the model's files, a digest of the
  data file, the number of worker processes. A resume whose fingerprint differs stops with one
  line naming the keys that differ.

Nothing here imports torch.

>>> a = {"config": {"n": 16, "model": {"d_model": 32}}, "model_sha": "ab"}
>>> b = {"config": {"n": 8, "model": {"d_model": 32}}, "model_sha": "cd"}
>>> fingerprint_diff(a, b)
['config.n: 16 -> 8', 'model_sha: ab -> cd']
"""
from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

from reasonlab.config import ConfigError, config_to_dict
from reasonlab.io import DataError, atomic_write_json, read_json

__all__ = ["RUN_FILE", "NEVER_FINGERPRINTED", "check_run_name", "check_runs_dir", "open_run", "fingerprint",
           "fingerprint_diff", "model_digest", "path_digest", "data_digest", "open_stage_run"]

RUN_FILE = "run.json"
RUN_MARKERS = (RUN_FILE, "config.yaml")   # what a run directory holds (older versions: no run.json)
# config keys that name or place a run, switch how it is opened, or only add where its metrics go:
# never part of a fingerprint
NEVER_FINGERPRINTED = ("name", "runs_dir", "resume", "overwrite", "log_to")
_CHUNK = 1 << 20          # bytes hashed at the start, middle and end of a large weight file
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def check_run_name(name: str) -> None:
    """A run name is one plain directory name: no separators, no ``..``, not hidden.

    >>> check_run_name("tiny-grpo")
    >>> check_run_name("../escape")
    Traceback (most recent call last):
    ...
    reasonlab.config.ConfigError: name: '../escape' is not a plain directory name; use e.g. --name=tiny-grpo
    """
    bad = (not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name
           or os.sep in name or "\0" in name)
    if bad:
        raise ConfigError(f"name: {name!r} is not a plain directory name; use e.g. --name=tiny-grpo")


def check_runs_dir(root: str | Path) -> None:
    """``runs_dir`` must be a writable directory, or creatable as one."""
    path = Path(root)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        what = "is a file" if probe == path else f"cannot be created: {probe} is a file"
        raise ConfigError(f"runs_dir: {path} {what}; pass --runs_dir=<a directory>")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"runs_dir: {probe} is not writable; pass --runs_dir=<a writable directory>")


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: {}}
    return {prefix[:-1]: data}


def fingerprint_diff(old: dict, new: dict) -> list[str]:
    """``"key: old -> new"`` for every flattened key whose value differs (missing: ``<unset>``)."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key}: {_short(a.get(key, '<unset>'))} -> {_short(b.get(key, '<unset>'))}")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _drop(config: dict, keys: Iterable[str]) -> dict:
    """``config`` without the dotted ``keys`` (``"eval.model"``) and the never-fingerprinted ones at
    every level."""
    out = {}
    for key, value in config.items():
        if key in NEVER_FINGERPRINTED or key in keys:
            continue
        inner = [k.split(".", 1)[1] for k in keys if k.startswith(key + ".")]
        out[key] = _drop(value, inner) if isinstance(value, dict) else value
    return out


def fingerprint(cfg: Any, ignore: Iterable[str] = (), **facts: Any) -> dict:
    """The fingerprint of a run: its config (a dataclass) without ``ignore`` (dotted keys that do
    not change results) and :data:`NEVER_FINGERPRINTED`, plus ``facts`` such as
    ``model_sha=model_digest(...)``, ``data_sha=path_digest(...)``, ``workers=2``."""
    return {"config": _drop(config_to_dict(cfg), tuple(ignore)), **facts}


def _file_digest(path: Path, whole_limit: int = 3 * _CHUNK) -> str:
    """sha256 of the file; for files larger than ``whole_limit`` of its size and three 1 MiB
    samples (start, middle, end), so a 15 GB checkpoint is fingerprinted in milliseconds."""
    h = hashlib.sha256()
    size = path.stat().st_size
    h.update(str(size).encode())
    with path.open("rb") as f:
        if size <= whole_limit:
            for block in iter(lambda: f.read(_CHUNK), b""):
                h.update(block)
        else:
            for offset in (0, size // 2, size - _CHUNK):
                f.seek(offset)
                h.update(f.read(_CHUNK))
    return h.hexdigest()


def path_digest(path: str | Path, suffixes: tuple[str, ...] = ()) -> str:
    """Short digest of a file, or of a directory's files (names and contents; ``suffixes``
    restricts which; hidden files and ``*.tmp``/``*.old`` leftovers are skipped)."""
    p = Path(path)
    if p.is_file():
        return _file_digest(p)[:16]
    if not p.is_dir():
        raise DataError(f"{p}: no such file or directory")
    h = hashlib.sha256()
    for item in sorted(p.rglob("*")):
        rel = item.relative_to(p).as_posix()
        if not item.is_file() or rel.startswith(".") or "/." in rel or rel.endswith((".tmp", ".old")):
            continue
        if suffixes and not rel.endswith(suffixes):
            continue
        h.update(rel.encode() + b"\0" + _file_digest(item).encode())
    return h.hexdigest()[:16]


def model_digest(model: Any) -> str:
    """What identifies a model: a digest of a local directory's config and weight files, the hub id
    itself (``"hub:Qwen/Qwen2.5-0.5B"``) for a model that is not on disk, or for a model object in
    memory a digest of its parameters (names, shapes, and up to 4,096 values at each end of each)."""
    if hasattr(model, "state_dict"):
        return _weights_digest(model)
    if not str(model):
        return ""
    path = Path(str(model))
    if path.is_dir():
        return path_digest(path, ("config.json",) + _WEIGHT_SUFFIXES)
    return f"hub:{model}"


def _weights_digest(model: Any, edge: int = 4096) -> str:
    h = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        flat = tensor.detach().reshape(-1)
        h.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        for piece in ((flat,) if flat.numel() <= 2 * edge else (flat[:edge], flat[-edge:])):
            h.update(piece.float().cpu().numpy().tobytes())
    return h.hexdigest()[:16]


def _is_empty(path: Path) -> bool:
    """Nothing in it but, perhaps, the ``run.json`` of a run that stopped before writing anything."""
    return path.is_dir() and all(p.name == RUN_FILE for p in path.iterdir())


def open_run(root: str | Path, name: str, fp: dict, resume: bool = False, overwrite: bool = False) -> Path:
    """Create, continue or replace ``root/name`` (see the module docstring); returns its path.

    Raises ConfigError (one line) for a bad name or root, an existing run without ``resume`` or
    ``overwrite``, both switches at once, or a resume whose fingerprint ``fp`` differs.
    """
    check_run_name(name)
    check_runs_dir(root)
    if resume and overwrite:
        raise ConfigError("resume and overwrite: choose one (--resume=true continues the run, "
                          "--overwrite=true deletes it and starts over)")
    run = Path(root) / name
    if run.exists() and not run.is_dir():
        raise ConfigError(f"name: {run} is a file; pick another --name")
    if run.exists() and not _is_empty(run):
        if overwrite:
            if not any((run / marker).exists() for marker in RUN_MARKERS):
                raise ConfigError(f"overwrite: {run} does not look like a run directory (no {' or '.join(RUN_MARKERS)});"
                                  " it is not deleted: remove it yourself or pick another --name")
            shutil.rmtree(run)
        elif resume:
            _check_same(run, fp)
        else:
            raise ConfigError(f"run directory {run} exists; pass --resume=true to continue it, "
                              f"--overwrite=true to delete it and start over, or another --name")
    run.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run / RUN_FILE, fp)
    return run


def _check_same(run: Path, fp: dict) -> None:
    record = run / RUN_FILE
    if not record.exists():
        raise ConfigError(f"{run} has no {RUN_FILE} (not a run of this version, or not a run): it cannot be "
                          "resumed safely; pass --overwrite=true to start over or another --name")
    try:
        old = read_json(record)
    except DataError as err:
        raise ConfigError(f"{err}; pass --overwrite=true to start over") from None
    diff = fingerprint_diff(old, fp)
    if diff:
        raise ConfigError(f"cannot resume {run}: it was made with other settings ({'; '.join(diff)}); "
                          "pass the same settings, --overwrite=true to start over, or another --name")


def data_digest(task: str, split: str, data_path: str = "") -> str:
    """What identifies a stage's data: a digest of ``data_path`` or of the local
    ``$REASONLAB_DATA/<task>/<split>.jsonl``; else ``task:split`` (synthetic or hub data)."""
    from reasonlab.tasks.data import local_split

    if data_path:
        return path_digest(data_path)
    local = local_split(task, split, os.environ.get("REASONLAB_DATA", ""))
    return path_digest(local) if local is not None else f"{task}:{split}"


def open_stage_run(cfg: Any, fp: dict) -> Path:
    """:func:`open_run` with a stage config's ``runs_dir``, ``name``, ``resume`` and ``overwrite``."""
    return open_run(cfg.runs_dir, cfg.name, fp, resume=getattr(cfg, "resume", False),
                    overwrite=getattr(cfg, "overwrite", False))


def first_divergence(reference: list, other: list, rtol: float = 0.0) -> dict:
    """Where two loss traces (``[[step, loss], ...]``) of one recipe part: the first logged step
    present in both whose losses differ by more than ``rtol`` (relative), or None.

    >>> first_divergence([[10, 2.0], [20, 1.5]], [[10, 2.0], [20, 1.4]])
    {'compared': 2, 'step': 20, 'reference': 1.5, 'other': 1.4}
    >>> first_divergence([[10, 2.0]], [[10, 2.0], [20, 1.0]])["step"] is None
    True
    """
    theirs = {int(s): float(v) for s, v in other}
    common = [(int(s), float(v)) for s, v in reference if int(s) in theirs]
    for step, value in common:
        if abs(theirs[step] - value) > rtol * abs(value):
            return {"compared": len(common), "step": step, "reference": value, "other": theirs[step]}
    return {"compared": len(common), "step": None, "reference": None, "other": None}

"""Cheap checks a stage runs on its whole config *before* it touches disk or loads a model.

Each raises :class:`~reasonlab.config.ConfigError` with one line naming the key and the fix, so
``reasonlab <stage>`` exits 2 with that line and nothing of an earlier run is lost.

>>> from dataclasses import dataclass
>>> @dataclass
... class C:
...     n: int = 0
>>> check_min(C(), {"n": 1})
Traceback (most recent call last):
...
reasonlab.config.ConfigError: n: must be >= 1, got 0
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from reasonlab.config import ConfigError

__all__ = ["check_min", "check_choice", "check_task", "check_model_ref", "check_data_path", "check_eval"]

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
SAMPLING_MINIMA = {"limit": 1, "n": 1, "max_new_tokens": 1, "prompts_per_batch": 1, "temperature": 0.0,
                   "top_k": 0, "top_p": 1e-9}


def check_min(cfg: Any, minima: dict[str, float], prefix: str = "") -> None:
    """Every ``key`` of ``cfg`` is at least ``minima[key]`` (dotted keys reach nested configs)."""
    for key, low in minima.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if value < low:
            bound = f">= {low}" if low != 1e-9 else "> 0"
            raise ConfigError(f"{prefix}{key}: must be {bound}, got {value}")


def check_choice(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"{key}: unknown value {value!r}; choose from: {', '.join(map(str, choices))}")


def check_task(task: str, split: str | None = None, template: str | None = None, prefix: str = "") -> None:
    """A known task, split and prompt template (no data is loaded)."""
    from reasonlab.tasks import TASKS, TEMPLATES
    from reasonlab.tasks.base import SPLITS

    check_choice(prefix + "task", task, sorted(TASKS))
    if split is not None:
        check_choice(prefix + "split", split, SPLITS)
    if template is not None:
        check_choice(prefix + "template", template, sorted(TEMPLATES))


def check_data_path(path: str, task: str, key: str = "data_path") -> None:
    """``data_path`` names an existing file or directory, for a task that reads data files."""
    from reasonlab.tasks import TASKS
    from reasonlab.tasks.data import DatasetRows

    if not path:
        return
    if not issubclass(TASKS[task], DatasetRows):
        readers = sorted(name for name, cls in TASKS.items() if issubclass(cls, DatasetRows))
        raise ConfigError(f"{key}: task {task!r} generates its problems; data files are for {', '.join(readers)}")
    if not Path(path).exists():
        raise ConfigError(f"{key}: {path} does not exist (a jsonl file, or a directory with <split>.jsonl)")


def _weights(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.suffix in (".safetensors", ".bin") or p.name.endswith(".index.json")]


def check_model_ref(model: str, key: str = "model", required: bool = True) -> None:
    """``model`` names a loadable local model directory, or something only the hub can have.

    A local directory needs a readable ``config.json`` (a JSON object) and weights; a path that
    does not exist is an error at once when it is clearly local (absolute, ``./``, ``~``, more
    than two parts, or its first part is an existing directory such as ``runs/``), instead of a
    long wait for the hub.
    """
    from reasonlab.models.hf import looks_like_hub_id

    if not model:
        if required:
            raise ConfigError(f"{key}: no model given; pass --{key}=<checkpoint dir or hub id>")
        return
    path = Path(model).expanduser()
    if path.is_dir():
        _check_model_dir(path, key)
        return
    if path.exists():
        raise ConfigError(f"{key}: {model} is a file; pass the model's directory")
    first = Path(model.split("/")[0])
    if not looks_like_hub_id(model) or (first.is_dir() and "/" in model):
        raise ConfigError(f"{key}: no model directory at {model}")


def _check_model_dir(path: Path, key: str) -> None:
    config = path / "config.json"
    if not config.is_file():
        old = path.with_name(path.name + ".old")
        if (old / "config.json").is_file():       # a crash interrupted a checkpoint swap: loadable
            return
        contents = "empty" if not any(path.iterdir()) else "has no config.json"
        raise ConfigError(f"{key}: {path} is not a model directory ({contents})")
    try:
        meta = json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{key}: {config} is not valid JSON ({err})") from None
    if not isinstance(meta, dict):
        raise ConfigError(f"{key}: {config} is not a JSON object")
    if not _weights(path):
        raise ConfigError(f"{key}: {path} has no weights (*.safetensors or *.bin)")
    if "reasonlab" in meta:                      # our checkpoints: the files load_checkpoint reads
        for name in ("model.safetensors", "tokenizer_config.json"):
            if not (path / name).is_file():
                raise ConfigError(f"{key}: {path} is missing {name}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ConfigError(f"{key}: {path} has no tokenizer files ({', '.join(TOKENIZER_FILES)})")
    for weights in sorted(path.glob("*.safetensors")):
        _check_safetensors(weights, key)


def _check_safetensors(path: Path, key: str) -> None:
    """Read the header only: a truncated or corrupt file fails here in microseconds."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            f.keys()
    except ImportError:  # pragma: no cover - safetensors is a core dependency
        return
    except Exception as err:  # noqa: BLE001 - the library raises its own error type
        raise ConfigError(f"{key}: {path} is not a readable safetensors file ({' '.join(str(err).split())})") \
            from None


def check_eval(cfg: Any, prefix: str = "", model_required: bool = True) -> None:
    """The checks of an ``EvalConfig`` (``prefix``: ``"eval."`` when nested in another stage)."""
    from reasonlab.models.hf import CHAT_TEMPLATE_MODES, DTYPES

    check_task(cfg.task, cfg.split, cfg.template, prefix)
    check_min(cfg, SAMPLING_MINIMA, prefix)
    if cfg.top_p > 1:
        raise ConfigError(f"{prefix}top_p: must be in (0, 1], got {cfg.top_p}")
    check_choice(prefix + "dtype", cfg.dtype, DTYPES)
    check_choice(prefix + "chat_template", cfg.chat_template, CHAT_TEMPLATE_MODES)
    if any(k < 1 for k in cfg.ks):
        raise ConfigError(f"{prefix}ks: every k must be >= 1, got {cfg.ks}")
    check_data_path(cfg.data_path, cfg.task, prefix + "data_path")
    check_min(cfg, {"max_completion_chars": 1}, prefix)
    if model_required:
        check_model_ref(cfg.model, prefix + "model")

"""Where training metrics go: the run's jsonl file always, and optionally TensorBoard and W&B.

Every training stage writes one metrics row per logged step to a jsonl file in its run directory
(``metrics.jsonl``; pretraining: ``train_log.jsonl``). That file stays the source of truth: the
plots, the summaries and ``reasonlab report`` read it. ``log_to`` (a stage setting) names extra
sinks that receive the same rows:

- ``tensorboard``: event files under ``<run>/tensorboard/`` (``tensorboard --logdir runs``);
  needs ``pip install 'reasonlab[tensorboard]'``.
- ``wandb``: a Weights & Biases run (project ``$WANDB_PROJECT`` or ``reasonlab``, named after the
  run, files under ``<run>/wandb/``); needs ``pip install 'reasonlab[wandb]'``. Set
  ``WANDB_MODE=offline`` to log without a network (``wandb sync`` uploads later).

>>> scalars({"step": 3, "loss": 0.5, "done": True, "note": "x", "ci": [0, 1]})
{'loss': 0.5, 'done': 1.0}
"""
from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path

# sink name -> the extra (and the package) it needs
SINK_EXTRAS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_log_to(log_to: list[str]) -> None:
    """ConfigError for an unknown sink or a sink whose package is not installed (one line that
    names the extra to install); nothing is imported."""
    from reasonlab.config import ConfigError

    for name in log_to:
        if name not in SINK_EXTRAS:
            raise ConfigError(f"log_to: unknown sink {name!r}; choose from: {', '.join(SINK_EXTRAS)} "
                              "(the jsonl metrics file is always written)")
        if importlib.util.find_spec(SINK_EXTRAS[name]) is None:
            raise ConfigError(f"log_to: {name} needs the {SINK_EXTRAS[name]} package: "
                              f"pip install 'reasonlab[{SINK_EXTRAS[name]}]'")


def scalars(row: dict) -> dict[str, float]:
    """The numeric values of a metrics row (booleans as 0/1), without ``step``."""
    return {k: float(v) for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not (isinstance(v, float) and math.isnan(v))}


class TensorBoardSink:
    """Scalars to event files under ``<run>/tensorboard/``; a resumed run drops the events after
    its checkpoint's step (``purge_step``), as the jsonl does."""

    def __init__(self, run_dir: Path, name: str, config: dict | None, start_step: int):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"),
                                    purge_step=start_step + 1 if start_step > 0 else None)

    def log(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()                      # a killed run keeps what it logged

    def close(self) -> None:
        self.writer.close()


class WandbSink:
    """A W&B run named after the run directory, with the stage config; ``WANDB_MODE=offline``
    keeps it on disk under ``<run>/wandb/``."""

    def __init__(self, run_dir: Path, name: str, config: dict | None, start_step: int):
        import wandb

        from reasonlab.config import ConfigError

        try:
            self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "reasonlab"), name=name, dir=str(run_dir),
                                  config=config or {})
        except Exception as err:  # noqa: BLE001 - wandb's own errors: no API key, no network, bad settings
            raise ConfigError(f"log_to: wandb could not start a run ({' '.join(str(err).split())[:160]}); "
                              "run `wandb login`, or set WANDB_MODE=offline to log without an account") from None

    def log(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


SINKS = {"tensorboard": TensorBoardSink, "wandb": WandbSink}


class MetricsLog:
    """Append rows to the jsonl file and hand their numbers to the sinks at ``row["step"]``."""

    def __init__(self, path: str | Path, sinks: list):
        self.path, self.sinks = Path(path), sinks

    def write(self, row: dict) -> None:
        from reasonlab.io import append_jsonl

        append_jsonl(self.path, row)
        values = scalars(row)
        if values and "step" in row:
            for sink in self.sinks:
                sink.log(values, int(row["step"]))

    def close(self) -> None:
        sinks, self.sinks = self.sinks, []
        for sink in sinks:
            sink.close()


def open_metrics(path: str | Path, log_to: list[str], run_dir: str | Path, name: str, config: dict | None = None,
                 start_step: int = 0) -> MetricsLog:
    """The metrics log of a run: the jsonl at ``path`` plus the ``log_to`` sinks (checked first)."""
    check_log_to(log_to)
    return MetricsLog(path, [SINKS[s](Path(run_dir), name, config, start_step) for s in dict.fromkeys(log_to)])

"""Find run directories and read what the stages wrote there, never raising: a missing or
malformed file becomes a one-line note (``Run.notes``) and the page is built without it."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

# files that mark a directory as a run directory
RUN_FILES = ("summary.json", "run.json", "config.yaml", "metrics.jsonl", "train_log.jsonl", "results.jsonl")
# the order of sections in the page
STAGE_ORDER = ("pretrain", "sft", "verifiers", "eval", "sweep", "grpo", "rft", "distill")


@dataclass
class Run:
    path: Path
    stage: str = "unknown"
    summary: dict | None = None
    metrics: list[dict] = field(default_factory=list)       # metrics.jsonl / train_log.jsonl rows
    metrics_file: str = ""
    samples: list[dict] = field(default_factory=list)       # GRPO rollouts logged per step (samples.jsonl)
    results: list[dict] = field(default_factory=list)       # the first problems of results.jsonl
    trees: list[dict] = field(default_factory=list)         # the first trees of each method (trees.jsonl)
    markdown: dict[str, str] = field(default_factory=dict)  # results.md text
    pngs: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    name: str = ""                                          # the run's label in the page (unique)

    def __post_init__(self):
        self.name = self.name or self.path.name or str(self.path)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and any((path / f).is_file() for f in RUN_FILES)


def find_run_dirs(paths: list[str]) -> tuple[list[Path], list[str]]:
    """Run directories among ``paths`` (each a run directory or a directory of runs, one level
    down), in page order, and notes for paths that hold none."""
    found, notes = [], []
    for text in paths:
        path = Path(text)
        if not path.exists():
            notes.append(f"{path}: not found")
        elif is_run_dir(path):
            found.append(path)
        elif path.is_dir():
            inner = sorted(p for p in path.iterdir() if is_run_dir(p))
            found += inner
            if not inner:
                notes.append(f"{path}: no run directories in it (none holds {', '.join(RUN_FILES[:3])}, ...)")
        else:
            notes.append(f"{path}: not a directory")
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return [Path(p) for p in unique], notes


def read_json(path: Path, notes: list[str]) -> dict | None:
    """The JSON object in ``path``, or None with a note (absent files give no note)."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        notes.append(f"{path}: unreadable ({err}); skipped")
        return None
    except json.JSONDecodeError as err:
        notes.append(f"{path}: malformed JSON at line {err.lineno} ({err.msg}); skipped")
        return None
    if not isinstance(data, dict):
        notes.append(f"{path}: expected a JSON object, got {type(data).__name__}; skipped")
        return None
    return data


def read_jsonl(path: Path, notes: list[str], keep=None, required: tuple[str, ...] = ()) -> list[dict]:
    """The rows of ``path`` that parse as objects with the ``required`` keys; ``keep(row, kept)``
    decides which to keep (reading stops once it returns ``None``). Bad lines are counted in
    one note."""
    if not path.is_file():
        return []
    rows, bad, first_bad = [], 0, 0
    try:
        with path.open("r", encoding="utf-8", errors="replace") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    row = None
                if not isinstance(row, dict) or any(k not in row for k in required):
                    bad, first_bad = bad + 1, first_bad or number
                    continue
                verdict = True if keep is None else keep(row, rows)
                if verdict is None:
                    break
                if verdict:
                    rows.append(row)
    except OSError as err:
        notes.append(f"{path}: unreadable ({err.strerror or err}); skipped")
        return []
    if bad:
        notes.append(f"{path}: {bad} malformed line(s) skipped (first: line {first_bad})")
    return rows


def detect_stage(path: Path, summary: dict | None, metrics: list[dict]) -> str:
    """The stage that wrote a run directory: ``summary.json``'s ``stage``, else guessed from files."""
    if summary and isinstance(summary.get("stage"), str):
        return summary["stage"]
    if (path / "trees.jsonl").exists() or (path / "table.md").exists():
        return "sweep"
    if (path / "labels.jsonl").exists():
        return "verifiers"
    if (path / "train_log.jsonl").exists():
        return "pretrain"
    keys = set(metrics[0]) if metrics else set()
    for stage, marker in (("grpo", "groups_scored"), ("rft", "kept"), ("sft", "epoch")):
        if marker in keys:
            return stage
    if summary and "metrics" in summary or (path / "results.jsonl").exists():
        return "eval"
    return "unknown"


def _first_problems(limit: int):
    return lambda row, kept: (len(kept) < limit) or None


def _trees_per_method(limit: int):
    def keep(row, kept):
        return sum(t.get("method") == row.get("method") for t in kept) < limit
    return keep


def load_run(path: Path, problems: int, trees_per_method: int) -> Run:
    """Everything the page shows about one run directory."""
    run = Run(path)
    run.summary = read_json(path / "summary.json", run.notes)
    for name in ("metrics.jsonl", "train_log.jsonl"):
        rows = read_jsonl(path / name, run.notes, required=("step",))
        if rows:
            run.metrics, run.metrics_file = rows, name
            break
    run.samples = read_jsonl(path / "samples.jsonl", run.notes, required=("step", "completion"))
    run.results = read_jsonl(path / "results.jsonl", run.notes, keep=_first_problems(problems),
                             required=("completions",))
    run.trees = read_jsonl(path / "trees.jsonl", run.notes, keep=_trees_per_method(trees_per_method),
                           required=("method", "tree"))
    for name in ("results.md",):
        if (path / name).is_file():
            try:
                run.markdown[name] = (path / name).read_text(encoding="utf-8", errors="replace")
            except OSError as err:
                run.notes.append(f"{path / name}: unreadable ({err.strerror or err}); skipped")
    run.pngs = sorted(p for p in path.glob("*.png") if p.is_file())
    run.stage = detect_stage(path, run.summary, run.metrics)
    return run


def page_order(runs: list[Run]) -> list[Run]:
    """Runs by stage (pretraining first, RL last), then by name; runs whose directories share a
    name are labelled ``parent/name``."""
    names = [r.path.name for r in runs]
    for run in runs:
        if names.count(run.path.name) > 1:
            run.name = f"{run.path.parent.name}/{run.path.name}"
    rank = {s: i for i, s in enumerate(STAGE_ORDER)}
    return sorted(runs, key=lambda r: (rank.get(r.stage, len(rank)), r.name))

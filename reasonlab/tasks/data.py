"""Loading task data: local jsonl files, a local data root (``REASONLAB_DATA``), and (lazily)
Hugging Face hub datasets."""
from __future__ import annotations

import os
import random
from pathlib import Path

from reasonlab.io import read_jsonl
from reasonlab.tasks.base import check_split


class DatasetRows:
    """Rows of a fixed dataset (GSM8K, MATH) from ``path`` (one jsonl), ``data_dir``
    (``{split}.jsonl``), ``$REASONLAB_DATA/<name>/{split}.jsonl`` when that variable names a
    local data root (offline machines), or the hub. Subclasses set ``self.path``, ``self.data_dir`` and
    ``self._rows = {}`` and provide ``to_row(record, split, index)`` and
    ``hub_records(split)``."""

    def _records(self, split: str) -> list[dict]:
        if self.path is not None:
            return read_jsonl(self.path)
        if self.data_dir is not None:
            return read_jsonl(self.data_dir / f"{split}.jsonl")
        local = local_split(self.name, split, os.environ.get("REASONLAB_DATA", ""))
        if local is not None:
            return read_jsonl(local)
        return self.hub_records(split)

    def rows(self, split: str = "test") -> list[dict]:
        """All rows of ``split`` in file order (loaded once per task instance)."""
        check_split(split)
        if split not in self._rows:
            where = self.path or self.data_dir or self.name
            rows = []
            for i, record in enumerate(self._records(split)):
                try:
                    rows.append(self.to_row(record, split, i))
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"{where} ({split}) record {i + 1}: {exc}") from exc
            self._rows[split] = rows
        return self._rows[split]

    def generate(self, n: int | None, seed: int, split: str = "train", **difficulty) -> list[dict]:
        """``n`` rows of ``split`` (a seeded subset in file order; all rows if n is None)."""
        self._check_difficulty(difficulty)
        rows = self.rows(split)
        if n is None or n >= len(rows):
            return list(rows)
        picked = sorted(random.Random(f"{self.name}:{split}:{seed}").sample(range(len(rows)), n))
        return [rows[i] for i in picked]


def load_hub(hub_id: str, config: str | None, split: str) -> list[dict]:
    """Records of a hub dataset split; clear errors when ``datasets`` or the network is missing."""
    try:
        import datasets
    except ImportError as exc:
        raise ImportError("loading from the Hugging Face hub needs `datasets`: "
                          "pip install 'reasonlab[hf]', or pass data_dir=/path/with/jsonl") from exc
    try:
        data = datasets.load_dataset(hub_id, config, split=split)
    except (OSError, ConnectionError, ValueError) as exc:
        raise RuntimeError(f"could not load {hub_id!r} ({split}) from the hub: {exc}; offline? "
                           "pass data_dir= or path= pointing at local jsonl files") from exc
    return [dict(r) for r in data]


def local_split(name: str, split: str, root: str) -> Path | None:
    """``root/name/split.jsonl`` if ``root`` is set and the file exists, else None (use the hub).

    >>> local_split("gsm8k", "test", "") is None
    True
    """
    if not root:
        return None
    path = Path(root) / name / f"{split}.jsonl"
    return path if path.exists() else None

"""Loading task data: local jsonl files and (lazily) Hugging Face hub datasets."""
from __future__ import annotations

import json
from pathlib import Path


def read_jsonl(path: Path) -> list[dict]:
    """Records of a jsonl file; ValueError naming the file and line for a bad line."""
    records = []
    with open(path, encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            records.append(record)
    return records


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

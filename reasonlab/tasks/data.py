"""Loading task data: local jsonl files, a local data root (``REASONLAB_DATA``), and (lazily)
Hugging Face hub datasets.

Every data problem is a :class:`reasonlab.io.DataError` with one line the CLI prints as is:

* ``path:LINE: <what is wrong>`` for a row that does not fit the task (a missing ``question``,
  a GSM8K ``answer`` without a ``#### N`` line, a worked solution where MATH wants a final
  answer), after ``iter_jsonl``'s own ``path:LINE: invalid JSON`` checks;
* ``path: no rows`` for a file without any row;
* ``<task> (<split>): no local data and <why the hub cannot be used>; pass --data_path=...`` when
  there is no local file and the hub cannot be used: ``datasets`` missing, the hub host
  unreachable (a connection probe of at most :data:`HUB_PROBE_TIMEOUT_S`, instead of the hub
  client's retries of half a minute) unless offline mode (``HF_HUB_OFFLINE`` /
  ``HF_DATASETS_OFFLINE``) asks for a cached copy, or the load failing.
"""
from __future__ import annotations

import os
import random
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from reasonlab.io import DataError, read_jsonl
from reasonlab.tasks.base import check_split

HUB_PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


class RowError(ValueError):
    """A record that does not fit the task; the loader prefixes ``path:LINE:``."""


class HubUnavailable(Exception):
    """The hub cannot be used now; the message says why (the loader adds what to do)."""


def require_text(record: dict, key: str) -> str:
    """``record[key]`` as a non-empty string; RowError naming the key otherwise."""
    if key not in record:
        raise RowError(f"missing key '{key}'")
    value = record[key]
    if not isinstance(value, str) or not value.strip():
        raise RowError(f"'{key}' must be a non-empty string, got {str(value)[:40]!r}")
    return value


def nonblank_lines(path: Path) -> list[int]:
    """1-based numbers of the lines that hold a row (blank lines hold none, as in iter_jsonl)."""
    with path.open("rb") as handle:
        return [n for n, raw in enumerate(handle, start=1)
                if raw.decode("utf-8", errors="replace").strip()]


class DatasetRows:
    """Rows of a fixed dataset (GSM8K, MATH) from ``path`` (one jsonl), ``data_dir``
    (``{split}.jsonl``), ``$REASONLAB_DATA/<name>/{split}.jsonl`` when that variable names a
    local data root (offline machines), or the hub. Subclasses set ``self.path``,
    ``self.data_dir`` and ``self._rows = {}`` and provide ``to_row(record, split, index)``
    (raising :class:`RowError` for a record that does not fit) and ``hub_records(split)``."""

    def local_path(self, split: str) -> Path | None:
        """The jsonl file rows of ``split`` come from, or None for the hub."""
        if self.path is not None:
            return self.path
        if self.data_dir is not None:
            return self.data_dir / f"{split}.jsonl"
        return local_split(self.name, split, os.environ.get("REASONLAB_DATA", ""))

    def _located_records(self, split: str) -> tuple[list[dict], list[str]]:
        """Records and, for each, where it came from (``path:LINE`` or a hub row)."""
        path = self.local_path(split)
        if path is not None:
            records = read_jsonl(path)
            if not records:
                raise DataError(f"{path}: no rows")
            return records, [f"{path}:{n}" for n in nonblank_lines(path)]
        try:
            records = self.hub_records(split)
        except HubUnavailable as exc:
            raise DataError(f"{self.name} ({split}): no local data and {exc}; pass "
                            f"--data_path=<jsonl or dir> or put the file at "
                            f"$REASONLAB_DATA/{self.name}/{split}.jsonl") from None
        return records, [f"{self.name} hub ({split}) row {i + 1}" for i in range(len(records))]

    def rows(self, split: str = "test") -> list[dict]:
        """All rows of ``split`` in file order (loaded once per task instance)."""
        check_split(split)
        if split not in self._rows:
            records, where = self._located_records(split)
            rows = []
            for i, record in enumerate(records):
                try:
                    rows.append(self.to_row(record, split, i))
                except RowError as exc:
                    raise DataError(f"{where[i]}: {self.name}: {exc}") from None
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


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub host opens within ``timeout`` seconds.

    Behind a proxy (``HTTPS_PROXY`` / ``ALL_PROXY``) the answer is True: only the client knows.
    The probe runs in a daemon thread so a slow DNS lookup cannot hold the caller longer.
    """
    if any(os.environ.get(var) for var in _PROXY_VARS):
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    address = (url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443))
    result: list[bool] = []

    def probe() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result) and result[0]


def load_hub(hub_id: str, config: str | None, split: str) -> list[dict]:
    """Records of a hub dataset split; :class:`HubUnavailable` (quickly) when it cannot load."""
    try:
        import datasets
    except ImportError:
        raise HubUnavailable("the hub needs `datasets` (pip install 'reasonlab[hf]')") from None
    if not hub_reachable() and not getattr(datasets.config, "HF_HUB_OFFLINE", False):
        raise HubUnavailable("the Hugging Face hub is unreachable (HF_DATASETS_OFFLINE=1 loads "
                             "a cached copy, if any)")
    try:
        data = datasets.load_dataset(hub_id, config, split=split)
    except Exception as exc:  # noqa: BLE001 - any failure of the hub client means "not here"
        why = " ".join(str(exc).split())[:200]
        raise HubUnavailable(f"loading {hub_id!r} ({split}) from the hub failed: {why}") from None
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

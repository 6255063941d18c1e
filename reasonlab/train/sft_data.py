"""Supervised fine-tuning data: jsonl rows -> token documents ``(prompt_ids, completion_ids)``.

Three row formats, recognised line by line:

- ``{"prompt": str, "completion": str}``: the prompt goes through ``tokenizer.prompt_ids`` (the
  chat template as one user turn for a Hugging Face tokenizer that has one; the plain text for
  ``CharTokenizer``), exactly as the samplers build prompts;
- ``{"messages": [{"role", "content"}, ...]}``: the last message must be the assistant's and is
  the completion; the earlier turns are the prompt, through the tokenizer's chat template with
  the generation prompt (a tokenizer without one: their contents joined by newlines, then
  ``prompt_ids``);
- a run's ``results.jsonl`` row (``eval``, GRPO, RFT: ``question``, ``completions``, ``correct``,
  ``finish_reasons``): the prompt is rebuilt with the task's template
  (``task.format_prompt(row, template)``); ``filter: correct`` keeps the verified completions,
  ``all`` every one; completions cut off by the length limit are never kept (they have no end).

Completion text is kept verbatim (``<think>`` included) and encoded with ``tokenizer.encode``;
EOS is appended. A bad row (invalid JSON, a missing or empty field, a document longer than
``max_len`` tokens) is counted and reported as ``path:LINE: reason``, or with
``bad_rows: error`` stops the run with that one line (``DataError``).
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from reasonlab.io import DataError

Doc = tuple[list[int], list[int]]        # (prompt ids, completion ids ending with EOS)
SHOWN_BAD = 5                             # bad rows listed by name in the report


class BadRow(ValueError):
    """One row that cannot become a training document; the message is the reason."""


@dataclass
class DataReport:
    """What loading a data file found."""
    rows: int = 0                    # non-blank lines read
    documents: int = 0               # documents kept
    bad: int = 0                     # bad rows (or documents of a results row) skipped
    filtered: int = 0                # results completions dropped by the verdict filter or truncation
    bad_examples: list[str] = field(default_factory=list)   # the first few, "path:LINE: reason"

    def note_bad(self, where: str, reason: str) -> None:
        self.bad += 1
        if len(self.bad_examples) < SHOWN_BAD:
            self.bad_examples.append(f"{where}: {reason}")


def task_sft_rows(task, n: int, seed: int, template: str, generate: dict | None = None,
                  trace: dict | None = None) -> list[dict]:
    """``n`` rows ``{"prompt", "completion"}`` of the task's own training problems and traces
    (``task.trace(example, rng, **trace)``, as ``train.corpus`` builds pretraining documents);
    a pure function of the arguments."""
    rng = random.Random(f"sft:{seed}")
    examples = task.generate(n, seed=seed, split="train", **(generate or {}))
    return [{"prompt": task.format_prompt(ex, template), "completion": task.trace(ex, rng, **(trace or {}))}
            for ex in examples]


def messages_prompt_ids(tokenizer, messages: list[dict]) -> list[int]:
    """Prompt ids of the turns before the completion: the tokenizer's chat template with the
    generation prompt when it uses one (``HFTokenizer.use_chat``), else the turns' contents
    joined by newlines through ``tokenizer.prompt_ids``."""
    if getattr(tokenizer, "use_chat", False):
        out = tokenizer.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        if isinstance(out, dict) or hasattr(out, "input_ids"):       # BatchEncoding in recent versions
            out = out["input_ids"]
        return [int(i) for i in out]
    return tokenizer.prompt_ids("\n".join(m["content"] for m in messages))


def _text(row: dict, key: str) -> str:
    """``row[key]`` as a non-empty string, else BadRow."""
    if key not in row:
        raise BadRow(f"missing field '{key}'")
    value = row[key]
    if not isinstance(value, str):
        raise BadRow(f"field '{key}' must be a string, got {type(value).__name__}")
    if not value.strip():
        raise BadRow(f"empty '{key}'")
    return value


def _message_texts(row: dict) -> tuple[list[dict], str]:
    """(earlier turns, completion text) of a ``messages`` row, else BadRow."""
    messages = row["messages"]
    if not isinstance(messages, list) or len(messages) < 2:
        raise BadRow("'messages' must be a list of at least 2 turns (prompt turns, then the assistant's)")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise BadRow(f"messages[{i}] must be {{\"role\": str, \"content\": str}}")
    if messages[-1]["role"] != "assistant":
        raise BadRow(f"the last message must be the assistant's (the completion), got role '{messages[-1]['role']}'")
    turns = [{"role": m["role"], "content": m["content"]} for m in messages[:-1]]
    return turns, _text(messages[-1], "content")


def row_documents(row: dict, tokenizer, task, template: str, keep: str) -> tuple[list[Doc], int]:
    """The documents of one parsed row and how many results completions were filtered out;
    BadRow for a row that gives none it should. ``keep``: ``correct`` | ``all`` (results rows)."""
    encode = tokenizer.encode
    eos = [tokenizer.eos_id]
    if "messages" in row:
        turns, completion = _message_texts(row)
        return [(messages_prompt_ids(tokenizer, turns), encode(completion) + eos)], 0
    if "completions" in row:
        return _results_documents(row, tokenizer, task, template, keep)
    prompt, completion = _text(row, "prompt"), _text(row, "completion")
    return [(tokenizer.prompt_ids(prompt), encode(completion) + eos)], 0


def _results_documents(row: dict, tokenizer, task, template: str, keep: str) -> tuple[list[Doc], int]:
    """Documents of a results row: its kept completions under the task's prompt."""
    question = _text(row, "question")
    texts = row["completions"]
    if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
        raise BadRow("'completions' must be a list of strings")
    correct = row.get("correct")
    if keep == "correct" and (not isinstance(correct, list) or len(correct) != len(texts)):
        raise BadRow("filter=correct needs a 'correct' list as long as 'completions'")
    finish = row.get("finish_reasons") or ["eos"] * len(texts)
    if not isinstance(finish, list) or len(finish) != len(texts):
        raise BadRow("'finish_reasons' must be a list as long as 'completions'")
    prompt = tokenizer.prompt_ids(task.format_prompt({**row, "question": question}, template))
    docs, dropped = [], 0
    for i, text in enumerate(texts):
        if finish[i] == "length" or (keep == "correct" and not correct[i]) or not text.strip():
            dropped += 1
            continue
        docs.append((prompt, tokenizer.encode(text) + [tokenizer.eos_id]))
    return docs, dropped


def _parsed_lines(path: Path):
    """(line number, dict or BadRow) for every non-blank line; DataError when unreadable."""
    try:
        handle = path.open("rb")
    except (FileNotFoundError, IsADirectoryError):
        raise DataError(f"file not found: {path}") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                yield lineno, BadRow(f"invalid JSON ({str(err).split(':')[0]})")
                continue
            yield lineno, row if isinstance(row, dict) else BadRow(f"expected a JSON object, got {type(row).__name__}")


def _bad(report: DataReport, where: str, reason: str, bad_rows: str) -> None:
    """Count a bad row, or stop at it with ``bad_rows: error``."""
    if bad_rows == "error":
        raise DataError(f"{where}: {reason}")
    report.note_bad(where, reason)


def load_documents(path: str | Path, tokenizer, task, template: str, keep: str, max_len: int,
                   bad_rows: str = "skip") -> tuple[list[Doc], DataReport]:
    """Every document of a jsonl file, in file order, and the report (``documents_from_rows``)."""
    return documents_from_rows(_parsed_lines(Path(path)), str(path), tokenizer, task, template, keep, max_len,
                               bad_rows)


def documents_from_rows(numbered, label: str, tokenizer, task, template: str, keep: str, max_len: int,
                        bad_rows: str = "skip") -> tuple[list[Doc], DataReport]:
    """Documents of ``(line number, row dict or BadRow)`` pairs read from ``label``. ``max_len``:
    the longest document (prompt + completion + EOS, in tokens). ``bad_rows``: ``skip`` (count
    and report) or ``error`` (DataError ``label:LINE: reason`` at the first bad row)."""
    docs: list[Doc] = []
    report = DataReport()
    for lineno, row in numbered:
        report.rows += 1
        where = f"{label}:{lineno}"
        try:
            if isinstance(row, BadRow):
                raise row
            found, dropped = row_documents(row, tokenizer, task, template, keep)
        except BadRow as err:
            _bad(report, where, str(err), bad_rows)
            continue
        report.filtered += dropped
        for prompt, completion in found:        # a results row: each completion on its own
            n = len(prompt) + len(completion)
            if not prompt:
                _bad(report, where, "the prompt encodes to no tokens", bad_rows)
            elif n > max_len:
                _bad(report, where, f"{n} tokens, longer than seq_len / the model's context ({max_len})", bad_rows)
            else:
                docs.append((prompt, completion))
    report.documents = len(docs)
    if not docs:
        raise DataError(f"{label}: no usable training documents ({report.rows} rows, {report.bad} bad, "
                        f"{report.filtered} filtered out)")
    return docs, report

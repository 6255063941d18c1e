"""Pretraining corpora: a configurable mixture of task traces, packed into fixed-length rows.

Batch ``i`` is a pure function of ``(seed, i)``: documents are drawn with a generator seeded by
both, so a resumed run sees exactly the batches it would have seen, and no stream state needs to
be checkpointed. A document is ``prompt(template) + trace + <eos>``; documents are packed back
to back (attention crosses document boundaries, as in ordinary LM pretraining).

Mixture spec (YAML), one entry per source; an entry's name is its task unless it names one with
``task:`` (so one task can enter twice, e.g. with two trace notations)::

    arith: {weight: 0.8, generate: {steps: [1, 6], max_operand: 20},
            trace: {error_rate: 0.1, correction_rate: 0.3}}
    arith_words: {task: arith, weight: 0.2, trace: {notation: words}}
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

ALLOWED_KEYS = {"task", "weight", "generate", "trace", "template"}


@dataclass
class MixtureEntry:
    task: object
    weight: float
    generate: dict
    trace: dict
    template: str


def build_mixture(spec: dict, default_template: str, get_task) -> list[MixtureEntry]:
    """Validate a mixture mapping and resolve its tasks. Errors name the offending key."""
    if not isinstance(spec, dict) or not spec:
        raise ValueError("mixture must be a non-empty mapping of task name -> {weight, generate, trace}")
    entries = []
    for name, item in spec.items():
        item = item or {}
        unknown = set(item) - ALLOWED_KEYS
        if unknown:
            raise ValueError(f"mixture.{name}: unknown keys {sorted(unknown)}; allowed: {sorted(ALLOWED_KEYS)}")
        weight = float(item.get("weight", 1.0))
        if weight <= 0:
            raise ValueError(f"mixture.{name}.weight must be > 0, got {weight}")
        entries.append(MixtureEntry(get_task(item.get("task", name)), weight, dict(item.get("generate") or {}),
                                    dict(item.get("trace") or {}), item.get("template", default_template)))
    return entries


def make_document(entry: MixtureEntry, rng: random.Random, seed: int) -> tuple[str, str]:
    """One training document: (the task's prompt for a fresh training example, a trace)."""
    example = entry.task.generate(1, seed=seed, split="train", **entry.generate)[0]
    return entry.task.format_prompt(example, entry.template), entry.task.trace(example, rng, **entry.trace)


def packed_batch(entries: list[MixtureEntry], encode, eos_id: int, batch_size: int, seq_len: int,
                 seed: int, index: int, pad_id: int = 0, loss_on_prompt: bool = True,
                 pool_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``index`` of the stream -> (inputs, targets), both (batch_size, seq_len) long.

    Rows are document-aligned: each row starts at a document boundary and holds whole documents
    (a question is always in view of its solution). Rows are filled first-fit from a pool of
    ``pool_size`` pending documents, so little is left as padding; padding is ignored by the
    loss (target -100). A document longer than a row is truncated.
    ``loss_on_prompt=False`` also ignores the targets inside prompts (the loss sees traces only).
    """
    rng = random.Random(f"{seed}:{index}")
    weights = [e.weight for e in entries]

    def new_document() -> tuple[list[int], list[bool]]:
        entry = rng.choices(entries, weights)[0]
        prompt, trace = make_document(entry, rng, rng.getrandbits(48))
        ids_p, ids_t = encode(prompt), encode(trace) + [eos_id]
        return ids_p + ids_t, [loss_on_prompt] * len(ids_p) + [True] * len(ids_t)

    inputs = torch.full((batch_size, seq_len), pad_id, dtype=torch.long)
    targets = torch.full((batch_size, seq_len), -100, dtype=torch.long)
    pool = [new_document() for _ in range(pool_size)]
    for row in range(batch_size):
        tokens: list[int] = []
        learn: list[bool] = []                           # per token: is it a loss target?
        while True:
            room = seq_len + 1 - len(tokens)
            pick = next((i for i, (ids, _) in enumerate(pool) if len(ids) <= room), None)
            if pick is None and not tokens:
                pick = 0                                 # too long for any row: truncate it
            if pick is None:
                break
            ids, mask = pool.pop(pick)
            pool.append(new_document())
            tokens.extend(ids[:room])
            learn.extend(mask[:room])
            if len(tokens) >= seq_len + 1:
                break
        n = len(tokens) - 1
        inputs[row, :n] = torch.tensor(tokens[:-1])
        targets[row, :n] = torch.tensor([t if ok else -100 for t, ok in zip(tokens[1:], learn[1:])])
    return inputs, targets

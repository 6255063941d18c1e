"""Value-head verifiers: a copy of the policy's trunk whose LM head is replaced by a linear head
with ``outputs`` logits (sigmoid = probability of correct), trained with per-token targets.

The model stays a ``Llama`` (only ``lm_head`` changes), so ``engine.tiny.LlamaRunner`` runs it with
the same KV cache, prefix sharing and forking as the policy; its "logits" are the head's outputs.
Cobbe et al. (2021) put the value head on every token (token-level targets = the solution's
label); the solution-level variant supervises only the last token. A PRM (Math-Shepherd) is
supervised at the step separators with Monte-Carlo labels (soft: fraction of rollouts correct).

Checkpoint directory: ``config.json`` (``{"reasonlab_value": {"llama": ..., "outputs": n, ...}}``),
``model.safetensors`` and the tokenizer files; written into ``<dir>.tmp`` then renamed.
"""
from __future__ import annotations

import copy
import json
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from reasonlab.models.llama import Llama, LlamaConfig


def make_value_model(policy: Llama, outputs: int = 1, lm_features: bool = False) -> Llama:
    """A copy of ``policy`` (trunk initialised from it) with a zero-initialised value head.

    With ``lm_features`` the head also keeps the policy's next-token logits (columns
    ``outputs..``, initialised from its LM head) and the value reads how surprising the solution's
    tokens are: value logit = head + ``lp_head``([running mean, running min] of the log-probability
    of every completion token so far) (see :func:`lp_features`). A sampled solution that misreads
    the question contains tokens its own language model found unlikely; a value head on the
    final hidden state alone does not see that."""
    model = copy.deepcopy(policy)
    extra = policy.cfg.vocab_size if lm_features else 0
    model.lm_head = nn.Linear(policy.cfg.d_model, outputs + extra, bias=True)
    nn.init.zeros_(model.lm_head.weight)
    nn.init.zeros_(model.lm_head.bias)
    if lm_features:
        with torch.no_grad():
            model.lm_head.weight[outputs:] = policy.lm_head.weight
        model.lp_head = nn.Linear(2, outputs, bias=False)
        nn.init.zeros_(model.lp_head.weight)
    return model


def value_outputs(model: Llama) -> int:
    lp = getattr(model, "lp_head", None)
    return lp.out_features if lp is not None else model.lm_head.out_features


def lp_weight(model: Llama) -> torch.Tensor | None:
    """(outputs, 2) weights of the log-probability features, or None for a plain value head."""
    lp = getattr(model, "lp_head", None)
    return None if lp is None else lp.weight.detach().float().clone()


def lp_features(logits: torch.Tensor, ids: torch.Tensor, starts: list[int], outputs: int) -> torch.Tensor:
    """(B, T, 2): at each completion position t (t >= ``starts[b]``) the running mean and running
    min of log p(token s | tokens < s) over the completion tokens s <= t, from the LM columns of
    ``logits`` (B, T, outputs + V); zero on prompt positions."""
    logp = torch.log_softmax(logits[..., outputs:].float(), -1)
    b, t = ids.shape
    tok_lp = torch.zeros(b, t)
    tok_lp[:, 1:] = logp[:, :-1].gather(2, ids[:, 1:, None])[..., 0]
    pos = torch.arange(t)[None]
    inside = pos >= torch.tensor(starts)[:, None]
    lp = torch.where(inside, tok_lp, torch.zeros_like(tok_lp))
    count = inside.cumsum(1).clamp(min=1)
    mean = lp.cumsum(1) / count
    mn = torch.where(inside, lp, torch.full_like(lp, float("inf"))).cummin(1).values
    mn = torch.where(inside, mn, torch.zeros_like(mn))
    return torch.stack([mean, mn], -1)


def value_logits(model: Llama, ids: torch.Tensor, starts: list[int] | None = None) -> torch.Tensor:
    """(B, T, outputs) value logits of a full forward (``starts``: completion start per row,
    needed by a model with LM features)."""
    raw = model(ids).float()
    lp = getattr(model, "lp_head", None)
    if lp is None:
        return raw
    if starts is None:
        raise ValueError("a value model with LM features needs the completion start of every row")
    out = lp.out_features
    return raw[..., :out] + lp(lp_features(raw, ids, starts, out))


def save_value_model(directory: str | Path, model: Llama, tokenizer, meta: dict | None = None) -> Path:
    from safetensors.torch import save_file

    from reasonlab.io import atomic_directory

    info = {"llama": asdict(model.cfg), "outputs": value_outputs(model),
            "lm_features": getattr(model, "lp_head", None) is not None, **(meta or {})}
    with atomic_directory(directory) as tmp:
        (tmp / "config.json").write_text(json.dumps({"reasonlab_value": info}, indent=1))
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        tokenizer.save(tmp)
    return Path(directory)


def load_value_model(directory: str | Path):
    """-> (model, tokenizer, meta)."""
    from safetensors.torch import load_file

    from reasonlab.models.tokenizer import CharTokenizer

    path = Path(directory)
    config = path / "config.json"
    if not config.exists():
        raise FileNotFoundError(f"no value model at {path} (expected {config})")
    meta = json.loads(config.read_text()).get("reasonlab_value")
    if meta is None:
        raise ValueError(f"{config}: not a reasonlab value model (no 'reasonlab_value')")
    known = {f.name for f in fields(LlamaConfig)}
    model = Llama(LlamaConfig(**{k: v for k, v in meta["llama"].items() if k in known}))
    outputs, lm = int(meta["outputs"]), bool(meta.get("lm_features", False))
    model.lm_head = nn.Linear(model.cfg.d_model, outputs + (model.cfg.vocab_size if lm else 0), bias=True)
    if lm:
        model.lp_head = nn.Linear(2, outputs, bias=False)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval(), CharTokenizer.load(path), meta


@dataclass
class ValueTrainConfig:
    epochs: int = 2
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    pairwise: float = 0.0     # weight of the within-group ranking (Bradley-Terry) loss; 0: BCE only
    feature_lr: float = 0.05  # learning rate of the log-prob feature weights (LM-feature models)


def batches(n_rows: int, groups: list[int] | None, batch_size: int, gen: torch.Generator) -> list[list[int]]:
    """Shuffled row batches; with ``groups`` (e.g. the problem of each row) a group is never split
    across batches, so every batch holds all the solutions of its problems.

    >>> sorted(sorted(b) for b in batches(4, [0, 0, 1, 1], 2, torch.Generator().manual_seed(0)))
    [[0, 1], [2, 3]]
    """
    if groups is None:
        order = torch.randperm(n_rows, generator=gen).tolist()
        return [order[i: i + batch_size] for i in range(0, n_rows, batch_size)]
    members: dict[int, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    keys = list(members)
    out, cur = [], []
    for k in torch.randperm(len(keys), generator=gen).tolist():
        if cur and len(cur) + len(members[keys[k]]) > batch_size:
            out.append(cur)
            cur = []
        cur = cur + members[keys[k]]
    return out + ([cur] if cur else [])


def pairwise_loss(scores: torch.Tensor, targets: torch.Tensor, groups: torch.Tensor) -> torch.Tensor:
    """Bradley-Terry loss between scored positions of the same group: for every pair with
    ``targets[a] > targets[b]``, ``-log sigmoid(scores[a] - scores[b])``, weighted by the target
    gap (soft labels: a 0.9 step against a 0.0 step counts more than 0.6 against 0.5). Zero when
    no group holds two different targets.

    >>> pairwise_loss(torch.tensor([2.0, -2.0]), torch.tensor([1.0, 0.0]), torch.tensor([0, 1])).item()
    0.0
    """
    gap = targets[:, None] - targets[None, :]
    weight = torch.where((groups[:, None] == groups[None, :]) & (gap > 1e-6), gap, torch.zeros_like(gap))
    if float(weight.sum()) == 0.0:
        return scores.sum() * 0.0
    margin = scores[:, None] - scores[None, :]
    return (F.softplus(-margin) * weight).sum() / weight.sum()


def _batch(rows: list[tuple[list[int], list]], pad_id: int, outputs: int):
    """Right-padded ids (B, T), targets (B, T, O) and mask (B, T, O)."""
    t = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), t), pad_id, dtype=torch.long)
    target = torch.zeros(len(rows), t, outputs)
    mask = torch.zeros(len(rows), t, outputs, dtype=torch.bool)
    for i, (seq, targets) in enumerate(rows):
        ids[i, : len(seq)] = torch.tensor(seq)
        for pos, y in enumerate(targets):
            ys = y if isinstance(y, (list, tuple)) else [y] * outputs
            for o, v in enumerate(ys):
                if v is not None:
                    target[i, pos, o], mask[i, pos, o] = float(v), True
    return ids, target, mask


def _ranked(rows, idx, mask, target, logits, rank_positions, groups):
    """(scores, targets, groups) of the positions that take part in the ranking loss (head 0):
    ``rank_positions[row]`` when given, else every position with a target."""
    sel_s, sel_t, sel_g = [], [], []
    for b, i in enumerate(idx):
        pos = rank_positions[i] if rank_positions is not None else mask[b, :, 0].nonzero().flatten().tolist()
        pos = [q for q in pos if mask[b, q, 0]]
        if pos:
            sel_s.append(logits[b, pos, 0])
            sel_t.append(target[b, pos, 0])
            sel_g += [groups[i]] * len(pos)
    if not sel_s:
        return None
    return torch.cat(sel_s), torch.cat(sel_t), torch.tensor(sel_g)


def train_value_model(model: Llama, rows: list[tuple[list[int], list]], cfg: ValueTrainConfig,
                      pad_id: int = 0, log=None, groups: list[int] | None = None,
                      rank_positions: list[list[int]] | None = None, starts: list[int] | None = None) -> list[float]:
    """Binary cross-entropy (soft targets allowed) of the head's logits at the positions with a
    target. ``rows``: (token ids, per-position targets of the same length; None = no loss, a
    float, or one value per output). With ``groups`` (one id per row, e.g. its problem) batches
    keep groups whole, and ``cfg.pairwise > 0`` adds a within-group ranking loss over the
    positions ``rank_positions[row]`` (default: every position with a target), so the head
    learns what separates right from wrong solutions of the *same* problem rather than only how
    hard the problem is. ``starts``: the completion start of every row (models with LM features).
    Returns the loss of every step."""
    if not rows:
        raise ValueError("no training rows for the value model")
    outputs = value_outputs(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    lp = getattr(model, "lp_head", None)
    rest = [q for name, q in model.named_parameters() if not name.startswith("lp_head.")]
    groups_ = [{"params": rest, "lr": cfg.lr}] + ([{"params": list(lp.parameters()), "lr": cfg.feature_lr}]
                                                  if lp is not None else [])
    opt = torch.optim.AdamW(groups_, lr=cfg.lr, weight_decay=cfg.weight_decay)
    model.train()
    losses, t0 = [], time.perf_counter()
    if cfg.pairwise > 0 and groups is None:
        raise ValueError("pairwise > 0 needs groups (one id per row)")
    steps = cfg.epochs * len(batches(len(rows), groups, cfg.batch_size, torch.Generator().manual_seed(cfg.seed)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: max(0.0, 1 - s / max(1, steps)))
    for _ in range(cfg.epochs):
        for idx in batches(len(rows), groups, cfg.batch_size, gen):
            ids, target, mask = _batch([rows[i] for i in idx], pad_id, outputs)
            logits = value_logits(model, ids, None if starts is None else [starts[i] for i in idx])
            loss = F.binary_cross_entropy_with_logits(logits[mask], target[mask])
            if cfg.pairwise > 0:
                ranked = _ranked(rows, idx, mask, target, logits, rank_positions, groups)
                if ranked is not None:
                    loss = loss + cfg.pairwise * pairwise_loss(*ranked)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            losses.append(float(loss.detach()))
            if log is not None and len(losses) % 50 == 0:
                log(f"value model step {len(losses)}/{steps} loss {sum(losses[-50:]) / 50:.4f} "
                    f"({time.perf_counter() - t0:.0f} s)")
    model.eval()
    return losses

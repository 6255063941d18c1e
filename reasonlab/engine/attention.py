"""Attention over a KV cache made of shared segments (cascade / prefix-shared attention).

A row's context is a chain: zero or more *segments* whose keys and values are shared by groups of
rows (the template prefix shared by every prompt; a prompt shared by its ``n`` samples; later, a
parent path shared by its children in tree search), followed by the row's *own* tokens. A segment
stores its KV once per group, shape (Gs, K, Ts, E), and ``group`` (B,) says which group each row
reads. Scores are computed per group with one batched matmul in which all the group's queries
meet the group's keys once, so a shared prefix is read from memory once per step instead of once
per row. The softmax runs over the concatenation of all segments and the own keys, so the result
equals ordinary attention over the row's full context (tests check it against a reference).

Shapes: B rows, K kv heads, G query heads per kv head, Tq queries per row, Ts segment length,
S own length, E head dim.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Segment:
    k: list[torch.Tensor]        # per layer (Gs, K, Ts, E)
    v: list[torch.Tensor]
    valid: torch.Tensor          # (Gs, Ts) bool
    group: torch.Tensor          # (B,) long, group of every row
    table: torch.Tensor          # (Gs, C) long, rows of each group padded with B
    slot: torch.Tensor           # (B,) long, position of the row inside its group's table row
    uniform: bool                # rows sorted by group, C rows each: grouping is a free view
    row_mask: torch.Tensor | None  # (B, 1, 1, 1, Ts) bool key mask per row; None if all valid

    @classmethod
    def build(cls, k, v, valid, group) -> Segment:
        k = [t.contiguous() for t in k]        # a strided view would be copied at every step
        v = [t.contiguous() for t in v]
        table, slot = group_table(group, valid.shape[0])
        uniform = table.numel() == group.numel() and bool((table.flatten() == torch.arange(group.numel(), device=group.device)).all())
        row_mask = None if bool(valid.all()) else valid[group][:, None, None, None, :]
        return cls(k, v, valid, group, table, slot, uniform, row_mask)

    def select(self, rows: torch.Tensor) -> Segment:
        """Keep ``rows``; groups left without rows are dropped."""
        group = self.group[rows]
        present = torch.unique(group)
        if present.numel() < self.valid.shape[0]:
            return Segment.build([k[present] for k in self.k], [v[present] for v in self.v],
                                 self.valid[present], torch.searchsorted(present, group))
        return Segment.build(self.k, self.v, self.valid, group)


def group_table(group: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of each group, padded with ``B``: table (Gs, C) and each row's slot (B,).

    >>> t, s = group_table(torch.tensor([0, 0, 1]), 2)
    >>> t.tolist(), s.tolist()
    ([[0, 1], [2, 3]], [0, 1, 0])
    """
    b = group.numel()
    counts = torch.bincount(group, minlength=n_groups)
    order = torch.argsort(group, stable=True)
    starts = counts.cumsum(0) - counts
    slot = torch.empty_like(group)
    slot[order] = torch.arange(b, device=group.device) - starts[group[order]]
    table = torch.full((n_groups, max(1, int(counts.max()))), b, dtype=torch.long, device=group.device)
    table[group, slot] = torch.arange(b, device=group.device)
    return table, slot


def _to_groups(x: torch.Tensor, seg: Segment) -> torch.Tensor:
    """Per-row (B, K, G, Tq, X) -> per-group (Gs, K, C*G*Tq, X), padding rows are zeros."""
    _, kh, g, tq, d = x.shape
    gs, c = seg.table.shape
    if seg.uniform:
        grouped = x.view(gs, c, kh, g, tq, d)
    else:
        grouped = torch.cat([x, x.new_zeros(1, kh, g, tq, d)])[seg.table]   # (Gs, C, K, G, Tq, X)
    return grouped.permute(0, 2, 1, 3, 4, 5).reshape(gs, kh, c * g * tq, d)


def _to_rows(x: torch.Tensor, seg: Segment, g: int, tq: int) -> torch.Tensor:
    """Per-group (Gs, K, C*G*Tq, X) -> per-row (B, K, G, Tq, X)."""
    gs, kh, _, d = x.shape
    c = seg.table.shape[1]
    x = x.view(gs, kh, c, g, tq, d).permute(0, 2, 1, 3, 4, 5)    # (Gs, C, K, G, Tq, X)
    if seg.uniform:
        return x.reshape(gs * c, kh, g, tq, d)
    return x[seg.group, seg.slot]


def attend(q: torch.Tensor, layer: int, segments: list[Segment], own_k: torch.Tensor | None,
           own_v: torch.Tensor | None, own_mask: torch.Tensor | None, scale: float) -> torch.Tensor:
    """q (B, K, G, Tq, E); own_k/v (B, K, S, E); own_mask broadcastable to (B, 1, 1, Tq, S) bool
    or None (all visible) -> attention output (B, K, G, Tq, E)."""
    b, kh, g, tq, e = q.shape
    scores, widths = [], []
    qs = q * scale
    for seg in segments:
        s = _to_groups(qs, seg) @ seg.k[layer].transpose(-1, -2)  # (Gs, K, C*G*Tq, Ts)
        s = _to_rows(s, seg, g, tq).float()
        if seg.row_mask is not None:
            s.masked_fill_(~seg.row_mask, float("-inf"))
        scores.append(s)
        widths.append(s.shape[-1])
    if own_k is not None:
        s = (qs.reshape(b, kh, g * tq, e) @ own_k.transpose(-1, -2)).view(b, kh, g, tq, -1).float()
        if own_mask is not None:
            s.masked_fill_(~own_mask, float("-inf"))
        scores.append(s)
        widths.append(s.shape[-1])
    probs = torch.softmax(torch.cat(scores, -1), -1).to(q.dtype).split(widths, -1)
    out = None
    for seg, p in zip(segments, probs):
        part = _to_rows(_to_groups(p, seg) @ seg.v[layer], seg, g, tq)
        out = part if out is None else out + part
    if own_k is not None:
        part = (probs[-1].reshape(b, kh, g * tq, -1) @ own_v).view(b, kh, g, tq, e)
        out = part if out is None else out + part
    return out

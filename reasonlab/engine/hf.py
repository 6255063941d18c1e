"""KV-cache backend over any ``transformers`` causal LM (implements ``engine.protocol.CausalLM``).

State: a ``DynamicCache`` plus, per row, a mask of the cache columns that are part of its
context and the position id of its next token. Prompts are left-padded; position ids count real
tokens only (``cumsum(mask) - 1``), so a padded row computes what it would compute alone.

- ``prefill`` encodes each prompt once and repeats its KV ``copies`` times (rows
  ``p*copies .. p*copies+copies-1``);
- ``decode(state, tokens, active)`` appends one column for every row; rows with ``active``
  False get a masked column (their token never enters their context) and keep their position;
- ``select`` indexes rows (repeats fork a row: its KV is copied, never re-encoded);
- ``concat`` stacks the rows of several states, left-padding shorter caches with masked columns.

Logits come back as fp32 on the model's device (the sampler draws there). Only models
whose cache layers are plain ``DynamicLayer``s (full attention: Llama, Qwen2, Mistral without a
sliding window, ...) support ``select``/``concat``; others raise a clear error there.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch

from reasonlab.engine.protocol import ContextTooLong


@dataclass
class HFState:
    cache: object              # transformers DynamicCache, batch = rows
    mask: torch.Tensor         # (B, L) bool: cache columns in each row's context (model device)
    pos: torch.Tensor          # (B,) long: position id of each row's next token (model device)


def _kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(keys, values) per layer, each (B, heads, L, E)."""
    out = []
    for layer in cache.layers:
        if type(layer).__name__ != "DynamicLayer":
            raise NotImplementedError(f"HFRunner: cache layer {type(layer).__name__} (sliding window or "
                                      "recurrent) does not support select/concat; use a full-attention model")
        out.append((layer.keys, layer.values))
    return out


def _cache(kvs: list[tuple[torch.Tensor, torch.Tensor]]):
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=kvs)


def context_limit(config) -> int | None:
    """The model's context window from its config, if it states one."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    return getattr(text, "max_position_embeddings", None)


class HFRunner:
    """Runs a transformers ``PreTrainedModel`` (or a peft wrapper) for sampling.

    ``dtype`` casts a sampling copy of the model (None: the model itself, as it is)."""

    def __init__(self, model, dtype: torch.dtype | None = None):
        param = next(model.parameters())
        if dtype is not None and dtype != param.dtype:
            model = copy.deepcopy(model).to(dtype)
        self.model = model
        self.model.eval()
        self.device = param.device
        self.dtype = next(model.parameters()).dtype
        self.vocab_size = model.config.get_text_config().vocab_size if hasattr(model.config, "get_text_config") \
            else model.config.vocab_size
        self.max_len = context_limit(model.config)
        self.tokens_encoded = 0

    def _forward(self, ids, mask, pos, cache, keep_last: bool):
        out = self.model(input_ids=ids, attention_mask=mask.long(), position_ids=pos, past_key_values=cache,
                         use_cache=True, logits_to_keep=1 if keep_last else 0)
        return out.logits[:, -1].float(), out.past_key_values

    @torch.inference_mode()
    def prefill(self, ids: torch.Tensor, valid: torch.Tensor, max_new: int, copies: int = 1):
        from transformers import DynamicCache

        valid = valid.bool()
        lengths = valid.sum(1)
        if self.max_len is not None and int(lengths.max()) + max_new > self.max_len:
            raise ContextTooLong(f"a prompt of {int(lengths.max())} tokens + max_new_tokens {max_new} exceeds "
                                 f"the model's context of {self.max_len} tokens; lower --max_new_tokens "
                                 "or use shorter problems")
        self.tokens_encoded += int(lengths.sum())
        ids, valid = ids.to(self.device), valid.to(self.device)
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        logits, cache = self._forward(ids, valid, pos, DynamicCache(), keep_last=True)
        if copies > 1:
            cache.batch_repeat_interleave(copies)
            logits = logits.repeat_interleave(copies, 0)
            valid = valid.repeat_interleave(copies, 0)
            lengths = lengths.repeat_interleave(copies, 0)
        return logits, HFState(cache, valid, lengths.to(self.device))

    @torch.inference_mode()
    def decode(self, state: HFState, tokens: torch.Tensor, active: torch.Tensor | None = None) -> torch.Tensor:
        b = tokens.shape[0]
        act = torch.ones(b, dtype=torch.bool, device=self.device) if active is None else active.to(self.device).bool()
        self.tokens_encoded += int(act.sum())
        state.mask = torch.cat([state.mask, act[:, None]], 1)
        # An inactive row still needs one visible column for its (discarded) query: it sees itself.
        mask = state.mask.clone()
        mask[~act, -1] = True
        logits, state.cache = self._forward(tokens.to(self.device)[:, None], mask, state.pos[:, None],
                                            state.cache, keep_last=False)
        state.pos = state.pos + act.long()
        return logits

    def select(self, state: HFState, rows: torch.Tensor) -> HFState:
        rows = rows.to(self.device)
        kvs = [(k[rows], v[rows]) for k, v in _kv(state.cache)]
        return HFState(_cache(kvs), state.mask[rows], state.pos[rows])

    def concat(self, states: list[HFState]) -> HFState:
        """Rows of ``states`` in order; shorter caches are left-padded with masked columns."""
        if not states:
            raise ValueError("concat needs at least one state")
        length = max(s.mask.shape[1] for s in states)
        per_state = [_kv(s.cache) for s in states]
        kvs = []
        for layer in range(len(per_state[0])):
            ks = [_left_pad(kv[layer][0], length) for kv in per_state]
            vs = [_left_pad(kv[layer][1], length) for kv in per_state]
            kvs.append((torch.cat(ks, 0), torch.cat(vs, 0)))
        mask = torch.cat([_left_pad(s.mask, length) for s in states], 0)
        return HFState(_cache(kvs), mask, torch.cat([s.pos for s in states]))


def _left_pad(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero-pad the sequence axis (2 for (B, H, L, E) caches, 1 for (B, L) masks) on the left."""
    axis = 2 if x.dim() == 4 else 1
    missing = length - x.shape[axis]
    if missing == 0:
        return x
    shape = list(x.shape)
    shape[axis] = missing
    return torch.cat([torch.zeros(shape, dtype=x.dtype, device=x.device), x], axis)

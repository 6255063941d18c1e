"""The small model protocol the engine samples from.

Any backend (the tiny Llama here, a Hugging Face model later) plugs into the sampler, search
and training code by implementing these three calls over its own cache representation:

- ``prefill(ids, valid, max_new, copies)``: encode left-padded prompts ``ids`` (P, T) with
  ``valid`` (P, T) marking real tokens, reserve room for ``max_new`` more tokens, and return the
  next-token logits (P*copies, V) plus an opaque state in which every prompt's KV is repeated
  ``copies`` times (rows ``p*copies .. p*copies+copies-1`` belong to prompt ``p``). The prompt is
  encoded once, whatever ``copies`` is.
- ``decode(state, tokens, active=None)``: append one token per row, tokens (B,), return logits
  (B, V). ``active`` (B,) bool: rows where it is False do not advance (their token is not part of
  their context afterwards and their position does not move; their logits are meaningless).
  Step-level search uses it when rows finish a step at different times.
- ``select(state, rows)``: keep only ``rows`` (a 1-D index tensor), in that order; rows may
  repeat, which forks a row into children (its KV is copied, never re-encoded).
- ``concat(states)``: one state with the rows of ``states`` in order (tree-search pools).

``max_len`` (int or None) is the context window when the backend knows it.

``tokens_encoded`` counts the real token positions the backend has run through the network, so
tests can prove that no caller re-encodes a prefix whose KV it already holds.
"""
from __future__ import annotations

from typing import Any, Protocol

import torch


class ContextTooLong(ValueError):
    """A prompt plus the tokens to generate does not fit the model's context window."""


class CausalLM(Protocol):
    vocab_size: int
    tokens_encoded: int
    max_len: int | None

    def prefill(self, ids: torch.Tensor, valid: torch.Tensor, max_new: int, copies: int = 1
                ) -> tuple[torch.Tensor, Any]: ...

    def decode(self, state: Any, tokens: torch.Tensor, active: torch.Tensor | None = None
               ) -> torch.Tensor: ...

    def select(self, state: Any, rows: torch.Tensor) -> Any: ...

    def concat(self, states: list[Any]) -> Any: ...

"""vLLM generation (``pip install 'reasonlab[vllm]'``, needs a GPU).

- ``make_llm(model_dir)``: an offline ``vllm.LLM`` with prefix caching on (the prompt template
  and each prompt's ``n`` samples share their KV blocks);
- ``vllm_sample(llm, prompts, cfg, eos_id=...)``: the same call and the same ``SampleBatch`` as
  ``engine.sampler.sample`` (row ``p*n + j`` is sample ``j`` of prompt ``p``; ids, per-token
  logprobs, finish reasons ``eos`` / ``stop`` / ``length``);
- ``sync_weights(llm, model)``: colocated weight sync for training loops: the trainer's current
  parameters (tiny Llama, transformers or peft model; LoRA merged on the fly) are loaded into
  the engine's model in place, then the prefix cache is reset so no KV of the old weights is
  reused.

Differences from the built-in sampler: vLLM draws its own random numbers (same seed, different
samples), and its logprobs follow its ``logprobs_mode``; ``make_llm`` asks for
``processed_logprobs`` (after temperature, before top-k/top-p, like ours) where the installed
version supports it. The weight-sync path reaches into vLLM internals that move between
versions: ``engine_model`` tries the known attribute paths and falls back to
``collective_rpc``; see docs/LOG.md for the versions it was checked with.
"""
from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

import torch

from reasonlab.engine.sampler import SampleBatch, SamplingConfig

INSTALL_HINT = "vLLM generation needs vllm and a GPU: pip install 'reasonlab[vllm]'"


def require_vllm():
    """The vllm module, or an ImportError that says how to install it."""
    try:
        import vllm
    except ImportError as err:
        raise ImportError(INSTALL_HINT) from err
    return vllm


def make_llm(model_dir: str, dtype: str = "auto", gpu_memory_utilization: float = 0.5, seed: int = 0,
             max_model_len: int | None = None, **kwargs: Any):
    """An offline ``vllm.LLM`` with prefix caching (extra ``kwargs`` go to ``vllm.LLM``)."""
    vllm = require_vllm()
    options = {"model": str(model_dir), "dtype": dtype, "enable_prefix_caching": True, "seed": seed,
               "gpu_memory_utilization": gpu_memory_utilization, "max_model_len": max_model_len}
    if "logprobs_mode" in _engine_args(vllm):
        options["logprobs_mode"] = "processed_logprobs"
    options.update(kwargs)
    return vllm.LLM(**{k: v for k, v in options.items() if v is not None})


def _engine_args(vllm) -> set[str]:
    try:
        from vllm.engine.arg_utils import EngineArgs
        return set(inspect.signature(EngineArgs).parameters)
    except (ImportError, TypeError, ValueError):
        return set()


def sampling_params(cfg: SamplingConfig, eos_id: int, stop_ids: list[list[int]] | None = None):
    """``vllm.SamplingParams`` equivalent to ``cfg`` (single-token stops become stop token ids,
    ``cfg.stop`` strings stay in the output like our stop sequences)."""
    vllm = require_vllm()
    multi = [s for s in (stop_ids or []) if len(s) > 1]
    if multi:
        raise ValueError("vllm_sample: multi-token stop_ids are not supported; pass them as cfg.stop strings")
    return vllm.SamplingParams(
        n=cfg.n, max_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
        top_k=cfg.top_k if cfg.top_k > 0 else -1, seed=cfg.seed, logprobs=0,
        stop_token_ids=[eos_id] + [s[0] for s in (stop_ids or []) if s], stop=list(cfg.stop) or None,
        include_stop_str_in_output=True, skip_special_tokens=False)


def vllm_sample(llm, prompts: list[list[int]], cfg: SamplingConfig, *, eos_id: int, pad_id: int = 0,
                stop_ids: list[list[int]] | None = None) -> SampleBatch:
    """Sample ``cfg.n`` completions per prompt with vLLM -> ``SampleBatch`` (see module doc)."""
    params = sampling_params(cfg, eos_id, stop_ids)
    outputs = llm.generate([{"prompt_token_ids": list(p)} for p in prompts], params, use_tqdm=False)
    index, ids, lps, reasons = [], [], [], []
    for p, out in enumerate(outputs):
        for completion in out.outputs:
            toks = list(completion.token_ids)
            index.append(p)
            ids.append(toks)
            lps.append(_token_logprobs(completion.logprobs, toks))
            reasons.append(finish_reason(completion.finish_reason, toks, eos_id))
    return SampleBatch(prompt_index=index, prompt_ids=[list(p) for p in prompts], completion_ids=ids,
                       logprobs=lps, finish_reasons=reasons)


def finish_reason(vllm_reason: str | None, tokens: list[int], eos_id: int) -> str:
    """vLLM's ``stop``/``length`` -> our ``eos``/``stop``/``length``.

    >>> finish_reason("stop", [5, 1], 1), finish_reason("stop", [5, 7], 1), finish_reason("length", [5], 1)
    ('eos', 'stop', 'length')
    """
    if vllm_reason == "length":
        return "length"
    return "eos" if tokens and tokens[-1] == eos_id else "stop"


def _token_logprobs(entries, tokens: list[int]) -> list[float]:
    """The sampled token's logprob at every position (vLLM gives a dict token -> Logprob)."""
    if entries is None:
        return [0.0] * len(tokens)
    return [float(e[t].logprob) if t in e else float("nan") for e, t in zip(entries, tokens)]


# ---------------------------------------------------------------- colocated weight sync
def hf_named_weights(model) -> Iterable[tuple[str, torch.Tensor]]:
    """Hugging Face parameter names and tensors of a tiny Llama, a transformers model or a peft
    LoRA model (adapters merged into the returned tensors; the model itself is left as it is)."""
    from reasonlab.models.hf import model_kind

    if model_kind(model) == "tiny":
        from reasonlab.models.checkpoint import to_hf_state_dict

        return list(to_hf_state_dict(model).items())
    if hasattr(model, "get_base_model"):                     # peft
        return _merged_lora_weights(model.get_base_model())
    return [(n, t.detach()) for n, t in model.state_dict().items()]


def _merged_lora_weights(base) -> list[tuple[str, torch.Tensor]]:
    """Base weights with every active, unmerged LoRA delta added; names without peft's
    ``base_layer`` / ``lora_`` parts. Computed beside the model, which is not modified."""
    merged = {}
    for name, module in base.named_modules():
        if hasattr(module, "get_delta_weight") and hasattr(module, "base_layer"):
            weight = module.base_layer.weight.detach()
            if not getattr(module, "merged", False):
                for adapter in module.active_adapters:
                    if adapter in module.lora_A:
                        weight = weight + module.get_delta_weight(adapter).to(weight.dtype)
            merged[name + ".weight"] = weight
    out = []
    for name, tensor in base.state_dict().items():
        if "lora_" in name:
            continue
        name = name.replace(".base_layer", "")
        out.append((name, merged.get(name, tensor.detach())))
    return out


def engine_model(llm):
    """The ``torch.nn.Module`` inside a colocated (same process) vLLM engine, or None."""
    executor = getattr(getattr(llm, "llm_engine", None), "model_executor", None)
    worker = getattr(executor, "driver_worker", None)
    for path in (("worker", "model_runner", "model"), ("model_runner", "model")):
        obj = worker
        for attr in path:
            obj = getattr(obj, attr, None)
        if obj is not None and hasattr(obj, "load_weights"):
            return obj
    return None


def _rpc_load_weights(worker, weights):            # runs inside a vLLM worker
    worker.model_runner.model.load_weights(weights=weights)


def sync_weights(llm, model) -> int:
    """Load ``model``'s current weights into the vLLM engine; returns the number of tensors.
    Resets the prefix cache afterwards (its blocks hold KV computed with the old weights)."""
    weights = list(hf_named_weights(model))
    target = engine_model(llm)
    if target is not None:
        target.load_weights(weights=weights)
    elif hasattr(llm, "collective_rpc"):
        llm.collective_rpc(_rpc_load_weights, args=([(n, t.cpu()) for n, t in weights],))
    else:
        raise RuntimeError("sync_weights: this vLLM version exposes neither the engine's model nor "
                           "collective_rpc; update reasonlab.engine.vllm.engine_model")
    if hasattr(llm, "reset_prefix_cache"):
        llm.reset_prefix_cache()
    return len(weights)

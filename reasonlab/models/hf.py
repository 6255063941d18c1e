"""Hugging Face models behind the same interface as the tiny Llama.

``load_policy(path_or_id)`` is the one entry point the stages use: a reasonlab checkpoint
(``config.json`` with a ``"reasonlab"`` key) loads as our tiny ``Llama`` with its
``CharTokenizer``; anything else loads through ``transformers.AutoModelForCausalLM`` and
``AutoTokenizer`` (local directory or hub id) with its tokenizer wrapped in ``HFTokenizer`` —
or, with ``impl="auto"`` / ``"ours"``, a Llama / Qwen2 / Qwen3 directory loads into our ``Llama``
code (``models.families``) with its ``HFTokenizer``.
``make_runner(model)`` returns the matching ``engine.protocol.CausalLM`` backend, so
``engine.sampler.sample`` and everything above it run unchanged on either.

transformers and peft are imported lazily inside the functions: ``import reasonlab`` stays free
of them (``pip install 'reasonlab[hf]'`` adds them).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

CHAT_TEMPLATE_MODES = ("auto", "always", "never")


def _safetensors_error() -> type:
    try:
        from safetensors import SafetensorError
    except ImportError:  # pragma: no cover - older safetensors
        return OSError
    return SafetensorError


# what loading a broken model directory raises (truncated weights, corrupt json, missing files)
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, EOFError, _safetensors_error())
# the one table of dtype names (configs, recipes and the command line use these words)
DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16,
          "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}


def compute_dtype(name: str) -> torch.dtype | None:
    """The dtype a sampling copy is cast to for ``name`` (a key of :data:`DTYPES`); None for
    fp32, which samples from the fp32 weights themselves.

    >>> compute_dtype("bf16"), compute_dtype("float32")
    (torch.bfloat16, None)
    """
    from reasonlab.config import ConfigError

    if name not in DTYPES:
        raise ConfigError(f"dtype: unknown value {name!r}; choose from: {', '.join(DTYPES)}")
    return None if DTYPES[name] == torch.float32 else DTYPES[name]


def require_transformers():
    """The transformers module, or an ImportError that says how to install it."""
    try:
        import transformers
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError("Hugging Face models need transformers: pip install 'reasonlab[hf]'") from err
    return transformers


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps if available, else cpu; otherwise as given."""
    if device != "auto":
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"device={device!r} requested but CUDA is not available (use device=cpu)")
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """``auto`` -> bf16 on CUDA devices that support it and on CPU, fp16 on mps, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.bfloat16
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of auto, {', '.join(DTYPES)}")
    return DTYPES[dtype]


class HFTokenizer:
    """A ``transformers`` tokenizer with the interface of ``CharTokenizer``.

    ``encode`` is plain text -> ids (no special tokens: used for stop strings, completions and
    training text); ``prompt_ids`` builds a model prompt: the chat template with the text as one
    user turn (``chat_template``: ``auto`` when the tokenizer has one, ``always``, ``never``), or
    else the text with the tokenizer's own special tokens (e.g. BOS). ``stop_ids`` lists extra
    end-of-turn tokens (from the generation config) as stop sequences for the sampler.
    """

    def __init__(self, tok, chat_template: str = "auto", extra_eos: list[int] | None = None):
        if chat_template not in CHAT_TEMPLATE_MODES:
            raise ValueError(f"chat_template={chat_template!r}: expected one of {', '.join(CHAT_TEMPLATE_MODES)}")
        has_template = bool(getattr(tok, "chat_template", None))
        if chat_template == "always" and not has_template:
            raise ValueError(f"chat_template=always but the tokenizer of {tok.name_or_path!r} has no chat template")
        self.tok = tok
        self.use_chat = has_template and chat_template != "never"
        eos = tok.eos_token_id
        if eos is None:
            raise ValueError(f"tokenizer of {tok.name_or_path!r} has no eos token")
        self.eos_id = int(eos)
        self.pad_id = int(tok.pad_token_id) if tok.pad_token_id is not None else self.eos_id
        self.extra_eos = [int(i) for i in (extra_eos or []) if int(i) != self.eos_id]
        self.eos_token = tok.eos_token

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def __len__(self) -> int:
        return len(self.tok)

    @property
    def stop_ids(self) -> list[list[int]]:
        return [[i] for i in self.extra_eos]

    def encode(self, text: str) -> list[int]:
        return list(self.tok.encode(text, add_special_tokens=False))

    def decode(self, ids, skip_special: bool = True) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=skip_special)

    def prompt_ids(self, text: str) -> list[int]:
        if self.use_chat:
            out = self.tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True,
                                               tokenize=True)
            if isinstance(out, dict) or hasattr(out, "input_ids"):   # BatchEncoding in recent versions
                out = out["input_ids"]
            return [int(i) for i in out]
        return list(self.tok(text, add_special_tokens=True)["input_ids"])

    def save(self, directory: str | Path) -> None:
        self.tok.save_pretrained(str(directory))


@dataclass
class LoraOptions:
    """peft LoRA settings for training a Hugging Face model (``r`` 0: no LoRA)."""
    r: int = 0
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


def is_reasonlab_checkpoint(path_or_id: str | Path) -> bool:
    """True for a local directory whose ``config.json`` has a ``"reasonlab"`` key."""
    config = Path(path_or_id) / "config.json"
    if not config.is_file():
        old = Path(str(path_or_id) + ".old") / "config.json"
        config = old if old.is_file() else config
    if not config.is_file():
        return False
    try:
        return "reasonlab" in json.loads(config.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{config}: not valid JSON ({err})") from err


def looks_like_hub_id(name: str) -> bool:
    """``org/name`` or ``name`` (what the hub accepts), not an absolute or dotted local path.

    >>> looks_like_hub_id("Qwen/Qwen2.5-0.5B-Instruct"), looks_like_hub_id("/models/x"), looks_like_hub_id("runs/a/model")
    (True, False, False)
    """
    parts = name.split("/")
    return bool(name) and not name.startswith((".", "/", "~")) and len(parts) <= 2 and all(parts)


def load_hf(path_or_id: str, device: str = "auto", dtype: str | torch.dtype | None = "auto",
            chat_template: str = "auto", lora: LoraOptions | None = None, trust_remote_code: bool = False):
    """-> (transformers model in eval mode on ``device``, HFTokenizer)."""
    transformers = require_transformers()
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    name = str(path_or_id)
    if not Path(name).exists() and not looks_like_hub_id(name):
        raise FileNotFoundError(f"no checkpoint at {name} (no such directory, and not a hub id like 'org/name')")
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
        model = transformers.AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype,
                                                                  trust_remote_code=trust_remote_code)
    except OSError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FileNotFoundError(f"could not load model {name!r}: {first}") from err
    model.to(dev).eval()
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    extra = gen_eos if isinstance(gen_eos, list) else ([gen_eos] if gen_eos is not None else [])
    if lora is not None and lora.r > 0:
        model = add_lora(model, lora)
    return model, HFTokenizer(tok, chat_template, extra)


def add_lora(model, opts: LoraOptions):
    """Wrap ``model`` in a peft LoRA model (only the adapters train)."""
    try:
        import peft
    except ImportError as err:  # pragma: no cover
        raise ImportError("LoRA needs peft: pip install 'reasonlab[hf]'") from err
    config = peft.LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout,
                             target_modules=list(opts.target_modules), task_type="CAUSAL_LM")
    return peft.get_peft_model(model, config)


def merge_lora(model):
    """A plain transformers model with the LoRA adapters merged into its weights."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


IMPLS = ("auto", "ours", "transformers")


def load_policy(path_or_id: str | Path, device: str = "auto", dtype: str | torch.dtype | None = "auto",
                chat_template: str = "auto", lora: LoraOptions | None = None,
                trust_remote_code: bool = False, impl: str | None = "auto") -> tuple[Any, Any, str]:
    """-> (model, tokenizer, kind) with kind ``"tiny"`` (our ``Llama`` code: fp32 weights on
    ``device``; the engine casts a sampling copy, so ``dtype`` does not apply) or ``"hf"`` (a
    transformers model on ``device`` in ``dtype``).

    ``impl`` picks the code for a Hugging Face directory:

    - ``"auto"`` (default): reasonlab checkpoints and a local Llama / Qwen2 / Qwen3 directory
      (``models.families``) -> ours, on any device, unless ``lora`` is set (peft wraps
      transformers modules); any other architecture -> transformers;
    - ``None``: reasonlab checkpoints -> ours, anything else -> transformers (``export`` uses it:
      a format conversion that keeps the requested dtype and merges LoRA);
    - ``"ours"``: always ours (ConfigError for an architecture or field we do not implement);
    - ``"transformers"``: always transformers, reasonlab checkpoints included.

    A config field of a supported family that our code does not implement (a sliding window,
    YaRN RoPE, ...) is a ConfigError naming the field under ``auto`` and ``ours``, never a silently
    different model. A directory that is empty, has no or a corrupt ``config.json``, no weights, or
    truncated weight or tokenizer files gives one line (ConfigError / DataError) naming the file."""
    from reasonlab.checks import check_model_ref

    check_model_ref(str(path_or_id))
    try:
        route = _route(path_or_id, impl, device, lora)
        if route == "checkpoint":
            from reasonlab.models.checkpoint import load_checkpoint

            model, tokenizer, _ = load_checkpoint(path_or_id)
            return model.to(resolve_device(device)), tokenizer, "tiny"
        if route == "ours":
            from reasonlab.models.families import load_pretrained

            model, tokenizer = load_pretrained(path_or_id, chat_template, trust_remote_code)
            return model.to(resolve_device(device)), tokenizer, "tiny"
        model, tokenizer = load_hf(str(path_or_id), device=device, dtype=dtype, chat_template=chat_template,
                                   lora=lora, trust_remote_code=trust_remote_code)
    except LOAD_ERRORS as err:
        from reasonlab.io import DataError

        text = " ".join(str(err).split()) or type(err).__name__
        raise DataError(f"{path_or_id}: could not load the model ({text[:300]})") from err
    return model, tokenizer, "hf"


def _route(path_or_id, impl: str | None, device: str, lora: LoraOptions | None) -> str:
    """``"checkpoint"`` (a reasonlab checkpoint with our tokenizer), ``"ours"`` (a Hugging Face
    directory through ``models.families``) or ``"transformers"``."""
    from reasonlab.config import ConfigError

    if impl is not None and impl not in IMPLS:
        raise ConfigError(f"impl: unknown value {impl!r}; choose from: {', '.join(IMPLS)}")
    if impl == "transformers":
        return "transformers"
    from reasonlab.models.checkpoint import has_char_tokenizer

    ours = is_reasonlab_checkpoint(path_or_id)
    config = Path(path_or_id) / "config.json"
    meta = json.loads(config.read_text()) if config.is_file() else None
    if impl is None or (ours and (meta is None or has_char_tokenizer(path_or_id))):
        return "checkpoint" if ours else "transformers"
    if impl == "ours":
        if meta is None:
            raise ConfigError(f"impl: ours loads local model directories; {path_or_id} has no config.json")
        if lora is not None and lora.r > 0:
            raise ConfigError("lora: LoRA adapters need impl=transformers (peft wraps transformers modules)")
        return "ours"
    from reasonlab.models.families import supported_family

    if meta is None or not supported_family(meta) or (lora is not None and lora.r > 0):
        return "transformers"
    return "ours"


def model_kind(model) -> str:
    from reasonlab.models.llama import Llama

    return "tiny" if isinstance(model, Llama) else "hf"


def make_runner(model, dtype: torch.dtype | None = None):
    """The ``CausalLM`` backend for ``model``: ``LlamaRunner`` for our tiny Llama, ``HFRunner``
    for a transformers (or peft) model. ``dtype`` casts a sampling copy (None: as is)."""
    if model_kind(model) == "tiny":
        from reasonlab.engine.tiny import LlamaRunner

        return LlamaRunner(model, dtype=dtype)
    from reasonlab.engine.hf import HFRunner

    return HFRunner(model, dtype=dtype)


def forward_logits(model, ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Full causal forward (no cache) for either kind: ids (B, T) -> logits (B, T, V)."""
    if model_kind(model) == "tiny":
        return model(ids)
    dev = next(model.parameters()).device
    mask = attention_mask.to(dev) if attention_mask is not None else None
    return model(input_ids=ids.to(dev), attention_mask=mask).logits


def lm_loss(model, ids: torch.Tensor, targets: torch.Tensor, ignore_index: int = -100) -> torch.Tensor:
    """Mean next-token cross-entropy for either kind; ``targets`` (B, T) already shifted, with
    ``ignore_index`` where no loss is taken."""
    logits = forward_logits(model, ids)
    targets = targets.to(logits.device)
    return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                             ignore_index=ignore_index)

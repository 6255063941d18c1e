"""Random Hugging Face models of the families we run, built locally (no download), for tests and
benchmarks: ``python -m reasonlab.models.random_models --preset qwen2-20m --out DIR``.

A preset is a transformers config of the family's shape (Qwen2: q/k/v biases, grouped-query
attention); the weights are transformers' random initialisation, except that 1-D parameters
(biases, norm gains) get random values so that a missing bias or norm changes the logits. The
tokenizer is our character vocabulary as a plain transformers tokenizer (ids beyond it are never
produced by prompts, but the model still computes logits over its full ``vocab_size``).
Random weights never emit EOS on purpose, so every sampled row decodes to its length limit.

Needs transformers (``pip install 'reasonlab[hf]'``).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

PRESETS = {
    # ~23M parameters: 6 layers of width 256 plus a 32k vocabulary, untied (Qwen2 layout)
    "qwen2-20m": ("Qwen2Config", {"vocab_size": 32768, "hidden_size": 256, "intermediate_size": 1024,
                                  "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
                                  "max_position_embeddings": 2048, "tie_word_embeddings": False}),
    # the shape of Qwen2.5-0.5B (494M parameters, tied embeddings)
    "qwen2.5-0.5b": ("Qwen2Config", {"vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                                     "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                                     "max_position_embeddings": 32768, "rope_theta": 1000000.0,
                                     "tie_word_embeddings": True}),
    # small shapes of the other families (tests)
    "llama-tiny": ("LlamaConfig", {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "max_position_embeddings": 256}),
    "qwen2-tiny": ("Qwen2Config", {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "max_position_embeddings": 256, "tie_word_embeddings": False}),
    "qwen3-tiny": ("Qwen3Config", {"vocab_size": 300, "hidden_size": 64, "intermediate_size": 96,
                                   "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                                   "max_position_embeddings": 256, "head_dim": 24}),
}


def plain_tokenizer(chat_template: str | None = "{% for m in messages %}{{ m['content'] }}{% endfor %}"):
    """Our character vocabulary as a plain ``transformers`` fast tokenizer (no reasonlab keys, so
    it loads as an ``HFTokenizer``), with a trivial chat template unless ``None``."""
    import transformers
    from tokenizers import Tokenizer

    from reasonlab.models.tokenizer import EOS, PAD, SPECIALS, CharTokenizer

    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(CharTokenizer().hf_tokenizer_json())),
        eos_token=SPECIALS[EOS], pad_token=SPECIALS[PAD])
    if chat_template is not None:
        fast.chat_template = chat_template
    return fast


def random_config(preset: str, **overrides):
    """The transformers config of ``preset`` (``PRESETS``) with ``overrides`` applied."""
    import transformers

    from reasonlab.models.tokenizer import EOS, PAD

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose from: {', '.join(PRESETS)}")
    cls, fields = PRESETS[preset]
    return getattr(transformers, cls)(**{**fields, "eos_token_id": EOS, "pad_token_id": PAD, "bos_token_id": None,
                                         **overrides})


def save_random_model(directory: str | Path, config, seed: int = 0, bias_scale: float = 0.3):
    """Build a random model from a transformers ``config``, save it with :func:`plain_tokenizer`
    into ``directory``; returns the transformers model (fp32, eval mode)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(torch.randn_like(p) * bias_scale + (1.0 if "norm" in name else 0.0))
    model.save_pretrained(str(directory))
    plain_tokenizer().save_pretrained(str(directory))
    return model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="qwen2-20m")
    parser.add_argument("--out", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    model = save_random_model(args.out, random_config(args.preset), args.seed)
    print(json.dumps({"preset": args.preset, "out": args.out, "params": sum(p.numel() for p in model.parameters())}))


if __name__ == "__main__":
    main()

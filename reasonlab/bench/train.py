"""Pretraining throughput: our train step against transformers' ``LlamaForCausalLM``.

Same weights, same batch shape (``batch_size`` x ``seq_len``), same AdamW; forward, backward,
gradient clipping and the optimizer step on both sides. Ours runs with bf16 autocast (the
pretraining default); transformers runs in fp32 (its default) and with bf16 autocast, and the
ratio is taken against the faster of the two. ``--device=cuda`` runs both sides there (the
trainer autocasts on its model's device; every timed call ends with a synchronisation).
"""
from __future__ import annotations

import torch

from reasonlab.bench.common import BenchConfig, load_or_init, race, to_transformers


def bench_train(cfg: BenchConfig) -> dict:
    from reasonlab.bench.device import bench_device, timed_race
    from reasonlab.train.pretrain import PretrainConfig, make_optimizer, train_step

    dev = bench_device(cfg.device)
    model, tokenizer = load_or_init(cfg)
    hf32, hf16 = to_transformers(model, tokenizer).to(dev), to_transformers(model, tokenizer).to(dev)
    model.to(dev)
    pcfg = PretrainConfig(batch_size=cfg.batch_size, seq_len=cfg.seq_len)
    g = torch.Generator().manual_seed(cfg.seed)
    x = torch.randint(3, tokenizer.vocab_size, (cfg.batch_size, cfg.seq_len), generator=g).to(dev)
    y = torch.roll(x, -1, dims=1)
    model.train()
    opt = make_optimizer(model, pcfg)

    def ours() -> int:
        for _ in range(cfg.steps):
            train_step(model, opt, x, y, pcfg.lr, pcfg.grad_clip, cfg.dtype)
        return cfg.steps * x.numel()

    def hf_side(hf, autocast: bool):
        hf.train()
        hopt = make_optimizer(hf, pcfg)

        def run() -> int:
            for _ in range(cfg.steps):
                with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=autocast):
                    loss = hf(input_ids=x, labels=x).loss
                hopt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(hf.parameters(), pcfg.grad_clip)
                hopt.step()
            return cfg.steps * x.numel()
        return run

    sides = {"ours": ours, "hf_fp32": hf_side(hf32, False), "hf_bf16": hf_side(hf16, True)}
    return {
        "params": model.num_params(), "batch_size": cfg.batch_size, "seq_len": cfg.seq_len,
        "ours_dtype": cfg.dtype, "threads": torch.get_num_threads(), "device": str(dev),
        **(race(sides, cfg.repeats) if dev.type == "cpu" else timed_race(sides, cfg.repeats, dev)),
    }

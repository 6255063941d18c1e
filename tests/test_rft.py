"""Rejection-sampling fine-tuning: keeps only verified completions, SFT learns them, the stage runs."""
import json

import torch

from reasonlab.config import load_config
from reasonlab.engine.sampler import SampleBatch
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.train.rft import RFTConfig, keep_selected, rft, sft


def tiny():
    tok = CharTokenizer()
    torch.manual_seed(0)
    return Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=2, n_heads=2, n_kv_heads=2, d_ff=64,
                             max_seq_len=256)), tok


def test_keep_selected_keeps_distinct_verified_terminated_completions():
    tok, task = CharTokenizer(), get_task("arith")
    problems = task.generate(2, seed=0, split="train", steps=1, max_operand=5, max_value=20)
    good = [tok.encode(f"</think>\n<answer>{p['answer']}</answer>") for p in problems]
    bad = tok.encode("</think>\n<answer>-999</answer>")
    rows = [good[0], good[0], bad, good[1]]                    # n = 2 per problem
    reasons = ["eos", "eos", "eos", "length"]                 # a truncated row is never kept

    def sample_fn(prompts, scfg):
        return SampleBatch([0, 0, 1, 1], prompts, rows, [[0.0] * len(r) for r in rows], reasons)
    cfg = RFTConfig(samples_per_prompt=2)
    kept, counts = keep_selected(sample_fn, tok, task, problems, cfg, seed=0)
    assert [c for _, c in kept] == [good[0]]
    assert counts["correct"] / counts["samples"] == 0.5
    kept, _ = keep_selected(sample_fn, tok, task, problems, RFTConfig(samples_per_prompt=2, dedup=False), seed=0)
    assert [c for _, c in kept] == [good[0], good[0]]


def test_sft_lowers_the_loss_on_kept_pairs():
    model, tok = tiny()
    pairs = [(tok.encode("a = 1. What is a?"), tok.encode("</think>\n<answer>1</answer>") + [tok.eos_id])] * 4
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = RFTConfig(batch_size=4, epochs=1)
    first = sft(model, opt, pairs, cfg, seed=0)
    for _ in range(6):
        last = sft(model, opt, pairs, cfg, seed=0)
    assert last < first * 0.8


def test_rft_stage_runs_and_logs(tmp_path):
    model, tok = tiny()
    save_checkpoint(tmp_path / "m", model, tok)
    cfg = load_config(RFTConfig, None, [f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local",
                                        "--rounds=2", "--prompts_per_round=3", "--samples_per_prompt=2",
                                        "--max_new_tokens=8", "--train_pool=20", "--eval_problems=2", "--eval_n=2",
                                        "--final_eval=false"])
    summary = rft(cfg, progress=False)
    with open(tmp_path / "rft" / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    assert [r["step"] for r in rows] == [1, 2] and rows[-1]["samples"] == 12 == summary["samples"]
    assert "heldout_pass@1" in rows[0]
    assert (tmp_path / "rft" / "model" / "model.safetensors").exists()

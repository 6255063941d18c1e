"""Data parallel: 2 processes with batch B/2 each give the loss and the weights of 1 process with B."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reasonlab.models.checkpoint import load_checkpoint
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.train.corpus import build_mixture, packed_batch
from reasonlab.train.distributed import (
    DistInfo,
    all_gather_objects,
    all_reduce_grads,
    dist_setup,
    is_main,
    shard_rows,
    shard_slice,
    token_share,
)
from reasonlab.train.pretrain import PretrainConfig

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--model.d_model=32", "--model.n_layers=1", "--model.n_heads=2", "--model.n_kv_heads=2",
        "--model.d_ff=64", "--seq_len=64", "--batch_size=4", "--max_steps=3", "--warmup_steps=1",
        "--autocast=none", "--log_every=1", "--ckpt_every=1000", "--eval.limit=2", "--eval.n=1",
        "--eval.max_new_tokens=4", "--eval.ks=[1]", "--eval.dtype=float32", "--loss_on_prompt=false"]


def test_single_process_helpers_are_no_ops():
    assert dist_setup() == DistInfo() and is_main()
    assert token_share(17) == 1.0 and all_gather_objects({"a": 1}) == [{"a": 1}]
    assert shard_slice(8, 1, 2) == slice(4, 8) and shard_rows(list(range(6)), 2, 3) == [4, 5]
    with pytest.raises(ValueError, match="divisible"):
        shard_slice(5, 0, 2)
    model = Llama(LlamaConfig(vocab_size=16, d_model=8, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=16))
    model(torch.zeros(1, 3, dtype=torch.long)).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    all_reduce_grads(model)
    assert all(torch.equal(g, p.grad) for g, p in zip(grads, model.parameters()))


def test_ranks_hold_uneven_loss_tokens_in_the_recipe_below():
    """The torchrun test must exercise the token weighting: its shards differ in loss tokens."""
    cfg, tok = PretrainConfig(), CharTokenizer()
    mixture = build_mixture(cfg.mixture, cfg.template, get_task)
    _, y = packed_batch(mixture, tok.encode, tok.eos_id, 4, 64, cfg.seed, 0, tok.pad_id, False)
    counts = [int((shard_rows(y, r, 2) != -100).sum()) for r in range(2)]
    assert counts[0] != counts[1]
    assert 0 in counts                    # a rank without loss tokens still joins the all-reduce


@pytest.mark.slow
def test_torchrun_pretrain_two_ranks_equals_one_process(tmp_path):
    """Loss tokens differ between the ranks (loss on completions only), so this also checks that
    gradients are weighted by each rank's share of the tokens."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    common = TINY + [f"--runs_dir={tmp_path}"]
    subprocess.run([sys.executable, "-m", "reasonlab.cli", "pretrain", *common, "--name=one"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    "-m", "reasonlab.cli", "pretrain", *common, "--name=two"],
                   check=True, cwd=ROOT, env=env, capture_output=True)
    logs = {n: [json.loads(r)["loss"] for r in (tmp_path / n / "train_log.jsonl").read_text().splitlines()]
            for n in ("one", "two")}
    assert len(logs["one"]) == 3 and logs["one"] == pytest.approx(logs["two"], abs=1e-5)
    one, _, _ = load_checkpoint(tmp_path / "one" / "model")
    two, _, _ = load_checkpoint(tmp_path / "two" / "model")
    for (name, a), b in zip(one.state_dict().items(), two.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5), name
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 3

"""A GRPO run killed with SIGKILL and resumed logs the same metrics as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.train.grpo import TIMING_KEYS
from rl_helpers import tiny_model

STEPS = 8


def args(model, runs, name, backend):
    return [sys.executable, "-m", "reasonlab.cli", "grpo", f"--model={model}", f"--runs_dir={runs}", f"--name={name}",
            f"--backend={backend}", "--workers=2", "--deterministic=true", f"--steps={STEPS}", "--ckpt_every=2", "--max_new_tokens=16",
            "--train_pool=64", "--eval_problems=4", "--eval_n=2", "--eval_every=3", "--prompts_per_step=4",
            "--group_size=4", "--rewards={accuracy: 1.0, length: 1.0}", "--preflight=false", "--final_eval=false",
            "--lr=0.01", "--prompts.mode=curriculum", "--prompts.high=0.5"]


def metrics(path):
    with open(path) as f:
        rows = [json.loads(line) for line in f]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in rows]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["local", "parallel"])   # parallel: sampling and gradients on 2 workers
def test_sigkill_then_resume_gives_the_same_metrics(tmp_path, backend):
    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    subprocess.run(args(tmp_path / "m", tmp_path, "full", backend), env=env, check=True, capture_output=True, timeout=300)

    log = tmp_path / "killed" / "metrics.jsonl"
    proc = subprocess.Popen(args(tmp_path / "m", tmp_path, "killed", backend), env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 200
    while time.time() < deadline and (not log.exists() or len(log.read_text().splitlines()) < 3):
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed_at = len(log.read_text().splitlines())
    assert killed_at < STEPS
    subprocess.run(args(tmp_path / "m", tmp_path, "killed", backend) + ["--resume=true"], env=env, check=True,
                   capture_output=True, timeout=300)

    full, resumed = metrics(tmp_path / "full" / "metrics.jsonl"), metrics(log)
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert resumed == full
    assert any(r.get("grad_norm", 0) > 0 for r in full)          # the runs did learn something

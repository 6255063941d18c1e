"""scripts/gpu_check.sh on the CPU with tiny overrides: it ends with exactly one JSON line on
stdout, every section ran, and the figures are positive numbers."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


@pytest.mark.slow
def test_gpu_check_on_cpu_prints_one_json_line():
    env = {**os.environ, "DEVICE": "cpu", "PRESET": "qwen2-tiny", "PROMPTS": "8", "NEW_TOKENS": "16",
           "REPEATS": "1", "RUN_STEPS": "2", "PYTHON": sys.executable}
    out = subprocess.run([str(SCRIPT)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert len(lines) == 1, out.stdout
    result = json.loads(lines[0])
    assert result["ok"] is True and result["device"] == "cpu" and result["params"] > 0
    sampler, bench, run = result["sampler"], result["grpo_bench"], result["grpo_run"]
    for section, keys in ((sampler, ("ours_tokens_per_s", "hf_generate_tokens_per_s", "hf_static_tokens_per_s",
                                     "decode_step_ms")),
                          (bench, ("ours_completions_per_s", "ours_rollout_s", "ours_update_s")),
                          (run, ("median_step_s", "median_completions_per_s"))):
        for key in keys:
            assert section[key] > 0, (key, section)
    assert sampler["prompts"] == 8 and sampler["new_tokens"] == 16 and sampler["decode_rows"] == 8
    assert bench["completions_per_step"] == 2 * 8 and run["steps"] == 2


def test_gpu_check_is_executable_bash_with_strict_mode():
    text = SCRIPT.read_text()
    assert os.access(SCRIPT, os.X_OK) and text.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)

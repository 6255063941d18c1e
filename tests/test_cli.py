"""CLI: user mistakes give one clear line (no traceback), stages write their artifacts."""
import json
import subprocess
import sys

import pytest

from reasonlab.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "reasonlab.cli", *args], capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("args, needle", [
    (["pretrain", "--recipe=nope.yaml"], "recipe not found: nope.yaml"),
    (["pretrain", "--lr_max=3"], "unknown key 'lr_max'"),
    (["pretrain", "--max_steps=abc"], "expected int"),
    (["eval", "--model=/does/not/exist"], "no model directory at /does/not/exist"),
    (["bench", "nothing"], "what: unknown value 'nothing'"),
])
def test_user_errors_are_one_line(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and err.count("\n") == 1


def test_unknown_command_and_help(capsys):
    assert main(["frobnicate"]) == 2
    assert main(["--help"]) == 0
    assert "pretrain" in capsys.readouterr().out


def test_malformed_recipe_names_file_and_line(tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("name: x\nmodel: [unclosed\n")
    out = run_cli("pretrain", f"--recipe={recipe}")
    assert out.returncode == 2 and "bad.yaml" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_pretrain_eval_sample_end_to_end(tmp_path):
    """A tiny run of every stage: pretrain (+ held-out eval), resume, eval, sample."""
    common = [f"--runs_dir={tmp_path}", "--name=t", "--model.d_model=32", "--model.n_layers=1",
              "--model.n_heads=2", "--model.n_kv_heads=1", "--model.d_ff=64", "--batch_size=2",
              "--seq_len=128", "--ckpt_every=2", "--eval.limit=3", "--eval.n=4", "--eval.ks=[1,2,4]",
              "--eval.max_new_tokens=16", "--time_budget_s=0", "--warmup_steps=1", "--log_every=1"]
    assert main(["pretrain", "--recipe=recipes/tiny.yaml", "--max_steps=3", *common]) == 0
    run = tmp_path / "t"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and 0 <= summary["eval"]["metrics"]["pass@1"] <= 1
    for name in ("config.yaml", "results.jsonl", "loss.png", "accuracy_vs_k.png", "model/config.json"):
        assert (run / name).exists(), name
    assert len((run / "results.jsonl").read_text().splitlines()) == 3
    # resume continues from the checkpoint instead of starting over
    assert main(["pretrain", "--recipe=recipes/tiny.yaml", "--max_steps=5", "--resume=true", *common]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5]          # steps 1-3 were not redone
    assert main(["eval", f"--model={run / 'model'}", f"--runs_dir={tmp_path}", "--name=e", "--limit=2",
                 "--n=2", "--ks=[1,2]", "--max_new_tokens=8"]) == 0
    assert json.loads((tmp_path / "e" / "summary.json").read_text())["metrics"]["n_problems"] == 2
    out = run_cli("sample", f"--model={run / 'model'}", "--limit=1", "--n=1", "--max_new_tokens=8", "--json")
    assert out.returncode == 0 and "completion" in json.loads(out.stdout.splitlines()[0])


@pytest.mark.parametrize("what", ["sampler", "train"])
def test_bench_prints_one_json_line_last(what):
    pytest.importorskip("transformers")
    out = run_cli("bench", what, "--json", "--prompts=4", "--new_tokens=4", "--batch_size=2", "--seq_len=16",
                  "--steps=1", "--repeats=1", "--model_cfg.d_model=32", "--model_cfg.n_layers=1",
                  "--model_cfg.n_heads=2", "--model_cfg.n_kv_heads=2", "--model_cfg.d_ff=64")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bench"] == what and result["ratio"] > 0
    assert {"ours_tokens_per_s", "hf_fp32_tokens_per_s", "hf_bf16_tokens_per_s"} <= set(result)

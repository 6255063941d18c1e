"""Nothing lost, nothing mixed, one clear line: run directories, resume fingerprints, model
directories, CLI mistakes (each case reproduces a report; each fails on the code before the fix)."""
import json
import os
import signal
import stat
import time

import pytest
import torch

from reasonlab.cli import main
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.llama import Llama, LlamaConfig
from reasonlab.models.tokenizer import CharTokenizer

TINY = ["--model.d_model=32", "--model.n_layers=1", "--model.n_heads=2", "--model.n_kv_heads=1",
        "--model.d_ff=64", "--batch_size=2", "--seq_len=64", "--max_steps=1", "--warmup_steps=1",
        "--eval.limit=2", "--eval.n=2", "--eval.ks=[1,2]", "--eval.max_new_tokens=8"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A tiny reasonlab checkpoint directory."""
    tok = CharTokenizer()
    torch.manual_seed(0)
    model = Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2, d_ff=64))
    path = tmp_path_factory.mktemp("ck") / "model"
    save_checkpoint(path, model, tok)
    return path


def one_line_error(capsys, args, needle) -> str:
    """``main(args)`` exits 2 with one stderr line containing ``needle``."""
    capsys.readouterr()                      # drop what earlier calls printed
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def tree(path) -> dict:
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def eval_args(ckpt, tmp_path, *extra):
    return ["eval", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--name=X", "--limit=2", "--n=2", "--ks=[1,2]",
            "--max_new_tokens=6", "--prompts_per_batch=2", *extra]


# ---- data loss -------------------------------------------------------------------------------

def test_export_refuses_a_non_empty_target_and_never_the_model_itself(ckpt, tmp_path, capsys):
    out = tmp_path / "run"
    (out / "checkpoint").mkdir(parents=True)
    (out / "notes.md").write_text("mine")
    before = tree(out)
    one_line_error(capsys, ["export", f"--model={ckpt}", f"--out={out}"], "is not empty")
    assert tree(out) == before
    one_line_error(capsys, ["export", f"--model={ckpt}", f"--out={ckpt.parent}", "--overwrite=true"],
                   "holds the model being exported")
    assert (ckpt / "model.safetensors").exists()
    one_line_error(capsys, ["export", f"--model={ckpt}", f"--out={out}", "--overwrite=true"],
                   "is not a model directory (no config.json)")
    assert tree(out) == before
    assert main(["export", f"--model={ckpt}", f"--out={tmp_path / 'new'}"]) == 0
    (tmp_path / "new" / "notes.md").write_text("stale")
    assert main(["export", f"--model={ckpt}", f"--out={tmp_path / 'new'}", "--overwrite=true"]) == 0
    assert (tmp_path / "new" / "model.safetensors").exists() and not (tmp_path / "new" / "notes.md").exists()


def test_a_rejected_eval_leaves_the_earlier_run_untouched(ckpt, tmp_path, capsys):
    assert main(eval_args(ckpt, tmp_path)) == 0
    capsys.readouterr()
    before = tree(tmp_path / "X")
    one_line_error(capsys, eval_args(ckpt, tmp_path, "--template=nosuch"), "template")
    one_line_error(capsys, eval_args(ckpt, tmp_path, "--template=nosuch", "--overwrite=true"), "template")
    one_line_error(capsys, eval_args(ckpt, tmp_path), "exists; pass --resume=true")
    assert tree(tmp_path / "X") == before


def test_a_rejected_pretrain_leaves_the_earlier_run_untouched(tmp_path, capsys):
    run = tmp_path / "X"
    run.mkdir()
    (run / "config.yaml").write_text("name: X\n")
    (run / "model").mkdir()
    (run / "model" / "config.json").write_text("{}")
    before = tree(run)
    common = [f"--runs_dir={tmp_path}", "--name=X", *TINY]
    one_line_error(capsys, ["pretrain", *common, "--model.n_heads=3", "--overwrite=true"], "model: d_model=32")
    one_line_error(capsys, ["pretrain", *common], "exists; pass --resume=true")
    assert tree(run) == before


@pytest.mark.slow
def test_resume_refuses_other_settings_and_names_the_keys(ckpt, tmp_path, capsys):
    assert main(eval_args(ckpt, tmp_path)) == 0
    rows = (tmp_path / "X" / "results.jsonl").read_text()
    other = tmp_path / "other"
    save_checkpoint(other, *_other_model())
    err = one_line_error(capsys, eval_args(ckpt, tmp_path, "--resume=true", "--n=4"), "config.n: 2 -> 4")
    assert "--overwrite=true" in err
    args = eval_args(ckpt, tmp_path, "--resume=true")
    args[1] = f"--model={other}"
    one_line_error(capsys, args, "model_sha")
    assert (tmp_path / "X" / "results.jsonl").read_text() == rows
    assert main(eval_args(ckpt, tmp_path, "--resume=true")) == 0          # same settings: fine
    # pretrain: a resume with another width is refused instead of recording a model it is not
    common = [f"--runs_dir={tmp_path}", "--name=P", *TINY]
    assert main(["pretrain", "--recipe=recipes/tiny.yaml", *common]) == 0
    capsys.readouterr()
    one_line_error(capsys, ["pretrain", "--recipe=recipes/tiny.yaml", *common, "--resume=true",
                            "--model.d_model=64"], "config.model.d_model: 32 -> 64")
    assert "d_model: 32" in (tmp_path / "P" / "config.yaml").read_text()


def _other_model():
    tok = CharTokenizer()
    torch.manual_seed(1)
    return Llama(LlamaConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, n_kv_heads=2,
                             d_ff=64)), tok


def test_open_run_rules(tmp_path):
    from reasonlab.config import ConfigError
    from reasonlab.runs import RUN_FILE, open_run

    fp = {"config": {"n": 2}}
    run = open_run(tmp_path, "r", fp)
    assert json.loads((run / RUN_FILE).read_text()) == fp
    (run / "results.jsonl").write_text("")
    with pytest.raises(ConfigError, match="exists"):
        open_run(tmp_path, "r", fp)
    assert open_run(tmp_path, "r", fp, resume=True) == run
    with pytest.raises(ConfigError, match="config.n: 2 -> 3"):
        open_run(tmp_path, "r", {"config": {"n": 3}}, resume=True)
    (run / "x").write_text("old")
    open_run(tmp_path, "r", {"config": {"n": 3}}, overwrite=True)
    assert not (run / "x").exists()
    precious = tmp_path / "src"
    precious.mkdir()
    (precious / "main.py").write_text("print('mine')")
    with pytest.raises(ConfigError, match="does not look like a run directory"):
        open_run(tmp_path, "src", fp, overwrite=True)
    assert (precious / "main.py").exists()
    with pytest.raises(ConfigError, match="choose one"):
        open_run(tmp_path, "r", fp, resume=True, overwrite=True)
    started = open_run(tmp_path, "started", fp)        # stopped before writing anything: reusable
    assert open_run(tmp_path, "started", {"config": {"n": 5}}) == started
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "results.jsonl").write_text("")
    with pytest.raises(ConfigError, match="cannot be resumed safely"):
        open_run(tmp_path, "legacy", fp, resume=True)


def test_model_digest_follows_weights_not_paths(ckpt, tmp_path):
    from reasonlab.runs import model_digest

    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(ckpt, copy)
    assert model_digest(copy) == model_digest(ckpt)
    save_checkpoint(copy, *_other_model())
    assert model_digest(copy) != model_digest(ckpt)
    assert model_digest("Qwen/Qwen2.5-0.5B") == "hub:Qwen/Qwen2.5-0.5B"
    model, _ = _other_model()
    assert model_digest(model) == model_digest(_other_model()[0])


def test_checkpoint_files_get_ordinary_permissions(ckpt):
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in ckpt.iterdir()}
    umask = os.umask(0o022)
    os.umask(umask)
    assert set(modes.values()) == {0o666 & ~umask}, modes


# ---- one clear line --------------------------------------------------------------------------

@pytest.mark.parametrize("damage, needle", [
    ("empty", "is not a model directory (empty)"),
    ("no_config", "has no config.json"),
    ("corrupt_config", "is not valid JSON"),
    ("truncated_weights", "is not a readable safetensors file"),
    ("no_weights", "has no weights"),
    ("no_tokenizer", "is missing tokenizer_config.json"),
])
def test_broken_model_directories_give_one_line(ckpt, tmp_path, capsys, damage, needle):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(ckpt, bad)
    weights = bad / "model.safetensors"
    if damage == "empty":
        shutil.rmtree(bad)
        bad.mkdir()
    elif damage == "no_config":
        (bad / "config.json").unlink()
    elif damage == "corrupt_config":
        (bad / "config.json").write_text('{"reasonlab": ')
    elif damage == "truncated_weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    elif damage == "no_weights":
        weights.unlink()
    else:
        (bad / "tokenizer_config.json").unlink()
    err = one_line_error(capsys, ["eval", f"--model={bad}", f"--runs_dir={tmp_path}", "--name=e"], needle)
    assert "sentencepiece" not in err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("extra, needle", [
    (["--limit=0"], "limit: must be >= 1, got 0"),
    (["--n=0"], "n: must be >= 1, got 0"),
    (["--prompts_per_batch=0"], "prompts_per_batch: must be >= 1"),
    (["--task=nosuch"], "task: unknown value 'nosuch'"),
    (["--split=dev"], "split: unknown value 'dev'"),
    (["--template=nosuch"], "template: unknown value 'nosuch'"),
    (["--name=../escape"], "name: '../escape' is not a plain directory name"),
    (["--top_p=1.5"], "top_p: must be in (0, 1]"),
    (["--dtype=fp8"], "dtype: unknown value 'fp8'"),
    (["--generate={nosuch: 1}"], "generate: arith: unknown difficulty option"),
    (["--data_path=."], "data_path: task 'arith' generates its problems; data files are for code, gsm8k, math"),
    (["--task=gsm8k", "--data_path=nowhere.jsonl"], "data_path: nowhere.jsonl does not exist"),
    (["--max_completion_chars=0"], "max_completion_chars: must be >= 1"),
    (["--methods=[majority]", "--top_p=0.9"], "top_p: eval --methods runs the search sweep, which does not use it"),
    (["--methods=[majority]", "--resume=true"], "resume: eval --methods runs the search sweep"),
    (["--methods=[majority]", "--data_path=."], "data_path: task 'arith' generates its problems"),
])
def test_eval_mistakes_give_one_line_and_write_nothing(ckpt, tmp_path, capsys, extra, needle):
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={tmp_path / 'runs'}", "--name=e", *extra],
                   needle)
    assert not (tmp_path / "runs" / "e").exists() and not (tmp_path / "escape").exists()


def test_data_that_does_not_fit_the_task_gives_one_line(ckpt, tmp_path, capsys):
    """A GSM8K file given to the math task, a row without '####', an empty file: one line each."""
    gsm8k = tmp_path / "gsm8k.jsonl"
    gsm8k.write_text(json.dumps({"question": "1+1?", "answer": "It is 2.\n#### 2"}) + "\n")
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--task=math",
                            f"--data_path={gsm8k}"], f"{gsm8k}:1:")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "1+1?", "answer": "It is 2."}) + "\n")
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--task=gsm8k",
                            f"--data_path={bad}"], f"{bad}:1:")
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--task=gsm8k",
                            f"--data_path={empty}"], "no rows")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "empty.jsonl", "gsm8k.jsonl"]


def test_eval_summary_counts_each_verdict_reason(ckpt, tmp_path):
    assert main(eval_args(ckpt, tmp_path)) == 0
    summary = json.loads((tmp_path / "X" / "summary.json").read_text())
    counts = summary["metrics"]["verdicts"]
    assert sum(counts.values()) == 4 and set(counts) <= {"ok", "wrong", "no_answer", "bad_format",
                                                          "multiple_answers", "bad_expression"}


def test_stage_mistakes_give_one_line(ckpt, tmp_path, capsys):
    one_line_error(capsys, ["pretrain", f"--runs_dir={tmp_path}", "--batch_size=0"], "batch_size: must be >= 1")
    one_line_error(capsys, ["grpo", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--sampler_dtype=fp8"],
                   "sampler_dtype: unknown value 'fp8'")
    one_line_error(capsys, ["grpo", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--prompts.mode=nosuch"],
                   "prompts.mode")
    one_line_error(capsys, ["rft", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--rounds=0"], "rounds: must be >= 1")
    one_line_error(capsys, ["verifiers", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--problems=0"], "problems")
    one_line_error(capsys, ["sweep", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--limit=0"], "limit")
    one_line_error(capsys, ["sample", f"--model={ckpt}", "--n=0"], "n: must be >= 1")
    one_line_error(capsys, ["bench", "sampler", "--prompts=0"], "prompts: must be >= 1")
    assert list(tmp_path.iterdir()) == []


def test_runs_dir_that_is_a_file_or_not_writable(ckpt, tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={blocker}"], "is a file")
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={blocker / 'sub'}"], "is a file")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real_access(p, mode))
    one_line_error(capsys, ["eval", f"--model={ckpt}", f"--runs_dir={locked}"], "is not writable")


def test_a_missing_relative_path_is_not_tried_as_a_hub_id(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    t0 = time.perf_counter()
    one_line_error(capsys, ["eval", "--model=runs/nosuch"], "no model directory at runs/nosuch")
    one_line_error(capsys, ["eval", "--model=./nosuch"], "no model directory at ./nosuch")
    assert time.perf_counter() - t0 < 5


def test_every_stage_has_help_with_defaults_and_comments(capsys):
    from reasonlab.cli import COMMANDS

    for command in COMMANDS:
        assert main([command, "--help"]) == 0, command
        out = capsys.readouterr().out
        assert out.startswith(f"usage: reasonlab {command}"), command
        assert any(f"--{key}=" in out for key in ("name", "model", "what", "runs")), command
    assert main(["eval", "-h"]) == 0
    out = capsys.readouterr().out
    assert "--n=16" in out and "--overwrite=false  # delete an existing run" in out


def test_help_and_hints_name_only_things_that_exist(capsys):
    import re
    from pathlib import Path

    from reasonlab.config import ConfigError, load_config
    from reasonlab.train.grpo import GRPOConfig

    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    for recipe in re.findall(r"recipes/[\w.]+\.yaml", text):
        assert (Path(__file__).parent.parent / recipe).exists(), recipe
    import inspect

    from reasonlab.train import rl_monitor

    for key, value in re.findall(r"([a-z_.]+): (curriculum)", inspect.getsource(rl_monitor.preflight)):
        try:
            load_config(GRPOConfig, None, [f"--{key}={value}"])
        except ConfigError as err:
            pytest.fail(f"preflight hint names {key}: {err}")


def test_sampler_workers_leave_ctrl_c_to_the_parent():
    from reasonlab.engine.parallel import ParallelSampler
    from reasonlab.engine.sampler import SamplingConfig

    model, tok = _other_model()
    with ParallelSampler(model, 1) as pool:
        first = pool.sample([tok.encode("1+1=")], SamplingConfig(max_new_tokens=2, seed=0), eos_id=tok.eos_id,
                            pad_id=tok.pad_id)
        os.kill(pool.procs[0].pid, signal.SIGINT)
        time.sleep(0.5)
        assert pool.procs[0].is_alive()
        again = pool.sample([tok.encode("1+1=")], SamplingConfig(max_new_tokens=2, seed=0), eos_id=tok.eos_id,
                            pad_id=tok.pad_id)
    assert again.completion_ids == first.completion_ids


@pytest.mark.slow
def test_grpo_records_its_worker_count(ckpt, tmp_path):
    args = ["grpo", f"--model={ckpt}", f"--runs_dir={tmp_path}", "--name=g", "--steps=1", "--prompts_per_step=2",
            "--group_size=2", "--max_new_tokens=4", "--preflight=false", "--eval_every=0", "--eval_problems=2",
            "--final_eval=false", "--workers=2", "--train_pool=4"]
    assert main(args) == 0
    assert json.loads((tmp_path / "g" / "summary.json").read_text())["workers"] == 2
    assert json.loads((tmp_path / "g" / "run.json").read_text())["workers"] == 2


def test_out_of_memory_names_the_settings_to_lower(ckpt, tmp_path, capsys, monkeypatch):
    import reasonlab.eval.run as eval_run

    def oom(cfg, **_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(eval_run, "evaluate", oom)
    one_line_error(capsys, ["eval", f"--model={ckpt}"], "out of memory (CUDA out of memory. Tried to allocate 2.00 "
                   "GiB); lower the batch settings (micro_batch, prompts_per_batch")

    def bug(cfg, **_):
        raise RuntimeError("a bug")

    monkeypatch.setattr(eval_run, "evaluate", bug)
    with pytest.raises(RuntimeError, match="a bug"):                 # anything else still surfaces
        main(["eval", f"--model={ckpt}"])

"""Metric sinks: the jsonl stays the source of truth; TensorBoard and W&B receive the same numbers."""
import json
import time
from pathlib import Path

import pytest

from reasonlab.config import ConfigError, load_config
from reasonlab.io import read_jsonl
from reasonlab.train.sinks import MetricsLog, check_log_to, open_metrics, scalars

from rl_helpers import tiny_model


def test_scalars_keep_numbers_only():
    row = {"step": 4, "loss": 0.5, "n": 3, "ok": False, "name": "x", "ci": [0.1, 0.2], "none": None,
           "nan": float("nan")}
    assert scalars(row) == {"loss": 0.5, "n": 3.0, "ok": 0.0}


def test_unknown_or_missing_sink_is_one_line_naming_the_extra(monkeypatch):
    with pytest.raises(ConfigError, match="unknown sink 'tensorbord'; choose from: tensorboard, wandb"):
        check_log_to(["tensorbord"])
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install 'reasonlab\[wandb\]'"):
        check_log_to(["wandb"])


def test_no_sinks_writes_the_jsonl_only(tmp_path):
    log = open_metrics(tmp_path / "m.jsonl", [], run_dir=tmp_path, name="t")
    log.write({"step": 1, "loss": 2.0})
    log.close()
    assert read_jsonl(tmp_path / "m.jsonl") == [{"step": 1, "loss": 2.0}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.jsonl"]


def test_every_training_stage_has_log_to():
    from reasonlab.train.distill import DistillConfig
    from reasonlab.train.grpo import GRPOConfig
    from reasonlab.train.pretrain import PretrainConfig
    from reasonlab.train.rft import RFTConfig
    from reasonlab.train.sft import SFTConfig
    from reasonlab.verifiers.train import VerifierTrainConfig

    for cls in (PretrainConfig, GRPOConfig, RFTConfig, SFTConfig, DistillConfig, VerifierTrainConfig):
        assert load_config(cls, None, ["--log_to=tensorboard,wandb"]).log_to == ["tensorboard", "wandb"], cls
        assert cls().log_to == []


def test_log_to_is_not_part_of_the_fingerprint():
    from reasonlab.runs import fingerprint
    from reasonlab.train.grpo import GRPOConfig

    assert fingerprint(GRPOConfig(log_to=["tensorboard"])) == fingerprint(GRPOConfig())


def _tiny_grpo(tmp_path, log_to: str):
    from reasonlab.models.checkpoint import save_checkpoint
    from reasonlab.train.grpo import GRPOConfig, grpo

    model, tok = tiny_model()
    save_checkpoint(tmp_path / "m", model, tok)
    cfg = load_config(GRPOConfig, None, [
        f"--model={tmp_path / 'm'}", f"--runs_dir={tmp_path}", "--backend=local", "--steps=3", "--max_new_tokens=8",
        "--train_pool=20", "--eval_problems=2", "--eval_n=2", "--eval_every=2", "--prompts_per_step=2",
        "--group_size=2", "--preflight=false", "--final_eval=false", "--sample_log_every=2", "--sample_log_n=1",
        f"--log_to={log_to}"])
    grpo(cfg, progress=False)
    return tmp_path / "grpo"


def _numbers(rows: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """tag -> [(step, value)] of the numeric values of jsonl rows."""
    out: dict[str, list] = {}
    for row in rows:
        for key, value in scalars(row).items():
            out.setdefault(key, []).append((row["step"], value))
    return out


@pytest.mark.slow
def test_grpo_tensorboard_scalars_equal_the_jsonl(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = _tiny_grpo(tmp_path, "tensorboard")
    want = _numbers(read_jsonl(run / "metrics.jsonl"))
    acc = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    got = {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    assert set(got) == set(want) and {"reward", "loss", "heldout_pass@1", "tokens_per_s"} <= set(got)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag   # float32 events
    samples = read_jsonl(run / "samples.jsonl")                      # step 1 and every 2nd step, one rollout each
    assert [r["step"] for r in samples] == [1, 2] and {"question", "completion", "reward", "correct"} <= set(samples[0])


def _wandb_records(path: Path):
    """The protobuf records of an offline W&B run file (a log of 32 KiB blocks; each record has a
    7-byte header: checksum, length, type (1 full, 2 first, 3 middle, 4 last))."""
    from wandb.proto import wandb_internal_pb2

    data, pos, part = path.read_bytes(), 7, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if 32768 - pos % 32768 < 7:                  # a block's tail too short for a header is padding
            pos += 32768 - pos % 32768
            continue
        length, kind = int.from_bytes(data[pos + 4: pos + 6], "little"), data[pos + 6]
        if pos + 7 + length > len(data):             # a record still being written
            return
        part += data[pos + 7: pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(part)
            yield record
            part = b""


def test_wandb_offline_run_gets_the_jsonl_numbers(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    log = open_metrics(tmp_path / "metrics.jsonl", ["wandb"], run_dir=tmp_path, name="sinks-test", config={"lr": 0.1})
    for step in (1, 2, 3):
        log.write({"step": step, "loss": 1 / step, "accuracy": step / 4, "note": "text is kept out"})
    log.close()
    files = list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1
    records = []
    for _ in range(100):                      # wandb's service process may still be writing the file
        records = list(_wandb_records(files[0]))
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.1)
    history = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            history[items["_step"]] = {k: v for k, v in items.items() if not k.startswith("_")}
    assert history == {r["step"]: scalars(r) for r in read_jsonl(tmp_path / "metrics.jsonl")}


def test_wandb_that_cannot_start_is_one_line(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb", reason="the wandb extra is not installed")

    def fail(**kw):
        raise wandb.errors.UsageError("No API key configured.")

    monkeypatch.setattr(wandb, "init", fail)
    with pytest.raises(ConfigError, match="No API key configured.*WANDB_MODE=offline"):
        open_metrics(tmp_path / "m.jsonl", ["wandb"], run_dir=tmp_path, name="t")


def test_closing_twice_is_harmless(tmp_path):
    class Counting:
        closed = 0

        def log(self, values, step):
            pass

        def close(self):
            Counting.closed += 1

    log = MetricsLog(tmp_path / "m.jsonl", [Counting()])
    log.close()
    log.close()
    assert Counting.closed == 1


def test_pretrain_train_log_goes_to_tensorboard(tmp_path):
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from reasonlab.train.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, None, [
        f"--runs_dir={tmp_path}", "--name=p", "--max_steps=4", "--log_every=2", "--eval_every=4", "--batch_size=2",
        "--seq_len=64", "--warmup_steps=1", "--model.d_model=32", "--model.n_layers=1", "--model.n_heads=2",
        "--model.n_kv_heads=2", "--model.d_ff=64", "--eval.limit=2", "--eval.n=1", "--eval.ks=[1]",
        "--eval.max_new_tokens=4", "--log_to=tensorboard"])
    pretrain(cfg, progress=False)
    acc = EventAccumulator(str(tmp_path / "p" / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    want = _numbers(read_jsonl(tmp_path / "p" / "train_log.jsonl"))
    assert {"loss", "heldout_greedy_acc"} <= set(want)
    assert {tag: [(e.step, pytest.approx(e.value, rel=1e-6)) for e in acc.Scalars(tag)]
            for tag in acc.Tags()["scalars"]} == want

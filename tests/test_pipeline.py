"""The R1 pipeline: wiring of stages, compute matching, readable selection, two notations, quick run."""
import json
import random

import pytest

from reasonlab.config import ConfigError, load_config
from reasonlab.pipeline import STAGES, PipelineConfig, check_config, pipeline_table, run_pipeline, stage_settings
from reasonlab.tasks import get_task
from reasonlab.tasks.arith import line_notation, notation_consistency
from reasonlab.train.corpus import build_mixture
from reasonlab.train.grpo import GRPOConfig

RECIPE = "recipes/r1_pipeline_tiny.yaml"


def test_every_stage_of_the_recipe_is_wired_to_the_model_and_teacher_before_it():
    cfg = load_config(PipelineConfig, RECIPE, ["--runs_dir=/r", "--name=p"])
    assert check_config(cfg) == list(STAGES)
    s = stage_settings(cfg, "cold_start", {})
    assert (s["model"], s["teacher"], s["name"]) == ("/r/p_pretrain/model", "/r/p_zero/model", "p_cold_start")
    assert s["selector"] == "readable" and s["eval"]["limit"] == cfg.eval["limit"]
    assert stage_settings(cfg, "rejection_sft", {})["model"] == "/r/p_pretrain/model"     # restarts from the base
    assert stage_settings(cfg, "distill", {})["model"] == "/r/p_student_pretrain/model"
    assert stage_settings(cfg, "student_rl", {"student_rl": {"steps": 7}})["steps"] == 7
    given = load_config(PipelineConfig, RECIPE, ["--base_model=/m/base"])
    assert "pretrain" not in check_config(given) and stage_settings(given, "zero", {})["model"] == "/m/base"


def test_reasoning_rl_and_its_ablation_differ_only_in_the_consistency_reward():
    cfg = load_config(PipelineConfig, RECIPE)
    a, b = stage_settings(cfg, "reasoning_rl", {}), stage_settings(cfg, "reasoning_rl_nolang", {})
    assert a["rewards"].pop("language") > 0 and "language" not in b["rewards"]
    assert {k: v for k, v in a.items() if k != "name"} == {k: v for k, v in b.items() if k != "name"}


def test_bad_pipeline_settings_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown stage"):
        check_config(PipelineConfig(stages={"pretrian": {}}))
    with pytest.raises(ConfigError, match="stages.zero"):
        check_config(PipelineConfig(stages={"zero": {"recipe": "x", "steps": 3}}))
    cfg = PipelineConfig(stages={"zero": {"set": {"stepz": 3}}})
    from reasonlab.pipeline import stage_config
    with pytest.raises(ConfigError, match="pipeline stages.zero.*stepz"):
        stage_config(cfg, "zero", {})


def test_load_config_updates_sit_between_recipe_and_overrides():
    cfg = load_config(GRPOConfig, "recipes/r1_zero_tiny.yaml", ["--steps=9"], updates={"steps": 5, "lr": 0.1})
    assert (cfg.steps, cfg.lr, cfg.group_size) == (9, 0.1, 16)


def test_two_notations_of_one_reasoning():
    task = get_task("arith")
    ex = task.generate(50, seed=0, steps=3)
    for notation in ("symbols", "words"):
        for e in ex:
            text = task.trace(e, random.Random(0), notation=notation)
            lines = text.split("</think>")[0].strip().split("\n")
            assert [line_notation(x) for x in lines] == [notation] * len(lines)
            assert task.verify(e, text).correct
    mixed = [task.trace(e, random.Random(i), notation="mixed") for i, e in enumerate(ex)]
    assert any(notation_consistency(t) < 1 for t in mixed) and all(task.verify(e, t).correct for e, t in zip(ex, mixed))
    with pytest.raises(ValueError, match="notation"):
        task.trace(ex[0], random.Random(0), notation="emoji")


def test_op_error_rates_make_one_notation_reliable_per_operation():
    task = get_task("arith")
    ex = task.generate(400, seed=1, steps=1)
    rates = {"symbols": {"+": 1.0, "-": 1.0, "*": 0.0}}
    wrong = {op: [] for op in "+-*"}
    for i, e in enumerate(ex):
        ok = task.verify(e, task.trace(e, random.Random(i), notation="symbols", op_error_rates=rates)).correct
        wrong[e["meta"]["program"][0][2]].append(not ok)
    assert all(wrong["+"]) and all(wrong["-"]) and not any(wrong["*"])


def test_a_mixture_can_enter_one_task_twice():
    spec = {"arith": {"weight": 1.0}, "arith_words": {"task": "arith", "weight": 2.0, "trace": {"notation": "words"}}}
    entries = build_mixture(spec, "r1", get_task)
    assert [e.task.name for e in entries] == ["arith", "arith"] and entries[1].trace == {"notation": "words"}


def test_readable_selection_keeps_correct_traces_in_one_notation():
    from reasonlab.train.rft import readable
    task = get_task("arith")
    tail = "\n</think>\n<answer>19</answer>"
    assert readable(task, "c = a + b = 7 + 12 = 19" + tail)
    assert not readable(task, "c = a + b = 7 + 12 = 19\nd is c times 1, 19 times 1 makes 19" + tail)
    assert not readable(task, "c = a + b = 7 + 12 = 19 <answer>19</answer>")          # not the R1 format


def test_table_shows_readability_columns():
    m = {"ks": [1, 2], "pass@1": 0.5, "pass@1_ci": [0.4, 0.6], "maj@2": 0.55, "mean_length": 20.0,
         "language_consistency": 0.9, "mixed_rate": 0.2}
    table = pipeline_table({"zero": {"samples": 1000, "train_seconds": 12.0, "eval": {"metrics": m}}})
    assert "| zero | R1-Zero (GRPO from base) | 1,000 | 12 | 0.500 [0.400, 0.600] | 0.550 | 20.0 | 0.900 | 0.200 |" in table


def test_quick_pipeline_runs_every_stage_and_resumes(tmp_path):
    cfg = load_config(PipelineConfig, RECIPE, [f"--runs_dir={tmp_path}", "--quick=true"])
    run_pipeline(cfg)
    results = json.loads((tmp_path / "r1_pipeline_tiny" / "results.json").read_text())
    assert list(results) == list(STAGES)
    assert 'id="run-r1_pipeline_tiny_zero"' in (tmp_path / "r1_pipeline_tiny" / "report.html").read_text()
    kept = sum(json.loads(x)["kept"] for x in (tmp_path / "r1_pipeline_tiny_distill" / "metrics.jsonl").read_text().splitlines())
    epochs = 2
    assert results["student_rl"]["steps"] == max(1, int(kept * epochs / 16 + 0.5))      # quick: 4 prompts x 4 samples
    again = run_pipeline(load_config(PipelineConfig, RECIPE, [f"--runs_dir={tmp_path}", "--quick=true", "--resume=true"]))
    assert again["stage_seconds"] == {}                                                 # every stage kept


def test_a_switching_writer_uses_the_notation_each_operation_is_given():
    task = get_task("arith")
    share = {"+": 1.0, "-": 1.0, "*": 0.0}
    for i, e in enumerate(task.generate(100, seed=2, steps=3)):
        lines = task.trace(e, random.Random(i), notation="mixed", words_share=share).split("</think>")[0].split("\n")
        ops = [step[2] for step in e["meta"]["program"]]
        assert [line_notation(x) for x in lines if x] == ["symbols" if op == "*" else "words" for op in ops]

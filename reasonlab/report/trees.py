"""Search trees from the sweep's ``trees.jsonl`` (beam search, DVTS, MCTS): every reasoning step
with the PRM score after it. Identical sibling steps are merged (``x4``), so the tree reads as a
prefix tree of what the search explored."""
from __future__ import annotations

from reasonlab.report.markup import chip, esc, fmt
from reasonlab.report.traces import highlight


def merge_tree(nodes: list) -> list[dict]:
    """Nodes ``{"parent", "text", "score", "done", ...}`` (parents first) -> root list of
    ``{"text", "score", "done", "count", "visits", "q", "children"}`` with identical siblings merged.

    >>> roots = merge_tree([{"parent": -1, "text": "a"}, {"parent": -1, "text": "a"}, {"parent": 1, "text": "b"}])
    >>> [(r["text"], r["count"], [c["text"] for c in r["children"]]) for r in roots]
    [('a', 2, ['b'])]
    """
    roots: list[dict] = []
    index: list[dict | None] = []
    for node in nodes:
        parent = node.get("parent", -1) if isinstance(node, dict) else None
        known = isinstance(parent, int) and -1 <= parent < len(index) and (parent == -1 or index[parent] is not None)
        if not known:
            index.append(None)                                  # malformed: dropped with its subtree
            continue
        siblings = roots if parent == -1 else index[parent]["children"]
        text = str(node.get("text", ""))
        found = next((m for m in siblings if m["text"] == text), None)
        if found is None:
            found = {"text": text, "score": node.get("score"), "done": bool(node.get("done")), "count": 0,
                     "visits": 0, "q": None, "value": 0.0, "children": []}
            siblings.append(found)
        found["count"] += 1
        found["done"] = found["done"] or bool(node.get("done"))
        visits, q = node.get("visits"), node.get("q")
        if isinstance(visits, int) and visits > 0 and isinstance(q, (int, float)):
            found["visits"] += visits                            # merged MCTS nodes: visit-weighted mean Q
            found["value"] += q * visits
            found["q"] = found["value"] / found["visits"]
        index.append(found)
    return roots


def score_color(score) -> str:
    """Red (0) to green (1) for a PRM score; grey without one.

    >>> score_color(1.0), score_color(None)
    ('hsl(120 60% 38%)', '#9ca3af')
    """
    if not isinstance(score, (int, float)):
        return "#9ca3af"
    return f"hsl({round(max(0.0, min(1.0, float(score))) * 120)} 60% 38%)"


def _node_html(node: dict, budget: list[int]) -> str:
    if budget[0] <= 0:
        return ""
    budget[0] -= 1
    score = node["score"]
    label = f"{score:.2f}" if isinstance(score, (int, float)) else "·"
    bits = [f'<span class="score" style="background:{score_color(score)}" title="PRM score after this step: '
            f'{esc(fmt(score, 4))}">{esc(label)}</span>']
    if node["count"] > 1:
        bits.append(f'<span class="count" title="{node["count"]} identical paths">×{node["count"]}</span>')
    text = node["text"].rstrip("\n")
    bits.append(f'<code class="step-text">{highlight(text, "") if node["done"] else highlight(text, None)}</code>')
    if node["visits"]:
        bits.append(f'<span class="fact">visits {node["visits"]}' +
                    (f', Q {esc(fmt(node["q"], 2))}' if isinstance(node["q"], (int, float)) else "") + "</span>")
    if node["done"]:
        bits.append('<span class="fact done">finished</span>')
    kids = "".join(_node_html(c, budget) for c in node["children"])
    return f'<li>{"".join(bits)}{f"<ul>{kids}</ul>" if kids else ""}</li>'


def _count(nodes: list[dict]) -> int:
    return sum(1 + _count(n["children"]) for n in nodes)


def tree_html(nodes: list, max_nodes: int = 300) -> str:
    """The merged tree as nested lists (at most ``max_nodes`` steps; the rest counted)."""
    roots = merge_tree(nodes)
    if len(roots) == 1 and not roots[0]["text"] and roots[0]["children"]:     # MCTS: an empty root
        roots = roots[0]["children"]
    budget = [max_nodes]
    body = "".join(_node_html(r, budget) for r in roots)
    hidden = _count(roots) - max_nodes
    more = f'<p class="muted">… {hidden} more steps not shown</p>' if hidden > 0 else ""
    return f'<ul class="tree">{body}</ul>{more}' if body else '<p class="muted">empty tree</p>'


def tree_card(method: str, row: dict, problem: dict, open_: bool) -> str:
    """One tree with its problem and the answer the search chose (the sweep's results.jsonl)."""
    search = problem.get("search") if isinstance(problem.get("search"), dict) else {}
    result = search.get(f"{method}@{row.get('n')}")
    head = f'<span class="pid">{esc(row.get("id", ""))}</span>'
    if isinstance(result, dict):
        verdict = "correct" if result.get("correct") else "wrong"
        head += chip(verdict, verdict) + f'<span class="fact">chosen answer <b>{esc(result.get("answer"))}</b></span>'
    head += f'<span class="fact">N = {esc(row.get("n", "?"))}</span>'
    if "answer" in problem:
        head += f'<span class="gold">reference <b>{esc(problem["answer"])}</b></span>'
    question = f'<div class="question">{esc(problem["question"])}</div>' if "question" in problem else ""
    tree = row.get("tree") if isinstance(row.get("tree"), list) else []
    return (f'<details class="tree-card"{" open" if open_ else ""}><summary>{head}</summary>'
            f'<div class="body">{question}{tree_html(tree)}</div></details>')


def search_trees(run) -> str:
    """Every stored tree of a sweep run, grouped by method, with the search's chosen answer."""
    problems = {r.get("id"): r for r in run.results}
    by_method: dict[str, list[dict]] = {}
    for row in run.trees:
        by_method.setdefault(str(row.get("method")), []).append(row)
    out = []
    for method, rows in by_method.items():
        cards = [tree_card(method, row, problems.get(row.get("id"), {}), i == 0) for i, row in enumerate(rows)]
        out.append(f'<h4>{esc(method)}</h4>{"".join(cards)}')
    legend = ('<p class="muted legend-line">Each line is one reasoning step; the chip is the PRM score after it '
              '(red 0 → green 1); ×k: k identical paths; MCTS steps show visits and mean value Q.</p>')
    return legend + "".join(out) if out else ""

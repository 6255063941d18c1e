"""Summary tables per stage, from ``summary.json`` (and the last metrics row)."""
from __future__ import annotations

import re

from reasonlab.report.markup import Html, details, esc, fmt, fmt_ci, kv_table, panels, table

# run metadata every stage appends (shown in one small line, not in the tables)
METADATA = ("seed", "git_rev", "git_dirty", "python", "reasonlab", "torch", "numpy", "transformers", "platform",
            "hostname", "pid", "argv", "time", "unix_time", "run_dir", "stage")


def _scalar_pairs(data: dict, skip: tuple = ()) -> list[tuple[str, object]]:
    return [(k, v) for k, v in data.items()
            if k not in skip and k not in METADATA and isinstance(v, (int, float, str, bool)) and v is not None]


def eval_metrics(summary: dict | None) -> dict:
    """The evaluation metrics of a stage summary: ``summary["eval"]["metrics"]`` (training stages)
    or ``summary["metrics"]`` (eval); {} when there are none."""
    if not isinstance(summary, dict):
        return {}
    inner = summary.get("eval")
    metrics = inner.get("metrics") if isinstance(inner, dict) else summary.get("metrics")
    return metrics if isinstance(metrics, dict) else {}


def _ks(metrics: dict) -> list[int]:
    ks = {int(m.group(2)) for k in metrics if (m := re.fullmatch(r"(pass|maj)@(\d+)", k))}
    return sorted(ks)


def metrics_table(metrics: dict) -> str:
    """pass@k and maj@k with their 95% intervals, one row per k ("" without any)."""
    ks = _ks(metrics)
    if not ks:
        return ""
    rows = [[f"k = {k}", fmt_ci(metrics.get(f"pass@{k}"), metrics.get(f"pass@{k}_ci")),
             fmt_ci(metrics.get(f"maj@{k}"), metrics.get(f"maj@{k}_ci"))] for k in ks]
    return table(["", "pass@k [95% CI]", "maj@k [95% CI]"], rows)


def other_metrics(metrics: dict) -> str:
    """The evaluation's other numbers (lengths, rates, verdict counts)."""
    other = [(k, v) for k, v in metrics.items() if not re.match(r"(pass|maj)@\d+", k)
             and isinstance(v, (int, float)) and not isinstance(v, bool)]
    verdicts = metrics.get("verdicts")
    if isinstance(verdicts, dict):
        other += [(f"verdict: {k}", v) for k, v in verdicts.items()]
    return kv_table(other) if other else ""


def headline(summary: dict | None, metrics_rows: list[dict]) -> dict:
    """The few numbers of the overview table: steps, train seconds, pass@1, maj@k and pass@k at
    the largest k (with CIs)."""
    summary = summary if isinstance(summary, dict) else {}
    metrics = eval_metrics(summary)
    ks = _ks(metrics)
    top = ks[-1] if ks else None
    steps = summary.get("steps") or (metrics_rows[-1].get("step") if metrics_rows else None)
    timings = summary.get("timings") if isinstance(summary.get("timings"), dict) else {}
    return {"steps": steps, "seconds": summary.get("train_seconds", timings.get("total_s")),
            "pass@1": fmt_ci(metrics.get("pass@1"), metrics.get("pass@1_ci")) if "pass@1" in metrics else "",
            "maj@k": f"{fmt(metrics.get(f'maj@{top}'))} (k={top})" if top else "",
            "pass@k": f"{fmt(metrics.get(f'pass@{top}'))} (k={top})" if top else ""}


def overview_table(runs) -> str:
    rows = []
    for run in runs:
        h = headline(run.summary, run.metrics)
        rows.append([run.name, run.stage, fmt(h["steps"]), fmt(h["seconds"]), h["pass@1"], h["maj@k"], h["pass@k"],
                     str(len(run.notes)) if run.notes else ""])
    return table(["run", "stage", "steps", "seconds", "pass@1 [95% CI]", "maj@k", "pass@k", "notes"], rows,
                 numeric_from=2)


def _point_cell(point: dict) -> Html:
    """Accuracy in bold, its interval and the tokens per problem below."""
    ci, tokens = point.get("ci"), point.get("tokens")
    low = f"[{fmt(ci[0])}, {fmt(ci[1])}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""
    tok = f"{round(tokens):,} tok" if isinstance(tokens, (int, float)) else ""
    return Html(f"<small>{esc(tok)}</small> <b>{esc(fmt(point.get('accuracy')))}</b><br><small>{esc(low)}</small>")


def sweep_tables(summary: dict) -> str:
    """Method x budget accuracy (with CI and tokens per problem), the paired comparisons, the
    PRM aggregations and the timings."""
    points = [p for p in summary.get("points", []) if isinstance(p, dict) and "method" in p and "n" in p]
    out = ""
    if points:
        ns = sorted({p["n"] for p in points})
        methods = list(dict.fromkeys(p["method"] for p in points))
        cell = {(p["method"], p["n"]): p for p in points}
        rows = [[m] + [_point_cell(cell[m, n]) if (m, n) in cell else "" for n in ns] for m in methods]
        out += "<h4>Accuracy [95% CI] and tokens per problem, by budget N</h4>" + table(
            ["method"] + [f"N={n}" for n in ns], rows, cls="data pivot")
    items = []
    bars = summary.get("bars")
    if isinstance(bars, dict) and bars:
        rows = [[name, fmt(b.get("value")), fmt(b.get("baseline")), fmt_ci(b.get("difference"), b.get("ci")),
                 "holds" if b.get("passed") else "fails"] for name, b in bars.items() if isinstance(b, dict)]
        items.append(("Paired comparisons", table(["claim", "value", "baseline", "difference [95% CI]", ""], rows)))
    aggs = summary.get("prm_aggregations")
    if isinstance(aggs, dict) and aggs:
        rows = [[k, fmt_ci(v.get("accuracy"), v.get("ci"))] for k, v in aggs.items() if isinstance(v, dict)]
        items.append(("PRM aggregations", table(["selection", "accuracy [95% CI]"], rows)))
    timings = summary.get("timings")
    if isinstance(timings, dict) and timings:
        items.append(("Timings (s)", kv_table(list(timings.items()))))
    facts = _scalar_pairs(summary)
    if facts:
        items.insert(0, ("Sweep", kv_table(facts)))
    return out + panels(items)


def verifier_tables(summary: dict) -> str:
    """Data and label facts, agreement of the MC labels with the oracle, and each value model."""
    items = [("Data and labels", kv_table(_scalar_pairs(summary)))]
    agreement = summary.get("agreement")
    if isinstance(agreement, dict):
        items.append(("Monte-Carlo labels against the oracle", kv_table(_scalar_pairs(agreement))))
    timings = summary.get("timings")
    if isinstance(timings, dict) and timings:
        items.append(("Timings (s)", kv_table(list(timings.items()))))
    out = panels(items)
    models = summary.get("models")
    if isinstance(models, dict) and models:
        rows = []
        for kind, m in models.items():
            if not isinstance(m, dict):
                continue
            val = m.get("validation", {}) if isinstance(m.get("validation"), dict) else {}
            agg = val.get("min", {}) if isinstance(val.get("min"), dict) else {}
            rows.append([kind, fmt(m.get("rows")), fmt(m.get("steps")), fmt(m.get("first_loss")),
                         fmt(m.get("final_loss")), fmt(m.get("train_s")), fmt(agg.get("auroc")),
                         fmt(agg.get("within_auroc")), fmt(agg.get("best_of_n"))])
        out += "<h4>Value models</h4>" + table(["model", "rows", "steps", "first loss", "final loss", "train s",
                                                "val AUROC", "within-problem AUROC", "val best-of-n"], rows)
    return out


def stage_tables(stage: str, summary: dict | None, metrics_rows: list[dict]) -> str:
    """Everything tabular about one run."""
    if not isinstance(summary, dict):
        summary = {}
    if stage == "sweep":
        return sweep_tables(summary)
    if stage == "verifiers":
        return verifier_tables(summary)
    items = []
    metrics = eval_metrics(summary)
    if metrics:
        ev = summary.get("eval") if isinstance(summary.get("eval"), dict) else summary
        where = ", ".join(f"{k} {ev[k]}" for k in ("task", "split", "template", "temperature", "n") if k in ev)
        items.append((f"Held-out evaluation{(' (' + where + ')') if where else ''}", metrics_table(metrics)))
        items.append(("Evaluation details", other_metrics(metrics)))
    facts = _scalar_pairs(summary)
    if facts:
        items.append(("Run", kv_table(facts)))
    last = summary.get("last") if isinstance(summary.get("last"), dict) else None
    last = last or (metrics_rows[-1] if metrics_rows else None)
    out = panels(items)
    if isinstance(last, dict) and stage in ("grpo", "rft", "distill", "sft", "pretrain"):
        pairs = _scalar_pairs(last, ("step",))
        title = f"<h4>Last logged step (step {esc(fmt(last.get('step')))}): {len(pairs)} metrics</h4>"
        out += details(title, kv_table(pairs), open_=False, cls="sub")
    return out


def metadata_line(summary: dict | None) -> str:
    """``git abc123 (dirty) · torch 2.13 · 2026-11-29T00:05`` from the run metadata."""
    if not isinstance(summary, dict):
        return ""
    bits = []
    if summary.get("git_rev"):
        bits.append(f"git {str(summary['git_rev'])[:10]}{' (dirty)' if summary.get('git_dirty') else ''}")
    bits += [f"{k} {summary[k]}" for k in ("torch", "python") if summary.get(k)]
    if summary.get("time"):
        bits.append(str(summary["time"])[:16])
    return " · ".join(bits)

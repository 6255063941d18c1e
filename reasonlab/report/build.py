"""``reasonlab report``: the config, the page and the stage function."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from reasonlab.report import assets
from reasonlab.report.charts import budget_chart, training_charts
from reasonlab.report.load import Run, find_run_dirs, load_run, page_order
from reasonlab.report.markdown import render as render_markdown
from reasonlab.report.markup import details, esc, figure, note_list, png_data_uri, slug
from reasonlab.report.tables import metadata_line, overview_table, stage_tables
from reasonlab.report.traces import rl_samples, trace_browser
from reasonlab.report.trees import search_trees


@dataclass
class ReportConfig:
    runs: list[str] = field(default_factory=list)  # run directories or directories of runs (runs/); positional args
    out: str = ""                    # the HTML file ("": report.html in the first directory given)
    title: str = "reasonlab report"  # the page's heading
    problems_per_run: int = 12       # trace browser: the first problems of each run's results.jsonl
    samples_per_problem: int = 4     # trace browser: completions shown per problem
    trees_per_method: int = 3        # search trees shown per method (sweep trees.jsonl)
    rl_steps: int = 6                # GRPO runs: logged steps shown in "how the reasoning changed"
    max_image_bytes: int = 8_000_000  # a larger PNG is skipped with a note


def check_config(cfg: ReportConfig) -> None:
    from reasonlab.checks import check_min
    from reasonlab.config import ConfigError

    if not cfg.runs:
        raise ConfigError("give run directories: reasonlab report runs/  (or runs/demo runs/demo_grpo ...)")
    check_min(cfg, {"problems_per_run": 0, "samples_per_problem": 1, "trees_per_method": 0, "rl_steps": 1,
                    "max_image_bytes": 1})


def output_path(cfg: ReportConfig, found: list[Path]) -> Path:
    """``cfg.out``, else ``report.html`` in the first given directory that exists."""
    if cfg.out:
        return Path(cfg.out)
    first = next((Path(p) for p in cfg.runs if Path(p).is_dir()), found[0])
    return first / "report.html"


def plots_html(run: Run, max_bytes: int) -> str:
    figures = []
    for png in run.pngs:
        uri, note = png_data_uri(png, max_bytes)
        if note:
            run.notes.append(note)
        else:
            figures.append(figure(uri, png.name))
    return f'<h4>Plots</h4><div class="plots">{"".join(figures)}</div>' if figures else ""


def run_section(run: Run, cfg: ReportConfig) -> str:
    """One run: its notes, results.md, summary tables, curves, plots and metadata."""
    parts = []
    for name, text in run.markdown.items():
        parts.append(details(f"<h4>{esc(name)}</h4>", f'<div class="markdown">{render_markdown(text)}</div>', cls="sub"))
    parts.append(stage_tables(run.stage, run.summary, run.metrics))
    charts = training_charts(run.stage, run.metrics) if run.metrics else ""
    if run.stage == "sweep" and isinstance(run.summary, dict) and isinstance(run.summary.get("points"), list):
        charts = budget_chart(run.summary["points"]) + charts
    if charts:
        source = f" (from {run.metrics_file})" if run.metrics_file else ""
        parts.append(f'<h4>Curves{esc(source)}</h4><div class="charts">{charts}</div>')
    parts.append(plots_html(run, cfg.max_image_bytes))
    if run.samples:
        parts.append(f'<p class="muted">{len(run.samples)} logged rollouts: see '
                     f'<a href="#rl-samples">how the reasoning changed</a>.</p>')
    meta = metadata_line(run.summary)
    if meta:
        parts.append(f'<p class="meta">{esc(meta)}</p>')
    if not any(parts):
        parts.append('<p class="muted">Nothing to show: no summary, metrics, tables or plots.</p>')
    title = (f'<h2>{esc(run.name)}</h2><span class="stage-tag">{esc(run.stage)}</span>'
             f'<span class="path">{esc(run.path)}</span>')
    return details(title, note_list(run.notes) + "".join(parts), cls="stage", id_=f"run-{slug(run.name)}")


def nav_html(runs: list[Run], extra: list[tuple[str, str]]) -> str:
    links = ['<a href="#overview">Overview</a>']
    links += [f'<a href="#run-{esc(slug(r.name))}">{esc(r.name)}</a>' for r in runs]
    tail = [f'<a href="#{esc(i)}">{esc(label)}</a>' for i, label in extra]
    return (f'<nav class="top"><span class="brand">reasonlab report</span>{"".join(links)}<span class="sep">|</span>'
            f'{"".join(tail)}</nav>')


def page(cfg: ReportConfig, runs: list[Run], notes: list[str]) -> str:
    """The whole HTML document (a CSP allows only its own inline script, inline styles and data: images)."""
    sections, extra = [run_section(r, cfg) for r in runs], []
    browser = trace_browser(runs, cfg.samples_per_problem)
    sections.append(details('<h2>Trace browser</h2><span class="muted">sampled completions, verdicts, parsed answers'
                            '</span>', browser, cls="stage", id_="traces"))
    extra.append(("traces", "Traces"))
    trees = "".join(f'<h3>{esc(r.name)}</h3>{t}' for r in runs if r.trees and (t := search_trees(r)))
    if trees:
        sections.append(details('<h2>Search trees</h2><span class="muted">beam search, DVTS, MCTS</span>', trees,
                                cls="stage", id_="trees"))
        extra.append(("trees", "Trees"))
    rl = "".join(f'<h3>{esc(r.name)}</h3>{rl_samples(r, cfg.rl_steps)}' for r in runs if r.samples)
    missing = [r.name for r in runs if r.stage == "grpo" and not r.samples]
    if missing:
        rl += (f'<p class="muted">No samples.jsonl in {esc(", ".join(missing))} (GRPO with sample_log_every=0, '
               'or a run from before it existed).</p>')
    if rl:
        sections.append(details('<h2>How the reasoning changed</h2><span class="muted">GRPO rollouts at chosen steps'
                                '</span>', rl, cls="stage", id_="rl-samples"))
        extra.append(("rl-samples", "RL samples"))
    all_notes = notes + [n for r in runs for n in r.notes]          # run notes are complete once sections exist
    sections.append(details(f"<h2>Notes</h2><span class=\"muted\">{len(all_notes)} skipped file(s)</span>",
                            note_list(all_notes) or '<p class="muted">Every file was read.</p>', open_=bool(all_notes),
                            cls="stage", id_="notes"))
    extra.append(("notes", f"Notes ({len(all_notes)})"))
    overview = (f'<section class="block" id="overview"><div class="block-head"><h2>Overview</h2>'
                f'<div class="toolbar"><button type="button" data-toggle-all="open">expand all</button>'
                f'<button type="button" data-toggle-all="close">collapse all</button></div></div>'
                f'<div class="body">{note_list(notes)}{overview_table(runs)}</div></section>')
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    script_hash = base64.b64encode(hashlib.sha256(assets.JS.encode()).digest()).decode()
    csp = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{script_hash}'"
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(cfg.title)}</title><style>{assets.CSS}</style></head><body>"
            f"{nav_html(runs, extra)}<main><h1>{esc(cfg.title)}</h1>"
            f'<p class="subtitle">{len(runs)} run(s) from {esc(", ".join(cfg.runs))} · generated {esc(now)}</p>'
            f"{overview}{''.join(sections)}<footer>reasonlab report: one self-contained file; model text is "
            f"escaped.</footer></main><script>{assets.JS}</script></body></html>\n")


def build_report(cfg: ReportConfig) -> str:
    """Read the run directories, write the page, print and return its path."""
    from reasonlab.config import ConfigError
    from reasonlab.io import atomic_write_text

    check_config(cfg)
    found, notes = find_run_dirs(cfg.runs)
    if not found:
        raise ConfigError("no run directories found: " + "; ".join(notes))
    runs = page_order([load_run(p, cfg.problems_per_run, cfg.trees_per_method) for p in found])
    out = output_path(cfg, found)
    atomic_write_text(out, page(cfg, runs, notes))
    print(f"report: {out}  ({len(runs)} runs, {len(notes) + sum(len(r.notes) for r in runs)} notes)")
    return str(out)

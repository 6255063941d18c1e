"""``reasonlab report``: the page from run directories (no browser here; see test_report_browser)."""
import base64
import doctest
import hashlib
import importlib
import re
from html import unescape

import pytest

from reasonlab.config import ConfigError
from reasonlab.report.build import ReportConfig, build_report

from report_helpers import XSS, XSS_IMG, make_runs


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return root, make_runs(root)


@pytest.fixture(scope="module")
def page(runs):
    root, _ = runs
    path = build_report(ReportConfig(runs=[str(root)]))
    return path, open(path, encoding="utf-8").read()


@pytest.mark.parametrize("name", ["reasonlab.report.markup", "reasonlab.report.markdown", "reasonlab.report.charts",
                                  "reasonlab.report.traces", "reasonlab.report.trees", "reasonlab.train.sinks",
                                  "reasonlab.train.rl_monitor"])
def test_doctests(name):
    assert doctest.testmod(importlib.import_module(name)).failed == 0


def test_default_output_is_report_html_in_the_first_directory(runs, page):
    root, _ = runs
    assert page[0] == str(root / "report.html")


def test_every_run_has_a_section_with_its_tables(page):
    html = page[1]
    for name, stage in (("pre", "pretrain"), ("rl", "grpo"), ("sw", "sweep"), ("broken", "eval")):
        assert re.search(f'id="run-{name}".*?<span class="stage-tag">{stage}</span>', html)
    assert html.index('id="run-pre"') < html.index('id="run-sw"') < html.index('id="run-rl"')   # stage order
    assert "0.450 [0.350, 0.550]" in html                 # pass@1 with its interval
    assert "maj@16 &gt;= pass@1 + 0.10" in html            # the sweep's paired comparison
    assert html.count('<svg class="chart"') >= 5          # pretrain, GRPO (3), budget curve, broken run's loss
    assert 'id="trees"' in html and 'id="rl-samples"' in html and "step 20" in html


def test_model_text_is_escaped_everywhere(page):
    html = page[1]
    assert html.count("<script") == 1                     # only the page's own script
    assert XSS not in html and XSS_IMG not in html and "<img src=x" not in html
    assert "&lt;script&gt;window.__xss = 1&lt;/script&gt;" in html


def test_page_is_self_contained_and_its_script_is_pinned_by_hash(page):
    html = page[1]
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert html.count('<img src="data:image/png;base64,') == 2
    script = html.split("<script>")[1].split("</script>")[0]
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    csp = unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', html).group(1))
    assert f"script-src 'sha256-{digest}'" in csp and "default-src 'none'" in csp


def test_bad_files_become_one_line_notes(page):
    html = page[1]
    broken = html.split('id="run-broken"')[1].split("</details>")[0]
    assert "summary.json: malformed JSON at line 1" in broken
    assert "metrics.jsonl: 1 malformed line(s) skipped (first: line 2)" in broken
    assert "results.jsonl: 1 malformed line(s) skipped (first: line 1)" in broken
    assert "fake.png: skipped, not a PNG file" in broken
    assert "Traceback" not in html


def test_trace_browser_holds_every_shown_completion_with_its_verdict(runs, page):
    _, info = runs
    html = page[1].split('id="trace-list"')[1].split('id="trees"')[0]
    for verdict in ("correct", "wrong", "none"):
        assert html.count(f'class="sample" data-verdict="{verdict}"') == info["counts"][verdict]
    assert '<mark class="ans">4</mark>' in html


def test_cli_positional_runs_and_errors(runs, tmp_path, capsys):
    from reasonlab.cli import main

    root, _ = runs
    out = tmp_path / "r.html"
    assert main(["report", str(root / "pre"), str(root / "nope"), "--out", str(out), "--title=T <b>"]) == 0
    assert str(out) in capsys.readouterr().out
    html = out.read_text()
    assert "nope: not found" in html and "<title>T &lt;b&gt;</title>" in html and 'id="run-sw"' not in html
    assert main(["report"]) == 2 and "give run directories" in capsys.readouterr().err
    assert main(["report", str(tmp_path / "missing")]) == 2 and "not found" in capsys.readouterr().err


def test_a_directory_without_runs_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no run directories"):
        build_report(ReportConfig(runs=[str(tmp_path)]))

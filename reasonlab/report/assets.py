"""The page's inline CSS and JavaScript (no external files, fonts or CDNs)."""

CSS = """
:root { --fg: #1f2937; --muted: #6b7280; --line: #e5e7eb; --bg: #f8fafc; --card: #fff; --accent: #2563eb;
  --ok: #15803d; --ok-bg: #dcfce7; --bad: #b91c1c; --bad-bg: #fee2e2; --none: #92400e; --none-bg: #fef3c7; }
* { box-sizing: border-box; }
[hidden] { display: none !important; }
html { scroll-padding-top: 64px; }
body { margin: 0; font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  color: var(--fg); background: var(--bg); }
nav.top { position: sticky; top: 0; z-index: 10; display: flex; gap: 4px 14px; align-items: center; flex-wrap: wrap;
  padding: 10px 28px; background: #111827; color: #e5e7eb; box-shadow: 0 1px 4px rgba(0,0,0,.25); }
nav.top .brand { font-weight: 700; color: #fff; margin-right: 10px; letter-spacing: .2px; }
nav.top a { color: #cbd5e1; text-decoration: none; font-size: 14px; padding: 2px 0; border-bottom: 2px solid transparent; }
nav.top a:hover { color: #fff; border-bottom-color: #60a5fa; }
nav.top .sep { color: #4b5563; }
main { max-width: 1320px; margin: 0 auto; padding: 22px 28px 80px; }
h1 { font-size: 26px; margin: 6px 0 2px; }
h2 { font-size: 19px; margin: 0; display: inline; }
h3 { font-size: 16px; margin: 22px 0 8px; }
h4 { font-size: 14.5px; margin: 20px 0 8px; color: #374151; }
h5, h6 { font-size: 14px; margin: 16px 0 6px; }
.muted { color: var(--muted); }
.subtitle { color: var(--muted); margin: 0 0 18px; }
details.stage, section.block { background: var(--card); border: 1px solid var(--line); border-radius: 10px;
  margin: 16px 0; box-shadow: 0 1px 2px rgba(0,0,0,.04); }
details.stage > summary, section.block > .block-head { padding: 14px 18px; cursor: pointer; display: flex;
  align-items: baseline; gap: 12px; flex-wrap: wrap; list-style: none; }
details.stage > summary::-webkit-details-marker { display: none; }
details.stage > summary::before { content: "▸"; color: var(--muted); width: 12px; }
details.stage[open] > summary::before { content: "▾"; }
details.stage > .body, section.block > .body { padding: 2px 20px 18px; border-top: 1px solid var(--line); }
.stage-tag { font-size: 12px; text-transform: uppercase; letter-spacing: .6px; background: #eef2ff; color: #3730a3;
  padding: 1px 8px; border-radius: 99px; }
.path { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; color: var(--muted); }
.table-wrap { overflow-x: auto; margin: 6px 0 10px; }
table.data { border-collapse: collapse; font-size: 13.5px; font-variant-numeric: tabular-nums; min-width: 320px; }
table.data th, table.data td { padding: 5px 12px; border-bottom: 1px solid var(--line); vertical-align: top; }
table.data th { text-align: left; font-weight: 600; color: #374151; background: #f3f4f6; position: sticky; top: 0; }
table.data td.num { text-align: right; white-space: nowrap; }
table.data tbody tr:nth-child(even) { background: #fafafa; }
table.data tbody tr:hover { background: #eff6ff; }
table.kv td:first-child { color: #374151; }
ul.notes { margin: 8px 0; padding: 8px 14px 8px 30px; background: #fffbeb; border: 1px solid #fde68a;
  border-radius: 8px; color: #92400e; font-size: 13px; }
.charts { display: flex; flex-wrap: wrap; gap: 12px 22px; }
.chart-box { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px 10px 6px; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg.chart .grid { stroke: #eef0f3; }
svg.chart .tick { font-size: 10.5px; fill: var(--muted); }
svg.chart .axis { font-size: 11.5px; fill: #4b5563; }
svg.chart .title { font-size: 13px; font-weight: 600; fill: #111827; }
.legend { display: flex; flex-wrap: wrap; gap: 2px 14px; font-size: 12px; color: #4b5563; padding: 2px 6px; }
.legend .key i { display: inline-block; width: 12px; height: 3px; margin-right: 5px; vertical-align: middle; }
.plots { display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 14px; }
figure.plot { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 8px; }
figure.plot img { width: 100%; height: auto; display: block; }
figure.plot figcaption { font-size: 12px; color: var(--muted); text-align: center; margin-top: 4px; }
.markdown table.data { margin-bottom: 6px; }
.panels { display: flex; flex-wrap: wrap; gap: 4px 28px; align-items: flex-start; }
.panel { min-width: 260px; max-width: 100%; }
table.kv td { padding: 4px 12px; }
table.pivot td { font-size: 13px; line-height: 1.3; padding: 4px 8px; }
table.pivot td small { color: var(--muted); font-size: 11.5px; }
table.pivot th:not(:first-child) { text-align: right; }
.filters { position: sticky; top: 46px; z-index: 5; display: flex; flex-wrap: wrap; gap: 8px; align-items: center;
  padding: 10px 0; background: var(--card); border-bottom: 1px solid var(--line); margin-bottom: 12px; }
button.filter { font: inherit; font-size: 13.5px; padding: 5px 14px; border-radius: 99px; cursor: pointer;
  border: 1px solid #d1d5db; background: #fff; color: var(--fg); }
button.filter:hover { border-color: var(--accent); }
button.filter[aria-pressed="true"] { background: var(--accent); border-color: var(--accent); color: #fff; }
button.filter .count { opacity: .75; font-variant-numeric: tabular-nums; }
.run-select { font-size: 13.5px; margin-left: 8px; color: var(--muted); }
.run-select select { font: inherit; padding: 4px 6px; border-radius: 6px; border: 1px solid #d1d5db; }
#trace-count { margin-left: auto; font-size: 13px; color: var(--muted); }
.problem { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; margin: 10px 0; background: #fff; }
.problem-head, .sample-head { display: flex; flex-wrap: wrap; gap: 6px 12px; align-items: baseline; font-size: 12.5px; }
.run-tag { font-weight: 600; color: #3730a3; }
.pid { font-family: ui-monospace, Menlo, Consolas, monospace; color: var(--muted); font-size: 12px; }
.gold, .fact { color: #4b5563; font-size: 12.5px; }
.question { margin: 6px 0 4px; font-weight: 500; }
.sample { margin: 8px 0 4px 0; padding-left: 10px; border-left: 3px solid var(--line); }
.sample[data-verdict="correct"] { border-left-color: #86efac; }
.sample[data-verdict="wrong"] { border-left-color: #fca5a5; }
.sample[data-verdict="none"] { border-left-color: #fcd34d; }
pre.completion { margin: 4px 0 2px; padding: 8px 12px; background: #f9fafb; border: 1px solid #f0f1f3; border-radius: 6px;
  white-space: pre-wrap; word-break: break-word; font: 12.8px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
mark.ans { background: #fde047; color: #111827; padding: 0 2px; border-radius: 3px; font-weight: 700; }
.tag { color: #9ca3af; }
.chip { display: inline-block; font-size: 11.5px; font-weight: 600; padding: 0 8px; border-radius: 99px; line-height: 19px; }
.chip.correct { color: var(--ok); background: var(--ok-bg); }
.chip.wrong { color: var(--bad); background: var(--bad-bg); }
.chip.none { color: var(--none); background: var(--none-bg); }
details.rl-step, details.tree-card { border: 1px solid var(--line); border-radius: 8px; margin: 8px 0; background: #fff; }
details.rl-step > summary, details.tree-card > summary { padding: 8px 12px; cursor: pointer; display: flex; gap: 12px;
  flex-wrap: wrap; align-items: baseline; }
details.rl-step > .body, details.tree-card > .body { padding: 4px 14px 12px; }
.step { font-weight: 700; }
.rl-grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(400px, 1fr)); gap: 10px 16px; }
.rl-card { border: 1px solid var(--line); border-radius: 8px; padding: 6px 12px; }
details.sub { margin: 4px 0; }
details.sub > summary { cursor: pointer; }
details.sub > summary h4 { display: inline-block; margin: 12px 0 6px; }
details.sub > .body { padding: 0; }
ul.tree, ul.tree ul { list-style: none; margin: 0; padding-left: 18px; }
ul.tree { padding-left: 2px; }
ul.tree li { position: relative; margin: 3px 0; }
ul.tree ul { border-left: 1px dashed #d1d5db; margin-left: 14px; }
ul.tree .score { display: inline-block; min-width: 38px; text-align: center; color: #fff; font-size: 11.5px;
  font-weight: 600; border-radius: 4px; padding: 0 5px; margin-right: 6px; font-variant-numeric: tabular-nums; }
ul.tree .count { font-size: 11.5px; color: #6b7280; margin-right: 6px; }
code.step-text { font: 12.5px ui-monospace, Menlo, Consolas, monospace; white-space: pre-wrap; margin-right: 10px; }
ul.tree .fact { margin-right: 8px; }
.fact.done { color: var(--ok); }
.toolbar { display: flex; gap: 8px; margin: 6px 0 0; }
.toolbar button { font: inherit; font-size: 12.5px; padding: 3px 10px; border: 1px solid #d1d5db; border-radius: 6px;
  background: #fff; cursor: pointer; }
.meta { font-size: 12px; color: var(--muted); margin: 8px 0 0; }
footer { color: var(--muted); font-size: 12px; margin-top: 30px; }
"""

JS = """
(function () {
  var state = { verdict: "all", run: "all" };
  function apply() {
    var counts = { all: 0, correct: 0, wrong: 0, none: 0 }, shown = 0;
    document.querySelectorAll("#trace-list .problem").forEach(function (p) {
      var runOk = state.run === "all" || p.dataset.run === state.run, visible = 0;
      p.querySelectorAll(".sample").forEach(function (s) {
        if (runOk) { counts.all += 1; counts[s.dataset.verdict] += 1; }
        var ok = runOk && (state.verdict === "all" || s.dataset.verdict === state.verdict);
        s.hidden = !ok;
        if (ok) { visible += 1; }
      });
      p.hidden = visible === 0;
      shown += visible;
    });
    document.querySelectorAll("[data-count]").forEach(function (c) { c.textContent = counts[c.dataset.count]; });
    document.querySelectorAll("button.filter").forEach(function (b) {
      b.setAttribute("aria-pressed", String(b.dataset.filter === state.verdict));
    });
    var label = document.getElementById("trace-count");
    if (label) { label.textContent = "showing " + shown + " of " + counts.all + " completions"; }
  }
  document.querySelectorAll("button.filter").forEach(function (b) {
    b.addEventListener("click", function () { state.verdict = b.dataset.filter; apply(); });
  });
  var select = document.getElementById("trace-run");
  if (select) { select.addEventListener("change", function () { state.run = select.value; apply(); }); }
  function openTarget() {
    var id = decodeURIComponent(location.hash.slice(1)), target = id && document.getElementById(id);
    if (target && target.tagName === "DETAILS") { target.open = true; }
  }
  window.addEventListener("hashchange", openTarget);
  document.querySelectorAll("[data-toggle-all]").forEach(function (b) {
    b.addEventListener("click", function () {
      var open = b.dataset.toggleAll === "open";
      document.querySelectorAll("details.stage").forEach(function (d) { d.open = open; });
    });
  });
  openTarget();
  apply();
})();
"""

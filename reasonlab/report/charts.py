"""Inline SVG line charts (no JavaScript, no external files): the metrics curves of training
runs and the sweep's accuracy-vs-compute budget curves."""
from __future__ import annotations

import math

from reasonlab.report.markup import esc, fmt

PALETTE = ("#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563",
           "#65a30d", "#9333ea", "#ea580c", "#0d9488")
Series = dict[str, list[tuple[float, float]]]


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi].

    >>> nice_ticks(0, 1)
    [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    >>> nice_ticks(0.37, 0.58)
    [0.35, 0.4, 0.45, 0.5, 0.55, 0.6]
    """
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step + 1e-9), math.ceil(hi / step - 1e-9)
    ticks = [round(i * step, 10) for i in range(first, last + 1)]
    return ticks if len(ticks) >= 2 else [lo, hi]


def tick_label(t: float) -> str:
    """Whole numbers without decimals, the rest with two.

    >>> [tick_label(2000.0), tick_label(0.25), tick_label(0.0)]
    ['2,000', '0.25', '0']
    """
    return fmt(int(t)) if float(t).is_integer() else fmt(t, 2)


def log_ticks(lo: float, hi: float) -> list[float]:
    """Powers of ten (and 2x, 5x when few) inside [lo, hi] for a log axis."""
    decades = range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
    ticks = [10.0 ** d for d in decades]
    if len(ticks) <= 3:
        ticks = sorted(m * 10.0 ** d for d in decades for m in (1, 2, 5))
    return [t for t in ticks if lo <= t <= hi] or [lo, hi]


def _clean(series: Series, logx: bool) -> Series:
    out = {}
    for name, pts in series.items():
        good = [(float(x), float(y)) for x, y in pts if isinstance(x, (int, float)) and isinstance(y, (int, float))
                and math.isfinite(x) and math.isfinite(y) and (x > 0 or not logx)]
        if good:
            out[name] = sorted(good)
    return out


def line_chart(series: Series, title: str, xlabel: str, ylabel: str, logx: bool = False,
               width: int = 560, height: int = 260) -> str:
    """An SVG chart of named ``(x, y)`` series; hovering a point shows its value. Empty data:
    an empty string."""
    series = _clean(series, logx)
    if not series:
        return ""
    xs = [x for pts in series.values() for x, _ in pts]
    ys = [y for pts in series.values() for _, y in pts]
    left, right, top, bottom = 56, 12, 28, 40
    pw, ph = width - left - right, height - top - bottom
    x0, x1 = min(xs), max(xs)
    if logx:
        xticks = log_ticks(x0, x1) if x1 > x0 else [x0]
        lx0, lx1 = math.log10(x0), math.log10(x1) if x1 > x0 else math.log10(x0) + 1
        sx = lambda x: left + (math.log10(x) - lx0) / (lx1 - lx0) * pw     # noqa: E731
    else:
        xticks = nice_ticks(x0, x1)
        x0, x1 = xticks[0], xticks[-1]
        sx = lambda x: left + (x - x0) / ((x1 - x0) or 1) * pw              # noqa: E731
    yticks = nice_ticks(min(ys), max(ys))
    y0, y1 = yticks[0], yticks[-1]
    sy = lambda y: top + ph - (y - y0) / ((y1 - y0) or 1) * ph              # noqa: E731
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" role="img" '
             f'aria-label="{esc(title)}" xmlns="http://www.w3.org/2000/svg">',
             f'<text class="title" x="{left}" y="16">{esc(title)}</text>']
    for t in yticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{left + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}"/>'
                     f'<text class="tick" x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{esc(tick_label(t))}</text>')
    for t in xticks:
        parts.append(f'<line class="grid" y1="{top}" y2="{top + ph}" x1="{sx(t):.1f}" x2="{sx(t):.1f}"/>'
                     f'<text class="tick" y="{top + ph + 16}" x="{sx(t):.1f}" text-anchor="middle">'
                     f'{esc(tick_label(t))}</text>')
    parts.append(f'<text class="axis" x="{left + pw / 2:.0f}" y="{height - 6}" text-anchor="middle">'
                 f'{esc(xlabel)}</text>'
                 f'<text class="axis" transform="translate(14 {top + ph / 2:.0f}) rotate(-90)" '
                 f'text-anchor="middle">{esc(ylabel)}</text>')
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{path}"/>')
        if len(pts) <= 40:
            parts += [f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.6" fill="{color}">'
                      f'<title>{esc(name)}: {esc(fmt(y))} at {esc(xlabel)} {esc(fmt(x))}</title></circle>'
                      for x, y in pts]
    parts.append("</svg>")
    legend = "".join(f'<span class="key"><i style="background:{PALETTE[i % len(PALETTE)]}"></i>{esc(n)}</span>'
                     for i, n in enumerate(series))
    return f'<div class="chart-box">{"".join(parts)}<div class="legend">{legend}</div></div>'


def smooth(points: list[tuple[float, float]], window: int) -> list[tuple[float, float]]:
    """Running mean over the last ``window`` points (the first points average fewer).

    >>> smooth([(1, 1.0), (2, 3.0), (3, 5.0)], 2)
    [(1, 1.0), (2, 2.0), (3, 4.0)]
    """
    ys = [y for _, y in points]
    return [(x, sum(ys[max(0, i - window + 1): i + 1]) / len(ys[max(0, i - window + 1): i + 1]))
            for i, (x, _) in enumerate(points)]


def metric_series(rows: list[dict], keys: list[str], window: int = 1) -> Series:
    """``key -> [(step, value)]`` of the rows that have it (smoothed over ``window`` rows)."""
    out = {}
    for key in keys:
        pts = [(r["step"], r[key]) for r in rows
               if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
        if pts:
            name = f"{key} ({window}-step mean)" if window > 1 and len(pts) > window else key
            out[name] = smooth(pts, window) if window > 1 else pts
    return out


# training curves per stage: (title, y label, metric keys, smoothing window for per-step noise)
CURVES = {
    "grpo": [("reward and accuracy", "rate", ["reward", "accuracy", "heldout_pass@1"], 10),
             ("completion length", "tokens", ["length_mean", "length_p90"], 10),
             ("policy", "value", ["entropy", "kl", "clip_frac", "zero_variance_frac"], 10)],
    "rft": [("accuracy", "rate", ["accuracy", "heldout_pass@1"], 1), ("SFT loss", "loss", ["sft_loss"], 1),
            ("kept completions", "rows", ["kept"], 1)],
    "sft": [("training loss", "loss", ["loss"], 1), ("learning rate", "lr", ["lr"], 1)],
    "pretrain": [("training loss", "loss", ["loss"], 1), ("held-out greedy accuracy", "accuracy",
                                                         ["heldout_greedy_acc"], 1)],
    "verifiers": [("value-model loss", "BCE", ["orm_loss", "prm_loss"], 20)],
}


def training_charts(stage: str, rows: list[dict]) -> str:
    """The stage's curves from its metrics rows (nothing for stages without curves)."""
    stage = "rft" if stage == "distill" else stage
    charts = [line_chart(metric_series(rows, keys, window), title, "step", ylabel)
              for title, ylabel, keys, window in CURVES.get(stage, [])]
    return "".join(c for c in charts if c)


def budget_chart(points: list[dict]) -> str:
    """Accuracy against tokens per problem (log axis), one line per method (sweep points)."""
    series: Series = {}
    for p in points:
        if isinstance(p, dict) and "method" in p:
            series.setdefault(str(p["method"]), []).append((p.get("tokens"), p.get("accuracy")))
    return line_chart(series, "accuracy vs compute", "tokens per problem (policy + verifier)", "accuracy",
                      logx=True, width=760, height=340)

"""PNG plots rendered from artifacts (summary dicts, curves). matplotlib is imported lazily.

Figures are built with the object-oriented API on an Agg canvas (``matplotlib.figure.Figure``),
never through pyplot, so plotting is headless, thread-safe and does not touch the user's
interactive backend. Files are written atomically.
"""
from __future__ import annotations

import io as _stdio
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

__all__ = ["plot_curves", "plot_accuracy_vs_k", "metrics_by_k"]

_METRIC_AT_K = re.compile(r"^([A-Za-z_][\w\-]*)@(\d+)$")


def _new_figure(figsize: tuple[float, float]) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Any, path: str | Path) -> Path:
    from reasonlab.io import atomic_write_bytes

    buf = _stdio.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def plot_curves(curves: Mapping[str, Sequence[Sequence[float]]], path: str | Path,
                xlabel: str, ylabel: str, title: str | None = None, logx: bool = False,
                base: float = 10, xticks: Sequence[float] | None = None,
                ylim: tuple[float, float] | None = None) -> Path:
    """Line plot of named curves, with optional shaded bands; returns ``path`` (PNG).

    Args:
        curves: ``{name: (x, y)}`` or ``{name: (x, y, lo, hi)}``; each a sequence of equal
            length; ``lo``/``hi`` (the band) may be None.
        path: output file, parent dirs created, written atomically.
        logx: log-scale x axis with ``base`` (e.g. 2 for k, 10 for FLOPs).
        xticks: explicit tick positions, labelled with their plain values.
        ylim: y-axis limits, e.g. ``(0, 1)`` for accuracies.
    """
    if not curves:
        raise ValueError("plot_curves: nothing to plot (empty curves)")
    fig = _new_figure((6.0, 4.0))
    ax = fig.add_subplot(1, 1, 1)
    for name, curve in curves.items():
        if len(curve) not in (2, 4):
            raise ValueError(f"curve {name!r}: expected (x, y) or (x, y, lo, hi), "
                             f"got {len(curve)} items")
        x, y = list(curve[0]), list(curve[1])
        if len(x) != len(y):
            raise ValueError(f"curve {name!r}: {len(x)} x values but {len(y)} y values")
        (line,) = ax.plot(x, y, marker="o", markersize=3, label=name)
        if len(curve) == 4 and curve[2] is not None and curve[3] is not None:
            ax.fill_between(x, list(curve[2]), list(curve[3]), color=line.get_color(),
                            alpha=0.2, linewidth=0)
    if logx:
        ax.set_xscale("log", base=base)
    if xticks is not None:
        ax.set_xticks(list(xticks))
        ax.set_xticklabels([f"{t:g}" for t in xticks])
        ax.minorticks_off()
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return _save_png(fig, path)


def metrics_by_k(summary: Mapping[str, Any]) -> dict[str, tuple[list, list, list, list]]:
    """Collect ``"<metric>@<k>"`` entries into ``{metric: (ks, values, los, his)}``.

    ``los``/``his`` come from ``"<metric>@<k>_ci"`` and are None when any CI is missing.

    >>> metrics_by_k({"pass@1": 0.5, "pass@2": 0.7, "pass@2_ci": [0.6, 0.8], "n_samples": 2})
    {'pass': ([1, 2], [0.5, 0.7], None, None)}
    """
    points: dict[str, list[tuple[int, float, Any]]] = {}
    for key, value in summary.items():
        match = _METRIC_AT_K.match(key)
        if match is None or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        ci = summary.get(f"{key}_ci")
        points.setdefault(match.group(1), []).append((int(match.group(2)), float(value), ci))
    out: dict[str, tuple[list, list, list, list]] = {}
    for name, pts in points.items():
        pts.sort(key=lambda p: p[0])
        ks = [p[0] for p in pts]
        ys = [p[1] for p in pts]
        if all(p[2] is not None and len(p[2]) == 2 for p in pts):
            out[name] = (ks, ys, [float(p[2][0]) for p in pts], [float(p[2][1]) for p in pts])
        else:
            out[name] = (ks, ys, None, None)
    return out


def plot_accuracy_vs_k(summary: Mapping[str, Any], path: str | Path,
                       title: str | None = None) -> Path:
    """Plot every ``metric@k`` series of a summary (pass@k, maj@k, ...) against k (log2 x).

    CI bands are drawn where ``"<metric>@<k>_ci"`` entries exist. Returns ``path``.
    """
    series = metrics_by_k(summary)
    if not series:
        raise ValueError("plot_accuracy_vs_k: summary has no 'metric@k' entries")
    ks = sorted({k for xs, _, _, _ in series.values() for k in xs})
    curves = {f"{name}@k": data for name, data in sorted(series.items())}
    return plot_curves(curves, path, xlabel="k (samples)", ylabel="accuracy", title=title,
                       logx=True, base=2, xticks=ks, ylim=(0.0, 1.02))

"""Tests for reasonlab.eval.plots: PNGs are written, valid, and built from summaries."""
from __future__ import annotations

import subprocess
import sys

import pytest

from reasonlab.eval.metrics import summarize_samples
from reasonlab.eval.plots import metrics_by_k, plot_accuracy_vs_k, plot_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path) -> bool:
    data = path.read_bytes()
    return data[:8] == PNG_MAGIC and len(data) > 1000


def test_plot_accuracy_vs_k_from_a_real_summary(tmp_path):
    rows = [{"id": str(i), "correct": [j % (i + 2) == 0 for j in range(8)],
             "keys": [str(j % (i + 2)) for j in range(8)]} for i in range(6)]
    summary = summarize_samples(rows, ks=[1, 2, 4, 8], n_boot=50, n_resamples=50)
    out = plot_accuracy_vs_k(summary, tmp_path / "plots" / "acc.png", title="demo")
    assert out == tmp_path / "plots" / "acc.png"
    assert _is_png(out)
    assert [p.name for p in out.parent.iterdir()] == ["acc.png"]  # no temp files left


def test_plot_accuracy_without_cis_and_single_k(tmp_path):
    out = plot_accuracy_vs_k({"pass@1": 0.4, "n_samples": 1}, tmp_path / "one.png")
    assert _is_png(out)


def test_plot_accuracy_needs_metrics(tmp_path):
    with pytest.raises(ValueError, match="metric@k"):
        plot_accuracy_vs_k({"n_problems": 3}, tmp_path / "x.png")


def test_metrics_by_k_groups_and_sorts():
    summary = {"maj@4": 0.6, "pass@4": 0.8, "pass@1": 0.5, "pass@1_ci": [0.4, 0.6],
               "pass@4_ci": [0.7, 0.9], "maj@1": 0.5, "mean_length": 12.0, "pass@1x": 3}
    got = metrics_by_k(summary)
    assert got["pass"] == ([1, 4], [0.5, 0.8], [0.4, 0.7], [0.6, 0.9])
    assert got["maj"] == ([1, 4], [0.5, 0.6], None, None)
    assert set(got) == {"pass", "maj"}


def test_plot_curves_generic_with_and_without_bands(tmp_path):
    curves = {"train": ([0, 1, 2, 3], [3.0, 2.0, 1.5, 1.2]),
              "val": ([0, 1, 2, 3], [3.1, 2.2, 1.8, 1.7], [3.0, 2.0, 1.6, 1.5],
                      [3.2, 2.4, 2.0, 1.9])}
    assert _is_png(plot_curves(curves, tmp_path / "loss.png", "step", "loss"))
    scaling = {"maj": ([1e9, 1e10, 1e11], [0.2, 0.3, 0.35], None, None)}
    assert _is_png(plot_curves(scaling, tmp_path / "s.png", "FLOPs", "acc", logx=True,
                               title="scaling"))


def test_plot_curves_validates(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        plot_curves({}, tmp_path / "e.png", "x", "y")
    with pytest.raises(ValueError, match="3 x values but 2 y values"):
        plot_curves({"a": ([1, 2, 3], [1, 2])}, tmp_path / "e.png", "x", "y")
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        plot_curves({"a": ([1, 2],)}, tmp_path / "e.png", "x", "y")


def test_plots_do_not_touch_pyplot_or_global_backend(tmp_path):
    code = ("import sys; from reasonlab.eval.plots import plot_curves; "
            f"plot_curves({{'a': ([1, 2], [1, 2])}}, r'{tmp_path / 'p.png'}', 'x', 'y'); "
            "print('matplotlib.pyplot' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    assert _is_png(tmp_path / "p.png")

"""Every figure in the README's results tables is what the committed artifact of the last full
demo (``docs/demo_results.json``, a copy of ``runs/demo/results.json``) renders to."""
import json
from pathlib import Path

from reasonlab.demo import SECTIONS, render_sections

ROOT = Path(__file__).resolve().parents[1]


def test_readme_tables_are_the_committed_demo_results():
    results = json.loads((ROOT / "docs" / "demo_results.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    sections = render_sections(results)
    assert list(sections) == [title for _, title in SECTIONS]
    for title, text in sections.items():
        assert f"### {title}\n\n{text}" in readme, f"README section '{title}' differs from docs/demo_results.json"


def test_readme_pipeline_table_is_the_committed_pipeline_results():
    from reasonlab.pipeline import pipeline_table

    results = json.loads((ROOT / "docs" / "pipeline_results.json").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert pipeline_table(results) in readme, "README's R1 pipeline table differs from docs/pipeline_results.json"

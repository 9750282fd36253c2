from pathlib import Path

from plantstage.spec.docs import render


def test_spec_reference_is_current():
    doc = Path(__file__).resolve().parents[2] / "docs" / "spec.md"
    assert doc.read_text() == render() + "\n", "regenerate: python -m plantstage.spec.docs"

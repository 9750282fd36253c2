"""Evidence of a run: ``evidence.json`` (data) and ``report.html`` (rendered from a template)."""

from plantstage.evidence.bundle import write_evidence
from plantstage.evidence.report import render_report

__all__ = ["render_report", "write_evidence"]

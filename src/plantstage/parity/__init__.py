"""Parity: prove staging is a faithful replica of production before trusting a rehearsal.

Five collectors (topology, versions, schema, config, access) read each environment read-only;
the comparison separates what is the same, what the spec allows to differ (a scale-down, a
hostname, a simulated external system) and what is drift, with a severity from the
component's tier. ``parity`` is the library verb; ``plantstage parity`` prints it.
"""

from plantstage.parity._model import LAYERS, Finding, ParityReport
from plantstage.parity.verbs import (
    check_references,
    missing_files,
    parity,
    run_parity,
    write_report,
)

__all__ = ["LAYERS", "Finding", "ParityReport", "check_references", "missing_files", "parity",
           "run_parity", "write_report"]

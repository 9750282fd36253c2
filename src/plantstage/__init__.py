"""plantstage: release rehearsals for manufacturing software.

The verbs are library functions (``plantstage.verbs``); the CLI is a thin shell over them.
"""

__version__ = "0.1.0"

from plantstage.errors import PlantstageError  # noqa: E402
from plantstage.verbs import check, demo, rehearse, schema  # noqa: E402

__all__ = ["PlantstageError", "__version__", "check", "demo", "rehearse", "schema"]

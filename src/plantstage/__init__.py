"""plantstage: release rehearsals for manufacturing software.

The verbs are library functions (``plantstage.verbs``); the CLI is a thin shell over them.
Plugin authors use :mod:`plantstage.api`. The names below are loaded on first use, so that
importing a feature package (or ``plantstage.__version__``) does not pull in the verbs layer.
"""

from __future__ import annotations

from typing import Any

from plantstage._version import __version__

__all__ = ["PlantstageError", "__version__", "check", "demo", "rehearse", "schema"]


def __getattr__(name: str) -> Any:
    if name == "PlantstageError":
        from plantstage.errors import PlantstageError

        return PlantstageError
    if name in {"check", "demo", "rehearse", "schema"}:
        from plantstage import verbs

        return getattr(verbs, name)
    raise AttributeError(f"module 'plantstage' has no attribute {name!r}")

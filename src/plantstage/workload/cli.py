"""CLI verbs of plantstage.workload (registered on the main Typer app)."""

from plantstage.cli import app  # noqa: F401

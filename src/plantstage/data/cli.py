"""CLI verbs of plantstage.data (registered on the main Typer app)."""

from plantstage.cli import app  # noqa: F401

"""CLI verbs of plantstage.parity (registered on the main Typer app)."""

from plantstage.cli import app  # noqa: F401

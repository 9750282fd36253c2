"""CLI verbs of plantstage.twins (registered on the main Typer app)."""

from plantstage.cli import app  # noqa: F401

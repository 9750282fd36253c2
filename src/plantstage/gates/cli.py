"""CLI verbs of the readiness decision: gate, signoff, verify (registered on the main app)."""

from plantstage.cli import app  # noqa: F401

"""One root error type, translated to a one-line message and an exit code at the CLI edge.

Exit codes (documented in docs/cli.md):

* 0 — GO
* 1 — NO-GO (the rehearsal ran and found a reason not to ship)
* 2 — could not run: bad input, unreachable service, port in use …
* 3 — PENDING: steps and gates pass, but a signoff the spec requires this run is missing
* 4 — ``verify``: the bundle is intact, but no trusted key is pinned (integrity only, signer
  not trusted)
* 5 — INCONCLUSIVE: nothing failed, but a key gate could not decide (too few or too noisy
  samples, no data)
* 130 — interrupted (Ctrl-C or SIGTERM); the run ledger says ``interrupted``
"""

from __future__ import annotations

EXIT_GO = 0
EXIT_NO_GO = 1
EXIT_USAGE = 2
EXIT_PENDING = 3
EXIT_UNTRUSTED = 4
EXIT_INCONCLUSIVE = 5
EXIT_INTERRUPTED = 130


class PlantstageError(Exception):
    """Root of every error plantstage expects a user to act on.

    ``where`` names the place (``file:line``, a field path, ``table.column``, a URL);
    ``hint`` says what to do about it.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def one_line(self) -> str:
        parts = []
        if self.where:
            parts.append(f"{self.where}: ")
        parts.append(self.message)
        if self.hint:
            parts.append(f" (hint: {self.hint})")
        return "".join(parts)

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.one_line()


class SpecError(PlantstageError):
    """The spec file is missing, malformed or invalid."""


class SpecProblems(SpecError):
    """Several spec problems at once; ``plantstage check`` prints every one, one per line.

    Its own message and place are the first problem's, followed by how many more there are.
    """

    def __init__(self, problems: list[PlantstageError]):
        first = problems[0]
        more = len(problems) - 1
        message = first.message
        if more:
            message += f" (and {more} more problem{'s' if more > 1 else ''}; " \
                "`plantstage check` lists them all)"
        super().__init__(message, where=first.where, hint=first.hint)
        self.problems = list(problems)


class ArtifactError(PlantstageError):
    """A release artifact is missing or its digest does not match the spec."""


class EngineError(PlantstageError):
    """A database could not be reached or used."""


class ProductionWriteError(PlantstageError):
    """Something tried to write to a component bound in ``production``."""


class ProcessError(PlantstageError):
    """A managed process (app version) could not be started or failed its health check."""


class Interrupted(KeyboardInterrupt):
    """The run was interrupted by a signal (SIGTERM, or Ctrl-C).

    Deliberately *not* a :class:`PlantstageError` (nor an ``Exception``): like
    ``KeyboardInterrupt`` it passes through every ``except PlantstageError`` and
    ``except Exception``, so no step, collector or retry loop can turn an interrupt into a
    recorded failure and carry on. Only the runner (and the CLI edge) catch it.
    """

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.where = where
        self.hint = hint

    def one_line(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.one_line()

"""Rehearsals: the run context, the runner, the ledger, app processes, the router, steps."""

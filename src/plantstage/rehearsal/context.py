"""The run context: one hub object per rehearsal.

Steps read what they need from it and write results and signals into it; they never call each
other. Gates, the report and comparisons read only what it recorded (the ledger and signals).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plantstage.engines.base import EngineAdapter
from plantstage.errors import SpecError
from plantstage.rehearsal.ledger import Ledger
from plantstage.rehearsal.processes import ManagedProcess
from plantstage.rehearsal.router import Router
from plantstage.spec.loader import LoadedSpec
from plantstage.spec.models import Binding, ComponentKind, Release

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")


@dataclass
class RunContext:
    loaded: LoadedSpec
    release: Release
    current: Release
    run_id: str
    run_dir: Path
    ledger: Ledger
    staging_db_override: str | None = None
    signals: dict[str, float] = field(default_factory=dict)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)
    # Filled in by the steps as the run goes:
    staging_db: EngineAdapter | None = None
    production_db_url: str | None = None
    router: Router | None = None
    blue: ManagedProcess | None = None
    green: ManagedProcess | None = None
    backup_path: Path | None = None
    old_columns: dict[str, list[str]] | None = None
    backup_snapshot: dict[str, Any] | None = None
    failed_steps: list[str] = field(default_factory=list)
    gate_results: list = field(default_factory=list)
    #: Report sections filled by steps (parity, refresh, twins …), in step order. Each is
    #: rendered by ``evidence/templates/_<name>.html.j2`` when that template exists.
    sections: dict[str, Any] = field(default_factory=dict)
    progress: Any = None
    #: The run's signal store (plantstage.signals.SignalStore), made on first use; it writes
    #: through to run_dir/signals.sqlite and mirrors its values into ``signals`` and the ledger.
    store: Any = None
    #: Extra ``{name}`` placeholders steps make known (``{mqtt_url}``, ``{twin:wms}`` …).
    placeholders: dict[str, str] = field(default_factory=dict)
    #: Callables run (last first) when the run ends, whatever happened — e.g. stopping twins.
    cleanups: list[Any] = field(default_factory=list)
    #: The running twins (plantstage.twins.TwinSet) the twins step started, or None. Steps
    #: reach twins only through here (no module globals between steps).
    twin_set: Any = None

    @property
    def spec(self):
        return self.loaded.spec

    @property
    def spec_dir(self) -> Path:
        return self.loaded.base_dir

    # -- signals ----------------------------------------------------------------------
    def signal(self, name: str, value: float) -> None:
        self.signals[name] = float(value)
        self.ledger.record_signals({name: float(value)})
        self.signal_store().set_many({name: value}, notify=False)

    def signals_from(self, values: dict[str, float]) -> None:
        self.signals.update({k: float(v) for k, v in values.items()})
        self.ledger.record_signals({k: float(v) for k, v in values.items()})
        self.signal_store().set_many(values, notify=False)

    def signal_store(self):
        """The run's signal store; values written to it land in ``signals`` and the ledger."""
        if self.store is None:
            from plantstage.signals import SignalStore

            self.store = SignalStore(self.run_dir / "signals.sqlite")

            def mirror(values: dict[str, float]) -> None:
                self.signals.update(values)
                self.ledger.record_signals(values)  # one transaction per batch

            self.store.subscribe(mirror)
        return self.store

    # -- bindings ---------------------------------------------------------------------
    def binding(self, env: str, component: str) -> Binding | None:
        return self.spec.environments[env].bindings.get(component)

    def app_component(self) -> str:
        """The service the release deploys: the staging service bound with a command."""
        apps = [
            n for n in self.spec.components_of(ComponentKind.service)
            if (b := self.binding("staging", n)) is not None and b.command
        ]
        if len(apps) != 1:
            raise SpecError(
                f"expected exactly one staging service with a 'command', found {len(apps)}",
                where="environments.staging.bindings",
                hint="bind the app the release deploys with command: [...]",
            )
        return apps[0]

    def database_component(self) -> str:
        dbs = [n for n in self.spec.components_of(ComponentKind.database)
               if self.binding("staging", n) is not None]
        if len(dbs) != 1:
            raise SpecError(
                f"expected exactly one database bound in staging, found {len(dbs)}",
                where="environments.staging.bindings",
                hint="this version rehearses one application database",
            )
        return dbs[0]

    def expand(self, text: str, **extra: str) -> str:
        """Substitute ``{python}``, ``{spec_dir}``, ``{run_dir}``, ``{db:NAME}`` and extras."""

        def repl(m: re.Match) -> str:
            key, arg = m.group(1), m.group(2)
            if key == "db":
                if self.staging_db is None or arg != self.database_component():
                    raise SpecError(f"'{{db:{arg}}}' names no staging database",
                                    where="environments.staging", hint="use {db:COMPONENT}")
                return self.staging_db.app_url()
            if arg is not None and f"{key}:{arg}" in self.placeholders:
                return self.placeholders[f"{key}:{arg}"]
            values = {"python": sys.executable, "spec_dir": str(self.spec_dir),
                      "run_dir": str(self.run_dir), **self.placeholders, **extra}
            if key not in values:
                raise SpecError(f"unknown placeholder '{{{key}}}'", where=text,
                                hint="known: python, port, artifact, spec_dir, run_dir, db:NAME")
            return values[key]

        return _PLACEHOLDER.sub(repl, text)

    def resolve_url(self, url: str) -> str:
        """Expand placeholders and make relative SQLite paths relative to the spec."""
        url = self.expand(url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            rel = url[len("sqlite:///"):]
            url = "sqlite:///" + str((self.spec_dir / rel).resolve())
        return url

    def artifact_dir(self, release: Release) -> Path:
        return (self.spec_dir / release.artifact.path).resolve()

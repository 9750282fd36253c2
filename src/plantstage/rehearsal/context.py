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
from plantstage.engines.urls import db_url_part  # noqa: F401 - {db:NAME.part}
from plantstage.errors import SpecError
from plantstage.evidence.ledger import Ledger
from plantstage.rehearsal.processes import ManagedProcess
from plantstage.rehearsal.router import Router
from plantstage.spec.loader import LoadedSpec
from plantstage.spec.models import Binding, ComponentKind, Release

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")

#: ``{db:COMPONENT.PART}``: pieces of the staging database's URL, for apps that do not take a
#: SQLAlchemy URL (a JDBC app, a Go or Node app, a tool that wants host and port apart).
DB_URL_PARTS = ("url", "host", "port", "name", "user", "password", "path", "jdbc")


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
    #: The runner's records of the steps so far (a live list), and the one judgement of the
    #: run once the gates step made it (the runner reuses it; it never judges twice).
    step_records: list[dict[str, Any]] = field(default_factory=list)
    judgement: Any = None
    #: Each release's runtime (plantstage.runtime.Runtime) by release name, once resolved.
    runtimes: dict[str, Any] = field(default_factory=dict)

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

    # -- release runtimes ---------------------------------------------------------------
    def prepare_runtimes(self) -> dict[str, str]:
        """Resolve (build or reuse) the runtimes of the current release and the one under test.

        Called before any version starts, so a venv build never counts against a startup
        timeout; a failed build raises ``RuntimeBuildError`` (exit 2) naming pip's log.
        """
        from plantstage.runtime import resolve

        out: dict[str, str] = {}
        both = [self.current] + ([self.release] if self.release.name != self.current.name
                                 else [])
        todo = [r for r in both if r.name not in self.runtimes]
        for n, rel in enumerate(todo):
            idx = self.spec.releases.index(rel)
            lines: list[str] = []

            def echo(line: str, n: int = n, lines: list[str] = lines) -> None:
                lines.append(line)
                if self.progress:
                    self.progress(min(0.95, (n + min(len(lines), 20) / 20) / len(todo)))

            rt = resolve(self.spec_dir, rel, where=self._runtime_where(idx),
                         artifact_digest=self.digests.get(rel.name), echo=echo)
            self.runtimes[rel.name] = rt
        for rel in both:
            out[rel.name] = self.runtimes[rel.name].describe()
        if any(r.runtime is not None for r in (self.current, self.release)):
            self.sections["runtimes"] = out
        return out

    def _runtime_where(self, idx: int) -> str:
        where = getattr(self.loaded, "where", None)
        at = where("releases", idx, "runtime") if where else str(self.loaded.path)
        return f"{at}: releases[{idx}].runtime"

    def runtime_for(self, release: Release):
        """The release's runtime (plantstage.runtime.Runtime), prepared on first use."""
        if release.name not in self.runtimes and \
                release.name in (self.current.name, self.release.name):
            self.prepare_runtimes()
        if release.name not in self.runtimes:
            from plantstage.runtime import resolve

            idx = self.spec.releases.index(release)
            self.runtimes[release.name] = resolve(
                self.spec_dir, release, where=self._runtime_where(idx),
                artifact_digest=self.digests.get(release.name))
        return self.runtimes[release.name]

    def _release_at(self, artifact: str | None) -> Release | None:
        if artifact is None:
            return None
        for rel in self.spec.releases:
            if str(self.artifact_dir(rel)) == artifact:
                return rel
        return None

    # -- starting a version -----------------------------------------------------------
    def start_version(self, release: Release, color: str, *,
                      env: dict[str, str] | None = None, log_name: str | None = None
                      ) -> ManagedProcess:
        """Start one version of the app on a free port and wait until its probe is healthy.

        The command is the release's own launcher (``runtime.command``) when it has one, else
        the staging binding's; its runtime is prepared first, so building a venv never eats
        into ``startup_timeout``. ``env`` is added over the binding's (e.g. a feature flag
        turned off by the rollback drill); ``log_name`` names its log (default: ``color``).
        """
        from plantstage.rehearsal.processes import free_port
        from plantstage.spec.smoke import health_probe

        comp = self.app_component()
        b = self.binding("staging", comp)
        rt = self.runtime_for(release)
        port = free_port()
        art = str(self.artifact_dir(release))
        extra = {"port": str(port), "artifact": art}
        command = rt.command or b.command
        proc = ManagedProcess(
            f"{comp}@{release.version} ({color})",
            [self.expand(a, release=release, **extra) for a in command],
            cwd=self.expand(b.cwd, release=release, **extra) if b.cwd else art,
            env={**{k: self.expand(v, release=release, **extra) for k, v in b.env.items()},
                 **(env or {})},
            port=port, log_path=self.run_dir / "logs" / f"{log_name or color}.log",
            # A command probe runs with the app's placeholders, like the app's own command.
            health_path=health_probe(b.health).expanded(
                lambda a: self.expand(a, release=release, **extra)),
        )
        proc.start()
        proc.wait_healthy(b.startup_timeout)
        return proc

    def expand(self, text: str, *, release: Release | None = None, **extra: str) -> str:
        """Substitute ``{python}``, ``{spec_dir}``, ``{run_dir}``, ``{db:NAME}`` and extras.

        ``{python}`` is the interpreter of ``release``'s runtime (or of the release whose
        artifact ``extra["artifact"]`` names); without a runtime, plantstage's interpreter.
        """

        def repl(m: re.Match) -> str:
            key, arg = m.group(1), m.group(2)
            if key == "db":
                comp, _, part = (arg or "").rpartition(".")
                if part not in DB_URL_PARTS:
                    comp, part = arg or "", ""
                if self.staging_db is None or comp != self.database_component():
                    raise SpecError(f"'{{db:{arg}}}' names no staging database",
                                    where="environments.staging", hint="use {db:COMPONENT}")
                return db_url_part(self.staging_db.app_url(), part)
            if arg is not None and f"{key}:{arg}" in self.placeholders:
                return self.placeholders[f"{key}:{arg}"]
            if key == "python" and "python" not in extra:
                rel = release or self._release_at(extra.get("artifact"))
                python = self.runtime_for(rel).python if rel is not None else sys.executable
            else:
                python = sys.executable
            values = {"python": python, "spec_dir": str(self.spec_dir),
                      "run_dir": str(self.run_dir), **self.placeholders, **extra}
            if key not in values:
                raise SpecError(f"unknown placeholder '{{{key}}}'", where=text,
                                hint="known: python, port, artifact, spec_dir, run_dir, db:NAME, "
                                     "db:NAME.PART (url, host, port, name, user, password, "
                                     "path, jdbc)")
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

"""One environment as parity sees it: its bindings, resolved, and nothing it could write to.

Everything parity opens is opened read-only (``engines.connect_production``), staging included:
parity is an observer. The only thing it ever creates is a scratch database — a SQLite file in
its own scratch folder, or, when staging runs on a database server, a database of its own on
that server, dropped afterwards — when staging has no database yet and the schema must come
from the current release's migrations.

Each environment runs a release: production the spec's ``current``, staging the release under
test (in a rehearsal) or ``current``. ``{artifact}`` in a config path or a schema-version
command is that release's folder.
"""

from __future__ import annotations

import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from plantstage import engines
from plantstage.engines.urls import db_url_part
from plantstage.errors import PlantstageError
from plantstage.spec.loader import LoadedSpec
from plantstage.spec.models import Binding, ComponentKind, Release

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?::([A-Za-z0-9._-]+))?\}")


class Unresolved(Exception):
    """A binding names a placeholder that only a running rehearsal can fill in."""


@dataclass
class EnvView:
    """An environment of the spec, resolved for reading."""

    name: str
    loaded: LoadedSpec
    scratch: Path
    run_dir: Path | None = None
    #: A database URL given on the command line for this environment's database.
    db_override: str | None = None
    #: The release this environment runs (``None``: the spec's ``current``).
    release: Release | None = None
    #: Staging only, in a rehearsal: the URL of the database staging *will* run on. Its
    #: database does not exist yet, so the schema is built by the current release's
    #: migrations on that engine (a scratch database on that server, dropped afterwards).
    build_on: str | None = None
    #: Undo what the view created (scratch databases); run by ``run_parity``.
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    _scratch_db: engines.EngineAdapter | None = None
    _built: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    #: What several collectors read once per run (e.g. the broker observation).
    cache: dict[str, object] = field(default_factory=dict)

    @property
    def spec(self):
        return self.loaded.spec

    @property
    def spec_dir(self) -> Path:
        return self.loaded.base_dir

    @property
    def bindings(self) -> dict[str, Binding]:
        return self.spec.environments[self.name].bindings

    def binding(self, component: str) -> Binding | None:
        return self.bindings.get(component)

    def file(self, rel: str) -> Path:
        """A path the spec names for this environment; ``{artifact}`` is its release's folder.

        Raises :class:`Unresolved` for a placeholder only a running rehearsal can fill in.
        """
        return (self.spec_dir / self.expand(rel)).resolve()

    def env_release(self) -> Release:
        """The release this environment runs."""
        return self.release or self.current_release()

    # -- placeholders ---------------------------------------------------------------------
    def expand(self, text: str, **extra: str) -> str:
        values = {"python": sys.executable, "spec_dir": str(self.spec_dir),
                  "artifact": str(self.artifact_dir(self.env_release())), **extra}
        if self.run_dir is not None:
            values["run_dir"] = str(self.run_dir)

        def repl(m: re.Match) -> str:
            key, arg = m.group(1), m.group(2)
            if key == "db" and "db" in extra:
                # {db:NAME} is the URL; {db:NAME.url|host|port|name|user|password|path|jdbc}
                # a piece of it, as in a rehearsal (plantstage.engines.urls).
                part = arg.split(".", 1)[1] if arg and "." in arg else ""
                return db_url_part(extra["db"], part)
            if key not in values:
                raise Unresolved(m.group(0))
            return values[key]

        return _PLACEHOLDER.sub(repl, text)

    def resolve_url(self, url: str) -> str:
        url = self.expand(url)
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str((self.spec_dir / url[len("sqlite:///"):]).resolve())
        return url

    # -- the app and what it runs ---------------------------------------------------------
    def app_component(self) -> str | None:
        """The service the releases deploy: the one bound in staging with a command."""
        staging = self.spec.environments["staging"].bindings
        apps = [n for n in self.spec.components_of(ComponentKind.service)
                if (b := staging.get(n)) is not None and b.command]
        return apps[0] if len(apps) == 1 else None

    def current_release(self) -> Release:
        return self.spec.release(self.spec.current)

    def artifact_dir(self, release: Release) -> Path:
        return (self.spec_dir / release.artifact.path).resolve()

    # -- databases ------------------------------------------------------------------------
    def prepare(self) -> None:
        """In a rehearsal, create staging's scratch database on its server up front: a server
        that cannot be reached means the rehearsal cannot run (the error is raised), not a
        layer that is unknown."""
        on = self.build_on
        if self.name != "staging" or on is None or on.startswith("sqlite") or \
                self._scratch_db is not None:
            return
        self._scratch_db = self._create_scratch(on)

    def _create_scratch(self, on: str) -> engines.EngineAdapter:
        target = engines.adapter_for(on).for_run(f"parity_{secrets.token_hex(4)}")
        target.create()
        self.cleanups.append(target.drop)
        return target

    def database_url(self, component: str) -> tuple[str | None, str]:
        """(URL to read, how it was found) — or (None, why not)."""
        if component in self._built:
            return self._built[component]
        dbs = [n for n in self.spec.components_of(ComponentKind.database) if self.binding(n)]
        if self.db_override and dbs == [component]:
            return self.db_override, "given on the command line"
        b = self.binding(component)
        if b is None:
            return None, f"'{component}' is not bound in {self.name}"
        if self.build_on is not None and self.name == "staging" and dbs == [component]:
            out = self._build_from_migrations(component, "the rehearsal has not provisioned "
                                              "it yet", on=self.build_on)
            self._built[component] = out
            return out
        if b.url:
            try:
                url = self.resolve_url(b.url)
            except Unresolved as exc:
                url = None
                why = f"its URL needs {exc} (a rehearsal fills it in)"
            else:
                if not url.startswith("sqlite:") or _sqlite_exists(url) or self.name != "staging":
                    return url, f"environments.{self.name}.bindings.{component}.url"
                why = "its SQLite file does not exist yet"
        else:
            why = "it has no url"
        if self.name == "staging":
            out = self._build_from_migrations(component, why)
            self._built[component] = out
            return out
        return None, f"environments.{self.name}.bindings.{component}: {why}"

    def _build_from_migrations(self, component: str, why: str,
                               on: str | None = None) -> tuple[str | None, str]:
        """Staging has no database yet: the schema the current release's migrations produce,
        on staging's engine (``on``: a URL of the server staging will use; default SQLite)."""
        from plantstage.upgrade_steps import has_upgrade, run_upgrade_steps

        rel = self.current_release()
        app = self.app_component()
        if not has_upgrade(rel) or app is None:
            return None, f"staging's {component} does not exist ({why}) and the current " \
                         f"release declares no upgrade steps nor migration to build it from"
        self.scratch.mkdir(parents=True, exist_ok=True)
        engine_note = ""
        if on is not None and not on.startswith("sqlite"):
            try:
                target = self._scratch_db or self._create_scratch(on)
            except PlantstageError as exc:
                return None, f"cannot create a scratch database on staging's server: " \
                             f"{exc.one_line()}"
            url = target.app_url()
            engine_note = f" on {target.name}, the engine staging runs on"
        else:
            db = self.scratch / f"{component}-from-migrations.sqlite"
            for suffix in ("", "-wal", "-shm"):
                Path(str(db) + suffix).unlink(missing_ok=True)
            url = f"sqlite:///{db}"
        art = str(self.artifact_dir(rel))
        from plantstage.runtime import python_for

        # The release's own runtime ({python} of its venv), as the rehearsal runs it.
        extra = {"artifact": art, "port": "0", "db": url, "python": python_for(self.loaded, rel)}
        b = self.spec.environments["staging"].bindings[app]
        env = {}
        for k, v in b.env.items():
            try:
                env[k] = self.expand(v, **extra)
            except Unresolved:
                # Twins, brokers …: filled in by later rehearsal steps; a migration only
                # needs its database.
                continue
        try:
            # The same ordered steps (before, upgrade, after) the rehearsal migrates with.
            run_upgrade_steps(rel, db_url=url, artifact=Path(art), spec_dir=self.loaded.base_dir,
                              expand=lambda a: self.expand(a, **extra), env=env,
                              log_dir=self.scratch, allow_outside=self.spec.paths.allow_outside)
        except Unresolved as exc:
            return None, f"cannot run release {rel.name}'s upgrade steps: {exc}"
        except PlantstageError as exc:
            return None, exc.one_line()
        return url, f"schema built by release {rel.name}'s upgrade steps{engine_note} " \
                    f"(staging has no database yet: {why})"


def _sqlite_exists(url: str) -> bool:
    path = url[len("sqlite:///"):]
    return bool(path) and Path(path).exists()

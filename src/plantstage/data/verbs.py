"""``refresh``: the library verb behind ``plantstage refresh``."""

from __future__ import annotations

from pathlib import Path

from plantstage import engines
from plantstage.data._commands import expand, python, run_upgrade
from plantstage.data._key import resolve_key
from plantstage.data._refresh import refresh_database
from plantstage.data._result import Progress, RefreshResult
from plantstage.errors import SpecError
from plantstage.spec.loader import LoadedSpec, load_spec
from plantstage.spec.masking import SchemaSource
from plantstage.spec.models import ComponentKind
from plantstage.upgrade_steps import require_upgrade


def _database_component(loaded: LoadedSpec) -> str:
    spec = loaded.spec
    if spec.refresh and spec.refresh.database:
        return spec.refresh.database
    dbs = [n for n in spec.components_of(ComponentKind.database)
           if n in spec.environments["staging"].bindings]
    if len(dbs) != 1:
        raise SpecError(f"expected one database bound in staging, found {len(dbs)}",
                        where=f"{loaded.path}: refresh.database",
                        hint="name the database component to refresh")
    return dbs[0]


def _prepare(path: str | Path):
    """The loaded spec (which must have ``refresh:``), its database component and the
    placeholder values a refresh resolves URLs with."""
    loaded = load_spec(path)
    if loaded.spec.refresh is None:
        raise SpecError("the spec has no 'refresh' section", where=f"{loaded.path}: refresh",
                        hint="declare the masking rules (see docs/refresh.md)")
    comp = _database_component(loaded)
    run_dir = loaded.base_dir / ".plantstage" / "refresh"
    values = {"spec_dir": str(loaded.base_dir), "run_dir": str(run_dir), "python": python()}
    return loaded, comp, values


def _url(loaded: LoadedSpec, env_or_url: str, component: str, values: dict[str, str]) -> str:
    if "://" in env_or_url:
        return env_or_url
    if env_or_url not in loaded.spec.environments:
        raise SpecError(f"no environment '{env_or_url}'", where=f"{loaded.path}: environments",
                        hint="production, staging, or a database URL")
    b = loaded.spec.environments[env_or_url].bindings.get(component)
    if b is None or not b.url:
        raise SpecError(f"'{component}' has no url in {env_or_url}",
                        where=f"{loaded.path}: environments.{env_or_url}.bindings.{component}",
                        hint="give the database URL")
    url = expand(b.url, values)
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = "sqlite:///" + str((loaded.base_dir / url[len("sqlite:///"):]).resolve())
    return url


def refresh_plan(path: str | Path, *, source: str = "production") -> tuple[list, str]:
    """Classify every production column against the spec's rules without writing anything:
    the coverage rows and a suggested ``refresh.rules`` block for the columns that need one."""
    from plantstage.data._plan import coverage, suggested_rules

    loaded, comp, values = _prepare(path)
    spec = loaded.spec
    plans = coverage(_url(loaded, source, comp, values), spec.refresh, str(loaded.path))
    return plans, suggested_rules(plans, spec.refresh)


def refresh(
    path: str | Path, *, source: str = "production", target: str = "staging",
    allow_unclassified: bool = False, progress: Progress | None = None, echo=print,
) -> RefreshResult:
    """Refresh staging's database from production, masked and (optionally) subset.

    ``source`` and ``target`` are environment names of the spec or database URLs. The target
    database is rebuilt from scratch; production is only read. Raises a
    :class:`~plantstage.errors.PlantstageError` (exit 2) for bad input before anything is
    written, and when the result fails verification (leaks, foreign keys, row counts).
    """
    loaded, comp, values = _prepare(path)
    spec = loaded.spec
    src_url = _url(loaded, source, comp, values)
    dst_url = _url(loaded, target, comp, values)
    if dst_url.startswith("sqlite:"):
        Path(values["run_dir"]).mkdir(parents=True, exist_ok=True)
    key, key_source = resolve_key(spec.refresh.key, loaded.base_dir)
    if "generated" in key_source:
        echo(f"masking key: {key_source}")
    adapter = engines.adapter_for(dst_url)

    create_schema = None
    if spec.refresh.schema_from == SchemaSource.migrations:
        current = spec.release(spec.current)
        require_upgrade(current, f"{loaded.path}: ", "needed for refresh.schema: migrations")
        art = (loaded.base_dir / current.artifact.path).resolve()
        vals = {**values, "artifact": str(art), "port": "0", f"db:{comp}": adapter.app_url()}
        apps = [b for n in spec.components_of(ComponentKind.service)
                if (b := spec.environments["staging"].bindings.get(n)) and b.command]
        env = {"DATABASE_URL": adapter.app_url()}
        if len(apps) == 1:
            for k, v in apps[0].env.items():
                try:
                    env[k] = expand(v, vals)
                except SpecError:
                    pass  # a run-time value (a twin's URL …) the migration does not need

        def create_schema() -> None:
            run_upgrade(current, db_url=adapter.app_url(), artifact=art,
                        spec_dir=loaded.base_dir, values=vals, env=env,
                        log_dir=Path(values["run_dir"]) / "logs",
                        allow_outside=list(spec.paths.allow_outside))

    return refresh_database(src_url, adapter, spec.refresh, key=key, key_source=key_source,
                            where=str(loaded.path), create_schema=create_schema,
                            allow_unclassified=allow_unclassified, progress=progress)

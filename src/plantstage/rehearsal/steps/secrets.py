"""Near the end of a rehearsal: the audit trail (``audit:``) and the secrets scan (``secrets:``).

The scan reads the staging configuration files parity compares (and any the spec adds), the
run's logs (the app's output, migrations …) and the evidence gathered so far (report sections
and step results), looking for the spec's known secrets, private keys, credentials written out
and high-entropy tokens. A hit names file:line and the kind, never the secret; any hit is NO-GO
(signal ``secrets.found``, built-in key gate ``secrets``).
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from plantstage.rehearsal.steps import Step, StepFailed


def _secret_refs(value: Any, where: str = "") -> list[tuple[str, Any]]:
    """Every secret reference of the spec (a model with `env` and `file` fields)."""
    out: list[tuple[str, Any]] = []
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        if "env" in fields and "file" in fields and (getattr(value, "env", None)
                                                     or getattr(value, "file", None)):
            out.append((where or "spec", value))
        for name in fields:
            out += _secret_refs(getattr(value, name), f"{where}.{name}" if where else name)
    elif isinstance(value, dict):
        for k, v in value.items():
            out += _secret_refs(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            out += _secret_refs(v, f"{where}[{i}]")
    return out


def known_secrets(ctx) -> dict[str, str]:
    """value → label: the spec's secret references, the values of parity's secret keys in
    both environments' config files, and ``secrets.known``."""
    import os

    from plantstage.parity.collectors.config import (
        ConfigUnreadable,
        flatten,
        is_secret,
        load_source,
    )
    from plantstage.security.rbac import resolve

    spec = ctx.spec
    out: dict[str, str] = {}
    for where, ref in _secret_refs(spec):
        env, file = getattr(ref, "env", None), getattr(ref, "file", None)
        value = None
        if env:
            value = os.environ.get(env)
        if not value and file:
            p = resolve(file, ctx.spec_dir, {})
            try:
                value = p.read_text(encoding="utf-8").strip()
            except (OSError, UnicodeDecodeError):
                value = None
        if value:
            out.setdefault(value, where)
    patterns = spec.parity.secrets
    arts = {"production": ctx.artifact_dir(ctx.current), "staging": ctx.artifact_dir(ctx.release)}
    for src in spec.parity.config:
        for env_name, art in arts.items():
            path = resolve(getattr(src, env_name), ctx.spec_dir, {"artifact": str(art)})
            try:
                data = load_source(path, src.format)
            except (ConfigUnreadable, OSError):
                continue
            for key, value in flatten(data).items():
                if is_secret(key, patterns) and isinstance(value, (str, int)) and str(value):
                    out.setdefault(str(value), f"{src.name}:{key}")
    return out


def _files(patterns: list[str], ctx, names: dict[str, str]) -> list[Path]:
    from plantstage.security.rbac import resolve

    found: list[Path] = []
    for pat in patterns:
        p = resolve(pat, ctx.spec_dir, names)
        found += [Path(x) for x in sorted(glob.glob(str(p), recursive=True))]
    return [p for p in found if p.is_file()]


def _shown(path: Path, ctx) -> str:
    for base in (ctx.run_dir, ctx.spec_dir):
        try:
            return str(path.resolve().relative_to(Path(base).resolve()))
        except ValueError:
            continue
    return str(path)


class SecretsScan(Step):
    """No secret in staging configs, the run's logs or the evidence text."""

    name = "secrets"
    title = "Secrets scan"
    after_failure = True

    def run(self, ctx) -> dict[str, Any]:
        from plantstage.security.secrets import Scanner

        spec = ctx.spec.secrets
        if spec is None:
            ctx.sections["secrets"] = {"note": "no secrets scan declared"}
            return {"note": "no secrets scan declared"}
        names = {"artifact": str(ctx.artifact_dir(ctx.release)), "run_dir": str(ctx.run_dir)}
        known = known_secrets(ctx)
        for i, ref in enumerate(spec.known):
            from plantstage.security.rbac import read_secret

            v = read_secret(ref, ctx.spec_dir)
            if v:
                known.setdefault(v, f"secrets.known[{i}]")
        scanner = Scanner(known, min_length=spec.min_length, min_entropy=spec.min_entropy,
                          allow=spec.allow, secret_keys=ctx.spec.parity.secrets)
        configs = [src.staging for src in ctx.spec.parity.config]
        if ctx.spec.parity.roles is not None:
            configs.append(ctx.spec.parity.roles.staging)
        config_files = _files(configs + list(spec.configs), ctx, names)
        log_files = _files([str(ctx.run_dir / "logs" / "**" / "*")] + list(spec.logs), ctx,
                           names)
        hits = []
        for p in dict.fromkeys(config_files):
            hits += scanner.scan_file(p, _shown(p, ctx), config=True)
        for p in dict.fromkeys(log_files):
            hits += scanner.scan_file(p, _shown(p, ctx))
        evidence = {k: v for k, v in ctx.sections.items() if k != "secrets"}
        hits += scanner.scan_evidence(evidence, "evidence.sections")
        hits += scanner.scan_evidence(ctx.results, "evidence.steps")
        lines = sorted({h.line() for h in hits})
        ctx.signal("secrets.found", float(len(lines)))
        results = {"found": len(lines), "lines": lines[:200],
                   "scanned": {"configs": [_shown(p, ctx) for p in config_files],
                               "logs": [_shown(p, ctx) for p in log_files],
                               "evidence": sorted(evidence) + ["steps"]},
                   "known_secrets": len(known)}
        ctx.sections["secrets"] = results
        return results


class AuditTrail(Step):
    """The declared audit trail holds an entry per privileged action the workload did."""

    name = "audit"
    title = "Audit trail"
    after_failure = True

    def run(self, ctx) -> dict[str, Any]:
        spec = ctx.spec.audit
        if spec is None:
            ctx.sections["audit"] = {"note": "no audit trail declared"}
            return {"note": "no audit trail declared"}
        terms = [t.strip() for t in spec.expect_per.split("+") if t.strip()]
        missing_signals = [t for t in terms if t not in ctx.signals]
        expected = sum(float(ctx.signals.get(t, 0.0)) for t in terms)
        if spec.sql is not None:
            entries = count_sql(ctx, spec.sql)
            source = "sql"
        else:
            names = {"artifact": str(ctx.artifact_dir(ctx.release)), "run_dir": str(ctx.run_dir)}
            entries = count_log(_files([spec.log or ""], ctx, names), spec.pattern or "")
            source = spec.log or ""
        missing = max(0.0, expected - entries)
        ctx.signal("audit.entries", float(entries))
        ctx.signal("audit.expected", expected)
        ctx.signal("audit.missing", missing)
        results = {"source": source, "entries": entries, "expected": expected,
                   "missing": missing, "expect_per": terms,
                   "signals_not_recorded": missing_signals}
        ctx.sections["audit"] = results
        return results


def count_sql(ctx, sql: str) -> float:
    import sqlalchemy as sa

    if ctx.staging_db is None:
        raise StepFailed("audit: no staging database to read the audit trail from")
    engine = ctx.staging_db.readonly_engine()
    try:
        with engine.connect() as conn:
            value = conn.execute(sa.text(sql)).scalar()
    except Exception as exc:  # noqa: BLE001 - a bad query is the step's reason
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise StepFailed(f"audit: query failed: {first[:200]}") from None
    finally:
        engine.dispose()
    return float(value or 0)


def count_log(files: list[Path], pattern: str) -> float:
    rx = re.compile(pattern)
    n = 0
    for p in files:
        try:
            n += sum(1 for line in p.read_text(encoding="utf-8", errors="replace").splitlines()
                     if rx.search(line))
        except OSError:
            continue
    return float(n)

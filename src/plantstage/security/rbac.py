"""RBAC: the role → permission maps of two versions, their diff, and probes that act as each
role and check that what the map forbids is refused and what it allows is served."""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from plantstage.spec.rbac import ActAs, Rbac, Secret


class MapUnreadable(Exception):
    """A role map could not be found or read; the message is one line."""


def read_secret(ref: Secret, base_dir: Path) -> str | None:
    """A secret reference's value, or None when it is not set."""
    if ref.env is not None:
        return os.environ.get(ref.env) or None
    p = Path(ref.file or "")
    p = p if p.is_absolute() else base_dir / p
    try:
        return p.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def resolve(pattern: str, base_dir: Path, names: dict[str, str]) -> Path:
    """A spec path with ``{artifact}``, ``{run_dir}`` … filled in, relative to the spec."""
    for k, v in names.items():
        pattern = pattern.replace("{" + k + "}", v)
    p = Path(pattern)
    return p if p.is_absolute() else base_dir / p


def read_map(paths: str | list[str], key: str, base_dir: Path,
             artifact: Path) -> tuple[Path, dict[str, set[str]]]:
    """The first existing file of ``paths``, parsed, as ``role → {permission}``."""
    from plantstage.parity.collectors.config import ConfigUnreadable, load_source

    candidates = [paths] if isinstance(paths, str) else list(paths)
    tried = []
    for rel in candidates:
        path = resolve(rel, base_dir, {"artifact": str(artifact)})
        tried.append(str(path))
        if not path.is_file():
            continue
        try:
            data = load_source(path)
        except ConfigUnreadable as exc:
            raise MapUnreadable(str(exc)) from None
        node: Any = data
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            raise MapUnreadable(f"{path}: no '{key}' mapping of roles")
        out: dict[str, set[str]] = {}
        for role, perms in node.items():
            perms = perms if isinstance(perms, list) else ([] if perms is None else [perms])
            out[str(role)] = {str(p) for p in perms}
        return path, out
    raise MapUnreadable(f"no role map at {' or '.join(tried)}")


@dataclass
class PermissionDiff:
    gained: list[tuple[str, str]] = field(default_factory=list)
    lost: list[tuple[str, str]] = field(default_factory=list)
    approved: list[tuple[str, str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"gained": [{"role": r, "permission": p} for r, p in self.gained],
                "lost": [{"role": r, "permission": p} for r, p in self.lost],
                "approved": [{"role": r, "permission": p, "reason": why}
                             for r, p, why in self.approved]}


def diff(current: dict[str, set[str]], new: dict[str, set[str]],
         approved: list | None = None) -> PermissionDiff:
    """What each role gains and loses from current to new; approved gains are set apart."""
    ok = {(a.role, a.permission): a.reason for a in approved or []}
    out = PermissionDiff()
    for role in sorted(set(current) | set(new)):
        before, after = current.get(role, set()), new.get(role, set())
        for perm in sorted(after - before):
            if (role, perm) in ok:
                out.approved.append((role, perm, ok[(role, perm)]))
            else:
                out.gained.append((role, perm))
        out.lost += [(role, perm) for perm in sorted(before - after)]
    return out


def _fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, str):
        for k, v in names.items():
            value = value.replace("{" + k + "}", v)
        return value
    if isinstance(value, dict):
        return {_fill(k, names): _fill(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, names) for v in value]
    return value


def _dotted(doc: Any, path: str) -> Any:
    for part in path.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def identity(act_as: ActAs, role: str, client: httpx.Client, base_url: str,
             base_dir: Path) -> dict[str, str]:
    """The headers that make a request come from ``role``. Raises ValueError (one line) when
    the role's token or login cannot be had."""
    headers = _fill(dict(act_as.headers), {"role": role})
    if role in act_as.tokens:
        token = read_secret(act_as.tokens[role], base_dir)
        if token is None:
            raise ValueError(f"no bearer token for role {role} (its secret reference is unset)")
        headers["Authorization"] = f"Bearer {token}"
    if act_as.login is not None:
        lg = act_as.login
        password = read_secret(lg.passwords[role], base_dir) if role in lg.passwords else ""
        body = _fill(lg.json_body, {"role": role, "password": password or ""})
        r = client.request(lg.method, base_url.rstrip("/") + _fill(lg.path, {"role": role}),
                           json=body)
        try:
            token = _dotted(r.json(), lg.token)
        except ValueError:
            token = None
        if r.status_code >= 400 or not isinstance(token, str) or not token:
            raise ValueError(f"login as {role} failed: HTTP {r.status_code}, no '{lg.token}'")
        headers["Authorization"] = f"Bearer {token}"
    return headers


@dataclass
class Probe:
    role: str
    permission: str
    allowed: bool
    request: str
    status: int | None
    outcome: str  # "ok", "violation", "unenforced", "error"
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "permission": self.permission, "allowed": self.allowed,
                "request": self.request, "status": self.status, "outcome": self.outcome,
                "detail": self.detail}


def probe(spec: Rbac, roles: dict[str, set[str]], base_url: str, tenant: str, base_dir: Path,
          transport: httpx.BaseTransport | None = None) -> list[Probe]:
    """Try every declared permission's requests as every role of ``roles``."""
    out: list[Probe] = []
    refused = set(spec.refused)
    with httpx.Client(timeout=spec.timeout, transport=transport) as client:
        for role in sorted(roles):
            try:
                who = identity(spec.act_as, role, client, base_url, base_dir)
            except (ValueError, httpx.HTTPError) as exc:
                for perm in sorted(spec.permissions):
                    out.append(Probe(role, perm, perm in roles[role], "-", None, "error",
                                     str(exc)[:200]))
                continue
            for perm, requests in sorted(spec.permissions.items()):
                allowed = perm in roles[role]
                for req in requests:
                    names = {"tenant": tenant, "role": role,
                             "ref": f"rbac-{uuid.uuid4().hex[:12]}"}
                    path = _fill(req.path, names)
                    what = f"{req.method} {path}"
                    headers = {**_fill(req.headers, names), **who}
                    try:
                        r = client.request(req.method, base_url.rstrip("/") + path,
                                           json=_fill(req.json_body, names), headers=headers)
                    except httpx.HTTPError as exc:
                        out.append(Probe(role, perm, allowed, what, None, "error",
                                         f"no answer ({type(exc).__name__})"))
                        continue
                    was_refused = r.status_code in refused
                    if allowed and was_refused:
                        outcome, detail = "violation", "allowed by the map but refused"
                    elif not allowed and not was_refused:
                        outcome = "violation" if spec.enforced else "unenforced"
                        detail = "forbidden by the map but served"
                    else:
                        outcome, detail = "ok", ""
                    out.append(Probe(role, perm, allowed, what, r.status_code, outcome, detail))
    return out


def summary(probes: list[Probe]) -> str:
    return json.dumps({k: sum(p.outcome == k for p in probes)
                       for k in ("ok", "violation", "unenforced", "error")})

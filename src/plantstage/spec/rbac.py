"""Spec models for security checks: RBAC probes (``rbac:``), the secrets scan (``secrets:``)
and the audit trail (``audit:``).

Nothing here knows an app: how to act as a role, which requests exercise which permission and
where the app keeps its role → permission map are all declared by the spec (docs/security.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Secret(_Model):
    """A secret reference (same shape as the spec's other secret references)."""

    env: str | None = Field(None, description="Name of an environment variable holding it.")
    file: str | None = Field(None, description="Path of a file holding it (relative to the spec).")

    @model_validator(mode="after")
    def _one_source(self) -> Secret:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of 'env' or 'file'")
        return self


class ProbeRequest(_Model):
    """One request that exercises a permission. ``{tenant}``, ``{role}`` and ``{ref}`` (unique
    per request) are substituted in the path, body and headers."""

    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "GET"
    path: str = Field(description="Path on the app, e.g. `/orders/{tenant}`.")
    json_body: Any = Field(None, alias="json", description="JSON body, if any.")
    headers: dict[str, str] = Field(default_factory=dict)


class Login(_Model):
    """Log in as a role once and send the token it returns as a bearer token."""

    method: Literal["POST", "GET"] = "POST"
    path: str = Field(description="The login endpoint.")
    json_body: Any = Field(None, alias="json", description="Body; `{role}` and `{password}` "
                           "(the role's secret from `passwords`) are substituted.")
    passwords: dict[str, Secret] = Field(default_factory=dict,
                                         description="Role → secret reference.")
    token: str = Field("access_token", description="Dotted field of the token in the answer.")


class ActAs(_Model):
    """How a request is made as a role: headers (``{role}`` substituted), a bearer token per
    role from a secret reference, or a login request. Several may be combined."""

    headers: dict[str, str] = Field(default_factory=dict,
                                    description="e.g. `{X-Role: \"{role}\"}`.")
    tokens: dict[str, Secret] = Field(default_factory=dict,
                                      description="Role → secret holding its bearer token.")
    login: Login | None = None


class RoleMapFiles(_Model):
    """The app's role → permission map, as the current and as the new version has it.

    Each is a path or a list of paths (the first that exists is used), relative to the spec;
    ``{artifact}`` is that version's release folder, so a map shipped inside a release is the
    one compared. Without this, ``parity.roles`` (production for current, staging for new).
    """

    current: str | list[str]
    new: str | list[str]
    key: str = Field("roles", description="Dotted key of the map `role: [permission, …]`.")


class ApprovedChange(_Model):
    role: str
    permission: str
    reason: str = Field(description="Why this role may gain it (shown in the report).")


class Rbac(_Model):
    """RBAC probes: every (role, permission) pair tried on the new version, and the permission
    diff between the current and the new version's maps (docs/security.md)."""

    act_as: ActAs = Field(default_factory=ActAs, alias="as",
                          description="How to act as a role.")
    roles: RoleMapFiles | None = Field(None, description="Where the maps are (default: "
                                       "parity.roles).")
    permissions: dict[str, list[ProbeRequest]] = Field(
        default_factory=dict, description="Permission → the requests that exercise it.")
    tenant: str | None = Field(None, description="Tenant for `{tenant}` (default: the smoke "
                               "checks' tenant).")
    refused: list[int] = Field(default_factory=lambda: [401, 403],
                               description="Statuses that mean refused.")
    enforced: bool = Field(
        True, description="false: the app does not enforce roles yet — a forbidden request "
        "it serves is reported (rbac.unenforced) but not a violation; the permission diff is "
        "still gated.")
    approved: list[ApprovedChange] = Field(
        default_factory=list, description="Permissions a role may gain in this release.")
    timeout: float = Field(10.0, gt=0, description="Seconds per request.")


class SecretsScan(_Model):
    """Scan staging configs, the app's logs and the run's evidence text for secrets."""

    known: list[Secret] = Field(
        default_factory=list, description="More secret references whose values must never "
        "appear (the spec's own references and parity.secrets keys' values are always known).")
    configs: list[str] = Field(
        default_factory=list, description="More config files to scan (globs, relative to the "
        "spec; `{artifact}` is the new release's folder). parity's staging files always are.")
    logs: list[str] = Field(
        default_factory=list, description="More log files (globs; `{run_dir}`, `{artifact}`). "
        "The run's own logs/ always are.")
    min_entropy: float = Field(4.0, gt=0, description="Bits per character for a token of "
                               "mixed case and digits to count as a secret.")
    min_length: int = Field(20, ge=8, description="Shortest token judged by entropy.")
    allow: list[str] = Field(default_factory=list,
                             description="Regexes of values that are not secrets.")

    @field_validator("allow")
    @classmethod
    def _regex(cls, v: list[str]) -> list[str]:
        import re

        for p in v:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"bad regex {p!r}: {exc}") from None
        return v


class Audit(_Model):
    """A declared audit trail must hold an entry for each privileged action the workload did."""

    sql: str | None = Field(None, description="Counts audit entries on the staging database: "
                            "the first value of the first row (`:since` is the run's start).")
    log: str | None = Field(None, description="Or an audit log file (glob; `{run_dir}`, "
                            "`{artifact}`) …")
    pattern: str | None = Field(None, description="… and the regex of an entry's line.")
    expect_per: str = Field(description="A signal (or CEL-free sum `a + b`) counting the "
                            "privileged actions, e.g. `workload.candidate.business.adjusted`.")
    database: str | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Audit:
        if (self.sql is None) == (self.log is None):
            raise ValueError("give exactly one of 'sql' or 'log'")
        if self.log is not None and not self.pattern:
            raise ValueError("a 'log' audit needs 'pattern'")
        return self


def security_gates(spec, covered: set[str]) -> list:
    """Built-in key gates for the declared security checks, unless a gate of the spec already
    judges their signals: ``rbac`` (no violation, no unapproved gain), ``secrets`` (none
    found), ``audit`` (no privileged action without its audit entry)."""
    from plantstage.spec.gates import Gate

    out = []
    if getattr(spec, "rbac", None) is not None and not {"rbac.violations",
                                                          "rbac.gained"} & covered:
        out.append(Gate(
            name="rbac", value='signal("rbac.violations") + signal("rbac.gained")',
            pass_='signal("rbac.violations") == 0.0 && signal("rbac.gained") == 0.0',
            threshold="0 probe violations, 0 unapproved permission gains",
            cause="RBAC: a role may do what its map forbids, is refused what it allows, or "
            "gained a permission nobody approved"))
    if getattr(spec, "secrets", None) is not None and "secrets.found" not in covered:
        out.append(Gate(name="secrets", signal="secrets.found", max=0,
                        cause="a secret was found in a staging config, a log or the evidence"))
    if getattr(spec, "audit", None) is not None and "audit.missing" not in covered:
        out.append(Gate(name="audit-trail", signal="audit.missing", max=0,
                        cause="privileged actions without an audit entry"))
    tc = getattr(spec, "tenant_config", None)
    if tc is not None and tc.blocks and "tenant_config.drift" not in covered:
        out.append(Gate(name="tenant-config", signal="tenant_config.drift", max=0,
                        cause="a tenant's configuration differs between production and staging"))
    return out

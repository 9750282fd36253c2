"""Spec models for smoke checks, health/version probes and release runtimes.

Smoke checks are the app's own business transactions, declared in the spec (``smoke:``) and run
against the version under test after the traffic switch: an HTTP request with the expected
status and JSON fields, a SQL assertion on the staging database, or a plugin flow run once.
plantstage itself knows no endpoint, table or flow of any app.

The health probe is declared on the app's binding (``health:``): how to ask a version whether it
is up (HTTP, a TCP port or a command), and where it says which version it is (its answer, or the
release: a file or a command). The short form ``health: /health`` still works: ``GET``, expect
200, no version read.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: Placeholders smoke checks may use, in request paths, bodies, headers and expected values.
SMOKE_PLACEHOLDERS = ("release.name", "release.version", "current.name", "current.version",
                      "tenant", "ref")
_SMOKE_PH = re.compile(r"\{([a-z_]+(?:\.[a-z_]+)?)\}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


def _placeholders_known(value: Any, where: str) -> None:
    """Raise if a string inside ``value`` names a placeholder smoke checks do not know."""
    if isinstance(value, str):
        for m in _SMOKE_PH.finditer(value):
            if m.group(1) not in SMOKE_PLACEHOLDERS:
                raise ValueError(f"{where}: unknown placeholder '{{{m.group(1)}}}' (known: "
                                 + ", ".join("{" + p + "}" for p in SMOKE_PLACEHOLDERS) + ")")
    elif isinstance(value, dict):
        for k, v in value.items():
            _placeholders_known(k, where)
            _placeholders_known(v, where)
    elif isinstance(value, list):
        for v in value:
            _placeholders_known(v, where)


class Approx(_Model):
    """A number compared as a decimal, within a tolerance: ``{approx: 3, tolerance: 0.001}``."""

    approx: Decimal = Field(description="Expected value (parsed as a decimal, never a float).")
    tolerance: Decimal = Field(Decimal(0), ge=0, description="Allowed absolute difference.")


class SmokeRequest(_Model):
    """One HTTP request to the version under test (through the router, as clients see it)."""

    method: str = Field("GET", description="HTTP method.")
    path: str = Field(description="Path on the app, e.g. `/status` or `/orders/{tenant}`.")
    json_body: Any = Field(None, alias="json", description="JSON body to send.")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra request headers.")

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()


class SmokeExpect(_Model):
    """What a check must find. HTTP: ``status`` and ``json`` fields; SQL: ``rows`` or ``value``.

    ``json`` maps a dotted path (``a.b``, ``items.0.qty``) to the expected value; numbers are
    compared as decimals (``3`` equals ``3.000`` and ``"3.000"``), and ``{approx: X,
    tolerance: T}`` allows a difference. String values may use placeholders such as
    ``{release.version}``.
    """

    status: int | list[int] | None = Field(
        None, description="HTTP: expected status (or list of accepted ones). Default 200.")
    json_fields: dict[str, Any] = Field(
        default_factory=dict, alias="json",
        description="HTTP: dotted path → expected value or {approx, tolerance}.")
    rows: int | None = Field(None, ge=0, description="SQL: expected number of rows.")
    value: Any = Field(None, description="SQL: expected first column of the first row "
                       "(a value or {approx, tolerance}).")


class SmokeCheck(_Model):
    """A smoke or business-transaction check, run once after the traffic switch.

    Exactly one of ``http``, ``sql`` or ``flow``. Placeholders: ``{release.version}``,
    ``{release.name}``, ``{current.version}``, ``{current.name}``, ``{tenant}`` (the check's
    tenant) and ``{ref}`` (unique per check run). SQL uses bind parameters instead:
    ``:tenant``, ``:release_version``, ``:release_name``, ``:ref``.
    """

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", description="Check name.")
    description: str = ""
    http: SmokeRequest | None = Field(None, description="An HTTP request to the new version.")
    sql: str | None = Field(None, description="A read-only query on the staging database.")
    database: str | None = Field(
        None, description="SQL: the database component (default: the one staging binds).")
    flow: str | None = Field(
        None, description="A plugin flow (registered name or module:function), run once.")
    params: dict[str, Any] = Field(default_factory=dict, description="Flow: its params.")
    tenant: str | None = Field(
        None, description="Tenant code for {tenant} and flows (default: the first workload "
        "tenant, else the first estate tenant).")
    expect: SmokeExpect = Field(default_factory=SmokeExpect,
                                description="HTTP/SQL: what the answer must be.")
    timeout: float = Field(15.0, gt=0, description="Seconds for the request, query or flow.")

    @model_validator(mode="after")
    def _one_kind(self) -> SmokeCheck:
        kinds = [k for k in ("http", "sql", "flow") if getattr(self, k) is not None]
        if len(kinds) != 1:
            raise ValueError("give exactly one of 'http', 'sql' or 'flow'")
        e = self.expect
        if self.http is not None:
            if e.rows is not None or e.value is not None:
                raise ValueError("an http check expects 'status' and 'json', not rows/value")
            _placeholders_known(self.http.path, "http.path")
            _placeholders_known(self.http.json_body, "http.json")
            _placeholders_known(self.http.headers, "http.headers")
            _placeholders_known(e.json_fields, "expect.json")
            for path, want in e.json_fields.items():
                if isinstance(want, dict) and "approx" in want:
                    Approx.model_validate(want)
                elif not path:
                    raise ValueError("expect.json: a field path may not be empty")
        if self.sql is not None:
            if e.status is not None or e.json_fields:
                raise ValueError("a sql check expects 'rows' or 'value', not status/json")
            if (e.rows is None) == (e.value is None):
                raise ValueError("a sql check expects exactly one of 'rows' or 'value'")
            if isinstance(e.value, dict):
                Approx.model_validate(e.value)
            _placeholders_known(e.value, "expect.value")
        if self.flow is not None and (e.status is not None or e.json_fields or
                                      e.rows is not None or e.value is not None):
            raise ValueError("a flow check has no 'expect': the flow raises FlowError to fail")
        if self.sql is None and self.database is not None:
            raise ValueError("'database' applies to sql checks only")
        return self

    @property
    def kind(self) -> str:
        return "http" if self.http else "sql" if self.sql else "flow"


class VersionSource(_Model):
    """Where a version says which version it is: exactly one of ``json`` (a dotted field path in
    the health answer's JSON body, e.g. ``result.version`` for JSON-RPC), ``header`` (a response
    header), ``regex`` (on the body; the first group, else the whole match), ``file`` (a file in
    the release's folder, its first line) or ``command`` (a command run in the release's folder,
    its output's first line, or what ``regex`` finds in it) — the last two for apps that do not
    report a version. With a ``command`` health probe, ``json`` and ``regex`` read the probe
    command's output."""

    json_field: str | None = Field(None, alias="json", description="Dotted JSON field path.")
    header: str | None = Field(None, description="Response header name.")
    regex: str | None = Field(None, description="Regular expression on the body (or on the "
                              "output of a command probe or of `command`).")
    file: str | None = Field(None, description="File in the release's folder (first line).")
    command: list[str] | None = Field(
        None, min_length=1, description="Command run in the release's folder with the app's "
        "staging environment and placeholders; its output's first line (or `regex` on it).")

    @model_validator(mode="after")
    def _one(self) -> VersionSource:
        given = [k for k in ("json_field", "header", "regex", "file", "command")
                 if getattr(self, k) is not None]
        if self.command is not None and given == ["regex", "command"]:
            given = ["command"]  # the regex picks the version out of the command's output
        if len(given) != 1:
            raise ValueError("give exactly one of 'json', 'header', 'regex', 'file' or "
                             "'command' (a command may add a 'regex'; or version: none)")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"regex does not compile: {exc}") from None
        return self

    @property
    def from_release(self) -> bool:
        """True when the version is read from the release (its folder), not from an answer."""
        return self.file is not None or self.command is not None

    def from_text(self, text: str) -> tuple[str | None, str]:
        """(version, why none) from a command's output: the regex's match, else the first
        non-empty line."""
        if self.regex is not None:
            m = re.search(self.regex, text)
            if not m:
                return None, f"output does not match /{self.regex}/"
            return (m.group(1) if m.groups() else m.group(0)), ""
        lines = [x.strip() for x in text.splitlines() if x.strip()]
        return (lines[0], "") if lines else (None, "no output")


#: Fields of an HTTP probe, unused (and refused when given) by a ``command`` probe.
_HTTP_FIELDS = ("method", "path", "json_body", "headers", "status")


class HealthProbe(_Model):
    """How to ask one version of the app whether it is up, and which version it is.

    Three kinds: HTTP (the default: any method, a JSON body — JSON-RPC included — headers and
    the statuses meaning healthy), ``tcp: true`` (the port accepts a connection and keeps it),
    or ``command`` (healthy when the command exits 0 within ``timeout``; it runs in the
    release's folder with the app's staging environment and placeholders such as ``{port}``
    and ``{python}``). ``health: /health`` is short for ``{path: /health}`` (GET, expect 200,
    version not read). Declare ``version`` to have the deploy step check that the new process
    is the release's version.

    When the body is JSON-RPC (``json`` holds a ``jsonrpc`` member), an answer carrying a
    JSON-RPC ``error`` object is unhealthy whatever its HTTP status.
    """

    method: str = Field("GET", description="HTTP method.")
    path: str = Field("/health", description="Path on the app.")
    json_body: Any = Field(None, alias="json", description="JSON body to send (POST, "
                           "JSON-RPC …).")
    headers: dict[str, str] = Field(default_factory=dict, description="Request headers.")
    status: int | list[int] = Field(200, description="Status (or list) meaning healthy.")
    tcp: bool = Field(False, description="Not HTTP: healthy when the port accepts a "
                      "connection and does not close it at once (method, path, json, headers "
                      "and status are unused).")
    command: list[str] | None = Field(
        None, min_length=1, description="Not HTTP: healthy when this command exits 0 within "
        "`timeout`; run in the release's folder with the app's staging environment and "
        "placeholders ({port}, {python}, {artifact}, {db:…}). Through the router (the switch "
        "step) only the port is checked: docs/bring-your-own-app.md.")
    timeout: float = Field(10.0, gt=0, description="Seconds a command probe (or a version "
                           "command) may take.")
    version: VersionSource | Literal["none"] = Field(
        "none", description="Where the version is named: {json: PATH}, {header: NAME}, "
        "{regex: RE} in the answer (a command probe: in its output), {file: PATH} or "
        "{command: [...]} in the release's folder, or none.")

    @field_validator("method")
    @classmethod
    def _upper(cls, v: str) -> str:
        return v.upper()

    @model_validator(mode="after")
    def _kind_fits(self) -> HealthProbe:
        if self.tcp and self.command is not None:
            raise ValueError("give one kind: 'tcp: true' or 'command', not both")
        if self.command is not None:
            given = [("json" if f == "json_body" else f) for f in _HTTP_FIELDS
                     if f in self.model_fields_set]
            if given:
                raise ValueError(f"a command probe sends no HTTP request: drop {', '.join(given)}")
        src = self.version
        if src != "none" and not src.from_release:
            if self.tcp:
                raise ValueError("a TCP probe reads no answer: take the version from the "
                                 "release (version: {file: …} or {command: […]})")
            if self.command is not None and src.header is not None:
                raise ValueError("a command probe has no headers: read the version from its "
                                 "output (version: {regex: …} or {json: …})")
        return self

    @property
    def kind(self) -> Literal["http", "tcp", "command"]:
        return "tcp" if self.tcp else "command" if self.command is not None else "http"

    @property
    def version_in_answer(self) -> bool:
        """True when the version is read from the probe's HTTP answer (so also through a
        router). A command probe's output and a release's file or command are not."""
        return self.kind == "http" and self.version != "none" and not self.version.from_release

    @property
    def is_jsonrpc(self) -> bool:
        body = self.json_body
        items = body if isinstance(body, list) else [body]
        return bool(items) and all(isinstance(b, dict) and "jsonrpc" in b for b in items)

    def expanded(self, expand: Any) -> HealthProbe:
        """A copy whose command (and version command) has its placeholders filled in by
        ``expand`` (a function str → str), as the app's own command is."""
        update: dict[str, Any] = {}
        if self.command is not None:
            update["command"] = [expand(a) for a in self.command]
        if self.version != "none" and self.version.command is not None:
            update["version"] = self.version.model_copy(
                update={"command": [expand(a) for a in self.version.command]})
        return self.model_copy(update=update) if update else self

    def read_file_version(self, folder: Any) -> tuple[str | None, str]:
        """(version, why none) from ``version.file`` in ``folder`` (the release's folder)."""
        from pathlib import Path

        if self.version == "none" or self.version.file is None:
            return None, ""
        path = Path(folder or ".") / self.version.file
        try:
            first = path.read_text(encoding="utf-8").strip().splitlines()
        except OSError as exc:
            return None, f"cannot read {path}: {exc.strerror}"
        return (first[0].strip(), "") if first else (None, f"{path} is empty")

    def healthy_status(self, status: int) -> bool:
        ok = self.status if isinstance(self.status, list) else [self.status]
        return status in ok

    def answer_error(self, text: str) -> str:
        """Why an answer with a healthy status is not healthy after all ("" when it is): a
        JSON-RPC probe's answer that is not JSON-RPC, or that carries an ``error`` object."""
        if not self.is_jsonrpc:
            return ""
        import json

        try:
            body = json.loads(text)
        except ValueError:
            return "the answer is not JSON-RPC (not JSON)"
        for item in body if isinstance(body, list) else [body]:
            if not isinstance(item, dict) or not ("result" in item or "error" in item):
                return "the answer is not JSON-RPC (no result or error)"
            err = item.get("error")
            if err is not None:
                if isinstance(err, dict):
                    return (f"JSON-RPC error {err.get('code', '?')}: "
                            f"{str(err.get('message', ''))[:160]}").rstrip(": ")
                return f"JSON-RPC error: {str(err)[:160]}"
        return ""

    def judge(self, status: int, headers: dict[str, str] | Any,
              text: str) -> tuple[bool, str | None, str]:
        """(healthy, version, why) of one HTTP answer: its status, a JSON-RPC error, then the
        version where declared."""
        if not self.healthy_status(status):
            return False, None, f"HTTP {status}"
        error = self.answer_error(text)
        if error:
            return False, None, error
        version, why = self.read_version(headers, text)
        return True, version, why

    def read_version(self, headers: dict[str, str] | Any, text: str) -> tuple[str | None, str]:
        """(version or None, why none) from an answer's headers and body text (a command
        probe: its output, no headers)."""
        src = self.version
        if src == "none":
            return None, "not declared (health.version: none)"
        if src.file is not None:
            return None, f"read from {src.file}, not from the answer"
        if src.command is not None:
            return None, "read by a command in the release's folder, not from the answer"
        if src.header is not None:
            v = headers.get(src.header)
            return (v, "") if v else (None, f"no header {src.header}")
        if src.regex is not None:
            m = re.search(src.regex, text)
            if not m:
                return None, f"body does not match /{src.regex}/"
            return (m.group(1) if m.groups() else m.group(0)), ""
        import json

        try:
            body = json.loads(text)
        except ValueError:
            return None, "body is not JSON"
        found, value = dotted(body, src.json_field or "")
        if not found or value is None:
            return None, f"no field {src.json_field} in the body"
        return str(value), ""


def dotted(body: Any, path: str) -> tuple[bool, Any]:
    """Follow ``a.b.0.c`` into parsed JSON; (False, None) when a part is missing."""
    cur = body
    for part in path.split(".") if path else []:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and re.fullmatch(r"-?\d+", part) and \
                -len(cur) <= int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def health_probe(value: str | HealthProbe) -> HealthProbe:
    """The binding's ``health`` as a probe (the string form is a path)."""
    return value if isinstance(value, HealthProbe) else HealthProbe(path=value)

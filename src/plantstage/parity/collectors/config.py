"""Configuration: version-controlled files (YAML, JSON, INI, .env) compared key by key.

Files are parsed with their format's own parser (PyYAML, json, configparser, python-dotenv)
and flattened to dotted keys. Secret values never leave this module: a key that matches one of
``parity.secrets`` (and the password inside any URL) is replaced by an HMAC digest under a key
that lives only as long as the process, so production and staging can be compared
("same secret" / "different secret") but the digest cannot be looked up or brute-forced
from the report.
"""

from __future__ import annotations

import configparser
import fnmatch
import hashlib
import hmac
import io
import json
import secrets
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from dotenv.parser import parse_stream

from plantstage.errors import SpecError
from plantstage.parity._environment import EnvView, Unresolved
from plantstage.parity._model import LayerFacts

_RUN_KEY = secrets.token_bytes(32)
_FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".ini": "ini", ".cfg": "ini",
            ".conf": "ini", ".env": "env"}


class ConfigUnreadable(Exception):
    """A config file is missing or does not parse; the message names file:line."""


def format_of(path: Path, declared: str | None) -> str:
    if declared:
        return declared
    if path.name == ".env" or path.name.endswith(".env"):
        return "env"
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigUnreadable(f"{path}: unknown config format (give 'format:')")
    return fmt


def load_source(path: Path, declared: str | None = None) -> Any:
    """Parse one config file into plain data; raise ConfigUnreadable naming file:line."""
    fmt = format_of(path, declared)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigUnreadable(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigUnreadable(f"{path}: not UTF-8 text (byte {exc.start})") from None
    if fmt == "yaml":
        # The spec's bounded reader: an alias bomb in a config file fails at once.
        from plantstage.spec.loader import load_yaml

        try:
            return load_yaml(text, path) or {}
        except SpecError as exc:
            raise ConfigUnreadable(f"{exc.where}: does not parse as YAML ({exc.message})"
                                   ) from None
    if fmt == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigUnreadable(f"{path}:{exc.lineno}: does not parse as JSON "
                                   f"({exc.msg})") from None
    if fmt == "ini":
        cp = configparser.ConfigParser(interpolation=None)
        try:
            cp.read_string(text, source=str(path))
        except configparser.Error as exc:
            line = getattr(exc, "lineno", None)
            first = str(exc).splitlines()[0]
            if isinstance(exc, configparser.ParsingError) and exc.errors:
                line, bad = exc.errors[0][0], exc.errors[0][1]
                first = f"cannot read line {bad}"
            raise ConfigUnreadable(f"{path}{f':{line}' if line else ''}: does not parse as "
                                   f"INI ({first})") from None
        data: dict[str, Any] = dict(cp.defaults())
        data.update({s: dict(cp.items(s, raw=True)) for s in cp.sections()})
        return data
    # .env: python-dotenv's parser marks the lines it could not read instead of raising.
    data = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            raise ConfigUnreadable(f"{path}:{binding.original.line}: does not parse as .env "
                                   f"({binding.original.string.strip()[:40]!r})")
        if binding.key is not None:
            data[binding.key] = binding.value
    return data


def read_named(view: EnvView, rel: str, declared: str | None = None) -> tuple[Path, Any]:
    """The file the spec names for this environment (``{artifact}`` expanded), parsed.

    Raises ConfigUnreadable when the path needs a placeholder nobody can fill in here, or
    the file is missing or does not parse.
    """
    try:
        path = view.file(rel)
    except Unresolved as exc:
        raise ConfigUnreadable(f"{rel}: needs {exc}, which only a running rehearsal "
                               f"fills in") from None
    return path, load_source(path, declared)


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings → dotted keys. Lists stay values (their order is configuration)."""
    if not isinstance(data, dict):
        return {prefix or "value": data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def digest(value: Any) -> str:
    mac = hmac.new(_RUN_KEY, json.dumps(value, sort_keys=True, default=str).encode(),
                   hashlib.sha256)
    return mac.hexdigest()[:16]


def is_secret(key: str, patterns: list[str]) -> bool:
    k = key.lower()
    return any(fnmatch.fnmatchcase(k, p.lower()) for p in patterns)


def redact(key: str, value: Any, patterns: list[str]) -> tuple[Any, bool]:
    """The value as it may be shown and compared: secrets become digests."""
    if is_secret(key, patterns):
        return f"secret:{digest(value)}", True
    if isinstance(value, str) and "://" in value:
        try:
            parts = urlsplit(value)
            if parts.password:
                netloc = parts.netloc.replace(f":{parts.password}@",
                                              f":secret-{digest(parts.password)}@")
                return urlunsplit(parts._replace(netloc=netloc)), True
        except ValueError:
            pass
    return value, False


def collect(view: EnvView) -> LayerFacts:
    out = LayerFacts("config")
    patterns = view.spec.parity.secrets
    if not view.spec.parity.config:
        out.notes.append("the spec points at no configuration files (parity.config)")
    for src in view.spec.parity.config:
        try:
            path, data = read_named(view, getattr(src, view.name), src.format)
        except ConfigUnreadable as exc:
            out.fail(f"{src.name}:", src.component, str(exc))
            continue
        for key, value in flatten(data).items():
            shown, _secret = redact(key, value, patterns)
            out.add(f"{src.name}:{key}", shown, src.component, path.name)
    return out

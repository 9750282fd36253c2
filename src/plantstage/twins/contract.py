"""The app's side of a twin, as the spec declares it: value templates, decimal quantities with
a unit, payload and body rendering, and reading fields out of what the app sent.

Templates are strings with ``{name}`` placeholders (``{name.unit}`` for a quantity's unit). A
string that is exactly one placeholder keeps the value's type (a quantity stays a number or a
decimal string as declared, ``null`` stays null); any other string is text. Mappings and lists
nest. Quantities are :class:`~decimal.Decimal` with a unit and a declared number of decimals:
``2.75`` declared with 3 decimals is written ``2.750``; a value with more decimals than declared
is refused, never rounded or truncated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from plantstage.spec.twins import PLACEHOLDER, QuantitySpec, placeholder_names
from plantstage.twins.base import TwinError

__all__ = ["ContractError", "JsonTemplate", "Quantity", "TextTemplate",
           "dumps", "get_path", "json_value", "parse_json", "quantity", "render_value",
           "set_path", "template_names"]

_json_str = json.encoder.encode_basestring_ascii  # what json.dumps uses (C speed-up)


class ContractError(TwinError, ValueError):
    """A message could not be built from the contract (a value missing, a bad quantity)."""


@dataclass(slots=True)
class Quantity:
    """An exact quantity: ``value`` already has exactly ``decimals`` decimals."""

    value: Decimal
    unit: str
    decimals: int
    encoding: str = "string"  # in JSON: "string" ("2.750") or "number" (2.750)

    @property
    def text(self) -> str:
        return format(self.value, "f")

    def json(self) -> str:
        return self.text if self.encoding == "number" else f'"{self.text}"'

    def __str__(self) -> str:
        return f"{self.text} {self.unit}"


def quantity(raw: Any, spec: QuantitySpec, name: str) -> Quantity:
    """``raw`` (Decimal, int, float, "2.75", "2.75 kg" or a Quantity) as a declared quantity."""
    if type(raw) is int:  # the common case, exact by construction: no checks needed
        return Quantity(Decimal(raw).quantize(_step(spec.decimals)), spec.unit, spec.decimals,
                        spec.encoding.value)
    unit = None
    if isinstance(raw, Quantity):
        unit, raw = raw.unit, raw.value
    if isinstance(raw, bool) or raw is None:
        raise ContractError(f"quantity '{name}' must be a number, got {raw!r}", where=name,
                            hint=f"give a decimal such as '1.5' ({spec.unit})")
    try:
        if isinstance(raw, Decimal):
            d = raw
        elif isinstance(raw, int):
            d = Decimal(raw)
        elif isinstance(raw, float):
            d = Decimal(repr(raw))  # 2.75 → Decimal('2.75'), not the binary expansion
        elif isinstance(raw, str):
            number, _, unit_text = raw.strip().partition(" ")
            unit = unit_text.strip() or unit
            d = Decimal(number)
        else:
            raise InvalidOperation
        if not d.is_finite():
            raise InvalidOperation
        q = d.quantize(_step(spec.decimals))
    except (InvalidOperation, ValueError):
        raise ContractError(f"quantity '{name}' is not a decimal number: {raw!r}", where=name,
                            hint=f"give a decimal such as '1.5' ({spec.unit})") from None
    if q != d:
        raise ContractError(f"quantity '{name}' = {raw} has more than {spec.decimals} "
                            f"decimal(s); it would be rounded", where=name,
                            hint=f"declare more decimals for '{name}' or give an exact value")
    if unit is not None and unit != spec.unit:
        raise ContractError(f"quantity '{name}' is in {unit}, the contract says {spec.unit}",
                            where=name, hint="plantstage converts no units: give it in "
                                             f"{spec.unit}")
    return Quantity(q, spec.unit, spec.decimals, spec.encoding.value)


_STEPS: dict[int, Decimal] = {}


def _step(decimals: int) -> Decimal:
    step = _STEPS.get(decimals)
    if step is None:
        step = _STEPS[decimals] = Decimal(1).scaleb(-decimals)
    return step


def template_names(value: Any) -> set[str]:
    """Every placeholder name a template (string, mapping or list) uses."""
    if isinstance(value, str):
        return placeholder_names(value)
    if isinstance(value, Mapping):
        return set().union(*(template_names(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(template_names(v) for v in value)) if value else set()
    return set()


def _attr(v: Any, attr: str | None) -> Any:
    if attr is None:
        return v
    if isinstance(v, Quantity):
        return v.unit if attr == "unit" else v.text
    return v


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, Quantity):
        return v.text
    if isinstance(v, Decimal):
        return format(v, "f")
    return str(v)


class TextTemplate:
    """A string template rendered to text (topics, URLs, ids, mixed strings)."""

    __slots__ = ("parts", "names", "source")

    def __init__(self, source: str):
        self.source = source
        self.parts: list[str | tuple[str, str | None]] = []
        text = ""
        pos = 0
        for m in PLACEHOLDER.finditer(source):
            text += source[pos:m.start()]
            pos = m.end()
            if m.group(1) is None:  # {{ or }}: a literal brace
                text += m.group(0)[0]
                continue
            if text:
                self.parts.append(text)
                text = ""
            self.parts.append((m.group(1), m.group(2)))
        text += source[pos:]
        if text:
            self.parts.append(text)
        self.names = {p[0] for p in self.parts if type(p) is tuple}

    def render(self, env: Mapping[str, Any]) -> str:
        return "".join([p if type(p) is str else _text(_attr(env[p[0]], p[1]))
                        for p in self.parts])

    @property
    def single(self) -> tuple[str, str | None] | None:
        """(name, attr) when the template is exactly one placeholder."""
        if len(self.parts) == 1 and type(self.parts[0]) is tuple:
            return self.parts[0]  # type: ignore[return-value]
        return None

    def pattern(self) -> re.Pattern[str]:
        """A regex matching rendered text; each placeholder is a named group."""
        out = []
        seen: set[str] = set()
        for p in self.parts:
            if type(p) is str:
                out.append(re.escape(p))
            elif p[0] in seen:
                out.append(f"(?P={p[0]})")
            else:
                seen.add(p[0])
                out.append(f"(?P<{p[0]}>[^/]+)")
        return re.compile("".join(out) + r"\Z")

    def mqtt_filter(self) -> str:
        """The topic template as an MQTT subscription filter (each placeholder level → +)."""
        return "/".join("+" if placeholder_names(level) else _unescape(level)
                        for level in self.source.split("/"))


def _unescape(s: str) -> str:
    return s.replace("{{", "{").replace("}}", "}")


def json_value(v: Any) -> str:
    """One JSON value as ``json.dumps`` writes it; quantities as declared; Decimal exact."""
    t = type(v)
    if t is str:
        return _json_str(v)
    if v is None:
        return "null"
    if t is Quantity:
        return v.json()
    if t is bool:
        return "true" if v else "false"
    if t is int:
        return int.__repr__(v)
    if t is Decimal:
        return format(v, "f")
    if isinstance(v, Mapping):
        return "{" + ",".join(f"{_json_str(str(k))}:{json_value(x)}" for k, x in v.items()) + "}"
    if isinstance(v, list | tuple):
        return "[" + ",".join(json_value(x) for x in v) + "]"
    return json.dumps(v)


class JsonTemplate:
    """A JSON document template, compiled once into static text and value slots, so that
    rendering a message is a join (this is the MQTT publish path: it must stay cheap)."""

    def __init__(self, template: Any, where: str):
        self.where = where
        self.uses: dict[str, str] = {}  # placeholder → field path where it is first used
        parts: list[Any] = []
        self._compile(template, where, parts)
        merged: list[Any] = []
        for p in parts:
            if type(p) is str and merged and type(merged[-1]) is str:
                merged[-1] += p
            else:
                merged.append(p)
        self.parts = merged

    def _compile(self, t: Any, path: str, out: list[Any]) -> None:
        if isinstance(t, Mapping):
            out.append("{")
            for i, (k, v) in enumerate(t.items()):
                out.append(("," if i else "") + _json_str(str(k)) + ":")
                self._compile(v, f"{path}.{k}", out)
            out.append("}")
        elif isinstance(t, list):
            out.append("[")
            for i, v in enumerate(t):
                if i:
                    out.append(",")
                self._compile(v, f"{path}[{i}]", out)
            out.append("]")
        elif isinstance(t, str) and placeholder_names(t):
            tt = TextTemplate(t)
            for n in tt.names:
                self.uses.setdefault(n, path)
            single = tt.single
            if single is not None and single[1] is None:
                name = single[0]
                out.append(lambda env, n=name: json_value(env[n]))
            elif single is not None:
                name, attr = single
                out.append(lambda env, n=name, a=attr: json_value(_attr(env[n], a)))
            else:
                out.append(lambda env, tt=tt: _json_str(tt.render(env)))
        elif isinstance(t, str):
            out.append(_json_str(_unescape(t)))
        else:
            out.append(json_value(t))

    def missing(self, env: Mapping[str, Any]) -> str | None:
        for name in self.uses:
            if name not in env:
                return name
        return None

    def render(self, env: Mapping[str, Any]) -> bytes:
        return "".join([p if type(p) is str else p(env) for p in self.parts]).encode()


def render_value(template: Any, env: Mapping[str, Any]) -> Any:
    """A template rendered to Python values (text, typed single placeholders, nesting)."""
    if isinstance(template, str):
        if not placeholder_names(template):
            return _unescape(template)
        tt = TextTemplate(template)
        single = tt.single
        if single is not None:
            return _attr(env[single[0]], single[1])
        return tt.render(env)
    if isinstance(template, Mapping):
        return {k: render_value(v, env) for k, v in template.items()}
    if isinstance(template, list):
        return [render_value(v, env) for v in template]
    return template


def get_path(body: Any, path: str) -> Any:
    """``body["a"]["b"]`` for ``"a.b"``; KeyError when a step is missing."""
    cur = body
    for part in path.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            raise KeyError(path)
        cur = cur[part]
    return cur


def set_path(body: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    cur = body
    for part in parts[:-1]:
        cur = cur.setdefault(part, {})
    cur[parts[-1]] = value


def parse_json(data: bytes) -> Any:
    """JSON with every non-integer number as an exact Decimal (2.750 stays 2.750)."""
    return json.loads(data, parse_float=Decimal)


def dumps(v: Any) -> bytes:
    """Compact JSON with quantities as declared and Decimal written exactly."""
    return json_value(v).encode()

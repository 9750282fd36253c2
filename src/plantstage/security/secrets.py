"""The secrets scan: known secret values, private keys, credentials assigned in plain text and
high-entropy tokens, in config files, logs and the evidence's free text.

A hit names where (file:line, or the evidence field) and what kind — never the secret. Hex
strings (digests, ids) are never judged by entropy: the hashes plantstage writes itself (spec
digests, chain hashes, signatures) are not secrets.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PEM = re.compile(r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")
#: ``token=…``, ``password: …``, ``"api_key": "…"`` — a credential written out.
ASSIGNED = re.compile(
    r"(?i)\b[\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key"
    r"|credential)s?[\"']?\s*[:=]\s*[\"']?([^\s\"',;}\]]{8,})")
TOKEN = re.compile(r"[A-Za-z0-9_\-+]{16,}={0,2}")
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2}[-:]?)+$")
#: Values that stand for a secret without being one.
_PLACEHOLDER = re.compile(r"^(?:\*+|x{3,}|<[^>]*>|\{[^}]*\}|\$\{?[A-Za-z_]\w*\}?|secret[:-]"
                          r"[0-9a-f]+|redacted|changeme|none|null|true|false)$", re.I)
#: How parity shows a secret: ``secret:<digest>`` (and ``:secret-<digest>@`` in a URL).
_REDACTED = re.compile(r"\bsecret[:-][0-9a-f]{8,}\b")
#: Evidence fields that hold plantstage's own digests.
DIGEST_KEYS = {"sha256", "digest", "digests", "hash", "chain", "signature", "prev", "key_id",
               "fingerprint", "public_key"}


@dataclass(frozen=True)
class Hit:
    where: str  # file:line, or evidence:<field path>
    kind: str   # known secret (label) | private key | credential | high-entropy token

    def line(self) -> str:
        return f"{self.where}: {self.kind}"


def entropy(text: str) -> float:
    """Shannon entropy in bits per character."""
    if not text:
        return 0.0
    n = len(text)
    return -sum(c / n * math.log2(c / n) for c in Counter(text).values())


def random_looking(token: str, min_length: int, min_entropy: float) -> bool:
    """A token of mixed case and digits, long and random enough to be a key (not hex)."""
    core = token.strip("=")
    if len(core) < min_length or _HEX.match(core):
        return False
    kinds = (any(c.islower() for c in core), any(c.isupper() for c in core),
             any(c.isdigit() for c in core))
    return all(kinds) and entropy(core) >= min_entropy


class Scanner:
    """Finds secrets in text. ``known`` maps a secret's value to a label naming its source."""

    def __init__(self, known: dict[str, str] | None = None, *, min_length: int = 20,
                 min_entropy: float = 4.0, allow: Iterable[str] = (),
                 secret_keys: Iterable[str] = ()):
        self.known = {v: label for v, label in (known or {}).items() if v and len(v) >= 6}
        self.min_length = min_length
        self.min_entropy = min_entropy
        self.allow = [re.compile(p) for p in allow]
        self.secret_keys = [p.lower() for p in secret_keys]

    def _allowed(self, value: str) -> bool:
        return bool(_PLACEHOLDER.match(value)) or any(p.search(value) for p in self.allow)

    def _declared_secret_line(self, line: str) -> bool:
        """A config line that assigns a key the spec declares secret (parity.secrets)."""
        m = re.match(r"^\s*(?:export\s+)?[\"']?([\w.-]+)[\"']?\s*[:=]", line)
        return bool(m) and any(fnmatch.fnmatchcase(m.group(1).lower(), p)
                               for p in self.secret_keys)

    def scan_line(self, line: str, *, config: bool = False) -> list[str]:
        """The kinds of secret on one line (each kind once)."""
        kinds: list[str] = []
        if PEM.search(line):
            kinds.append("private key")
        if config and self._declared_secret_line(line):
            return kinds  # where the config keeps a secret by design (compared by digest)
        line = _REDACTED.sub("***", line)
        for value, label in self.known.items():
            if value in line:
                kinds.append(f"known secret ({label})")
        for m in ASSIGNED.finditer(line):
            if not self._allowed(m.group(1)) and "credential" not in kinds:
                kinds.append("credential")
        for m in TOKEN.finditer(line):
            tok = m.group(0)
            if (random_looking(tok, self.min_length, self.min_entropy)
                    and not self._allowed(tok) and tok not in self.known):
                kinds.append("high-entropy token")
                break
        return kinds

    def scan_text(self, text: str, where: str, *, config: bool = False) -> list[Hit]:
        hits: list[Hit] = []
        for n, line in enumerate(text.splitlines(), 1):
            hits += [Hit(f"{where}:{n}", k) for k in self.scan_line(line, config=config)]
        return hits

    def scan_file(self, path: Path, shown: str, *, config: bool = False) -> list[Hit]:
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return []
        return self.scan_text(text, shown, config=config)

    def scan_evidence(self, value: Any, where: str = "evidence") -> list[Hit]:
        """Every string of a JSON-like value, but not the fields holding digests."""
        hits: list[Hit] = []
        for path, text in _strings(value, where):
            for kind in self.scan_line(text):
                hits.append(Hit(path, kind))
        return hits


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for k, v in value.items():
            if str(k).lower() in DIGEST_KEYS:
                continue
            yield from _strings(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _strings(v, f"{where}[{i}]")

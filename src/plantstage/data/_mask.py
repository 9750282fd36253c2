"""Keyed, deterministic masking of single values and whole rows.

Every masked value is derived from ``HMAC-SHA256(key, domain ‖ value ‖ attempt)``: the same input
gives the same output in every table, engine and run that shares the key, so joins on masked
columns still match, and nobody without the key can reverse or re-derive it.

Hand-written rather than taken from Faker or a tokenization library because the guarantees we
need are the point of the feature: outputs stable across library versions, distinct outputs for
unique columns (a collision is retried with the next ``attempt``), and never equal to any
sensitive value seen in production.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from plantstage.data import _pii
from plantstage.data import _wordlists as W
from plantstage.errors import PlantstageError
from plantstage.spec.masking import MaskKind, MaskRule

#: Rules whose output is text drawn from the keyed hash (checked against production's values).
TEXT_RULES = frozenset({MaskKind.token, MaskKind.digits, MaskKind.person, MaskKind.first_name,
                        MaskKind.last_name, MaskKind.company, MaskKind.email, MaskKind.phone,
                        MaskKind.address, MaskKind.city})
MAX_ATTEMPTS = 10_000


class RefreshError(PlantstageError):
    """The refresh could not run or its result failed verification."""


def norm_text(v: Any) -> str:
    """The form a value is compared in by the leak scan (case and outer spaces ignored)."""
    return str(v).strip().lower()


def value_hash(v: Any) -> int:
    """8-byte digest of a value's normalized text; the leak scan keeps only these."""
    return int.from_bytes(hashlib.blake2b(norm_text(v).encode(), digest_size=8).digest(), "big")


class Keyed:
    """The keyed hash all rules draw from."""

    def __init__(self, key: bytes):
        if len(key) < 16:
            raise RefreshError("the masking key is too short (need at least 16 bytes)",
                               where="refresh.key", hint="generate one: openssl rand -hex 32")
        self._key = key
        # HMAC-SHA256 as RFC 2104 spells it, from two SHA-256 states keyed once: a digest is
        # then two state copies and two updates — half the cost of ``hmac.new`` per value,
        # which matters at a million values. ``hmac.new(key, msg, sha256)`` gives the same
        # bytes (a unit test holds it to that).
        k = key if len(key) <= 64 else hashlib.sha256(key).digest()
        k = k.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in k))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in k))

    def digest(self, domain: str, value: Any, attempt: int = 0) -> bytes:
        inner = self._inner.copy()
        inner.update(f"{domain}\x1f{value}\x1f{attempt}".encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    @staticmethod
    def stream(seed: bytes, n: int) -> bytes:
        """``n`` pseudo-random bytes derived from one digest (for long format-kept tokens)."""
        return seed if n <= len(seed) else hashlib.shake_256(seed).digest(n)


def _pick(seq: Sequence[str], d: bytes, i: int) -> str:
    return seq[(d[i] << 8 | d[i + 1]) % len(seq)]  # == int.from_bytes(d[i:i + 2], "big")


#: ``string.digits[r % 10]`` etc. for every byte ``r``: a lookup instead of a modulo per char.
_BY_BYTE_DIGIT = [string.digits[r % 10] for r in range(256)]
_BY_BYTE_LOWER = [string.ascii_lowercase[r % 26] for r in range(256)]
_BY_BYTE_UPPER = [string.ascii_uppercase[r % 26] for r in range(256)]


def _token_text(s: str, d: bytes, digits_only: bool) -> str:
    b = Keyed.stream(d, len(s))
    if s.isascii():
        # The loop below for ASCII text, where isdigit() is 0-9 and isalpha() is a-z/A-Z.
        dig = _BY_BYTE_DIGIT
        pairs = zip(s, b, strict=False)  # ``b`` may be longer than ``s``
        if digits_only:
            return "".join([dig[r] if "0" <= ch <= "9" else ch for ch, r in pairs])
        low, up = _BY_BYTE_LOWER, _BY_BYTE_UPPER
        return "".join([dig[r] if "0" <= ch <= "9" else low[r] if "a" <= ch <= "z"
                        else up[r] if "A" <= ch <= "Z" else ch for ch, r in pairs])
    out = []
    for ch, r in zip(s, b, strict=False):
        if ch.isdigit():
            out.append(string.digits[r % 10])
        elif digits_only:
            out.append(ch)
        elif "a" <= ch <= "z":
            out.append(string.ascii_lowercase[r % 26])
        elif "A" <= ch <= "Z":
            out.append(string.ascii_uppercase[r % 26])
        elif ch.isalpha():
            out.append(string.ascii_letters[r % 52])
        else:
            out.append(ch)
    return "".join(out)


def _token_int(v: int, d: bytes) -> int:
    s = str(abs(v))
    if len(s) == 1:
        out = int.from_bytes(d[:2], "big") % 10
    else:
        b = Keyed.stream(d, len(s))
        out = int(str(1 + b[0] % 9) + "".join(string.digits[r % 10] for r in b[1:]))
    return -out if v < 0 else out


def _fake_token(v: Any, d: bytes, digits_only: bool = False) -> Any:
    if isinstance(v, int) and not isinstance(v, bool):
        return _token_int(v, d)
    return _token_text(str(v), d, digits_only)


def _fake_phone(v: Any, d: bytes) -> str:
    s = str(v)
    if sum(map(str.isdigit, s)) >= 4:
        return _token_text(s, d, True)
    return f"+1-555-{int.from_bytes(d[:3], 'big') % 10_000_000:07d}"


def _fake_email(v: Any, d: bytes) -> str:
    n = int.from_bytes(d[6:8], "big") % 1000
    return (f"{_pick(W.FIRST_NAMES, d, 0)}.{_pick(W.LAST_NAMES, d, 2)}{n}"
            f"@{_pick(W.MAIL_DOMAINS, d, 4)}").lower()


#: One function per text rule: ``(source value, keyed digest) -> fake``. A table rather than
#: a chain of ifs, so a column looks its rule up once, not once per value.
_FAKES: dict[MaskKind, Callable[[Any, bytes], Any]] = {
    MaskKind.token: _fake_token,
    MaskKind.digits: lambda v, d: _fake_token(v, d, True),
    MaskKind.phone: _fake_phone,
    MaskKind.person: lambda v, d: f"{_pick(W.FIRST_NAMES, d, 0)} {_pick(W.LAST_NAMES, d, 2)}",
    MaskKind.first_name: lambda v, d: _pick(W.FIRST_NAMES, d, 0),
    MaskKind.last_name: lambda v, d: _pick(W.LAST_NAMES, d, 2),
    MaskKind.company: lambda v, d: (f"{_pick(W.COMPANY_WORDS, d, 0)} "
                                    f"{_pick(W.COMPANY_TRADES, d, 2)} "
                                    f"{_pick(W.COMPANY_SUFFIXES, d, 4)}"),
    MaskKind.email: _fake_email,
    MaskKind.address: lambda v, d: (f"{1 + int.from_bytes(d[6:8], 'big') % 400} "
                                    f"{_pick(W.STREET_NAMES, d, 0)} "
                                    f"{_pick(W.STREET_TYPES, d, 2)}, {_pick(W.CITIES, d, 4)}"),
    MaskKind.city: lambda v, d: _pick(W.CITIES, d, 0),
}


def _fake(kind: MaskKind, v: Any, d: bytes) -> Any:
    return _FAKES[kind](v, d)


def _fake_name(v: str, d: bytes) -> str:
    title = v.split()[0]
    if title.rstrip(".") in _pii.TITLES:  # "Mr Brown" → "Mr Weber"
        return f"{title} {_pick(W.LAST_NAMES, d, 2)}"
    return _FAKES[MaskKind.person](v, d)


#: What ``scrub`` puts in place of a finding: (domain of the keyed hash, fake). The domains
#: are the rules' own, so an address in a note becomes what ``email`` makes of it elsewhere.
_SCRUB: dict[str, tuple[str, Callable[[str, bytes], str]]] = {
    _pii.EMAIL: ("email", _fake_email),
    _pii.PHONE: ("phone", _fake_phone),
    _pii.IBAN: ("iban", lambda v, d: v[:2] + _token_text(v[2:], d, True)),
    _pii.NAME: ("person", _fake_name),
}


class ColumnMasker:
    """Masks the values of one ``table.column`` according to its rule."""

    def __init__(self, keyed: Keyed, where: str, rule: MaskRule, *, unique: bool = False,
                 max_length: int | None = None, avoid: set[int] | None = None,
                 overrides: dict[str, dict[bytes, Any]] | None = None):
        self.keyed = keyed
        self.where = where
        self.rule = rule
        self.kind = rule.rule
        self.domain = rule.domain or str(rule.rule)
        self.unique = rule.unique if rule.unique is not None else unique
        self.max_length = max_length
        self.avoid = avoid if avoid is not None else set()
        # Outputs that had to be re-picked (collision), shared per domain so that every table
        # using the domain maps the value the same way.
        self.overrides = overrides if overrides is not None else {}
        self._seen: set[int] = set()
        self._shifts: dict[Any, int] = {}
        self._quanta: dict[Any, Decimal] = {}
        self._tol = Decimal(repr(rule.tolerance))

    def mask(self, v: Any, row_key: Any = None, by: Any = None) -> Any:
        if v is None:
            return None
        k = self.kind
        if k == MaskKind.keep:
            return v
        if k == MaskKind.null:
            return None
        if k == MaskKind.fixed:
            return self.rule.value
        if k == MaskKind.noise:
            return self._noise(v, row_key)
        if k == MaskKind.shift:
            return self._shift(v, by)
        if k == MaskKind.scrub:
            return self._scrub(v)
        return self._text(v)

    # -- free text ----------------------------------------------------------------------
    def _scrub(self, v: Any) -> Any:
        if not isinstance(v, str):
            return v
        out = _pii.scrub(v, self._scrub_one)
        if not self.avoid:
            return out
        # Runs of words that are a sensitive production value (a customer's name a pattern
        # cannot know) are replaced too: the leak scan looks for exactly these.
        spans = [(m.start(), m.end()) for m in _pii._TOKEN.finditer(out)]
        words = [out[s:e].lower().strip(".'’-") for s, e in spans]
        hits: list[tuple[int, int]] = []
        i = 0
        while i < len(words) - 1:
            for n in (4, 3, 2):
                if i + n <= len(words) and value_hash(" ".join(words[i:i + n])) in self.avoid:
                    hits.append((spans[i][0], spans[i + n - 1][1]))
                    i += n
                    break
            else:
                i += 1
        for s, e in reversed(hits):
            out = out[:s] + self._scrub_one(_pii.NAME, out[s:e]) + out[e:]
        return out

    def _scrub_one(self, kind: str, text: str) -> str:
        domain, fake = _SCRUB[kind]
        src = norm_text(text)
        for attempt in range(MAX_ATTEMPTS):
            out = fake(text, self.keyed.digest(domain, src, attempt))
            if value_hash(out) not in self.avoid:
                return out
        raise RefreshError("cannot find a masked value for a finding in the text",
                           where=self.where, hint="use rule 'null' for this column")

    # -- text and tokens --------------------------------------------------------------
    def _text(self, v: Any) -> Any:
        src = norm_text(v)
        dom = self.overrides.get(self.domain)
        base = self.keyed.digest(self.domain, src)
        if dom is not None and base in dom:
            out = dom[base]
            if self.unique:
                self._seen.add(value_hash(out))
            return out
        for attempt in range(MAX_ATTEMPTS):
            d = base if attempt == 0 else self.keyed.digest(self.domain, src, attempt)
            out = _fake(self.kind, v, d)
            if self.max_length is not None and isinstance(out, str):
                out = out[: self.max_length]
            h = value_hash(out)
            if h in self.avoid:
                continue  # would equal a production value (maybe the very one): pick again
            if self.unique:
                if h in self._seen:
                    continue
                self._seen.add(h)
            if attempt:
                self.overrides.setdefault(self.domain, {})[base] = out
            return out
        raise RefreshError(
            f"cannot find {'a distinct' if self.unique else 'a'} masked value after "
            f"{MAX_ATTEMPTS} tries: the value domain of rule '{self.kind}' is too small",
            where=self.where, hint="use a rule with a larger domain (e.g. token on a longer "
            "column) or keep the column")

    def mask_column(self, values: Sequence[Any], keys: Sequence[Any] | None = None,
                    bys: Sequence[Any] | None = None) -> list[Any]:
        """``[mask(v, key, by) ...]`` over a column of a block, the same values faster."""
        n = len(values)
        if self.kind == MaskKind.noise:
            return self._noise_column(values, keys if keys is not None else [None] * n)
        if self.kind in TEXT_RULES:
            return self._text_column(values)
        if self.kind == MaskKind.scrub:
            return [self._scrub(v) for v in values]
        keys = keys if keys is not None else [None] * n
        bys = bys if bys is not None else [None] * n
        mask = self.mask
        return [mask(v, k, b) for v, k, b in zip(values, keys, bys, strict=True)]

    def _text_column(self, values: Sequence[Any]) -> list[Any]:
        # ``_text`` over a column with its first attempt inlined (digest, fake, the checks):
        # per value this was most of a text column's time. Anything but the first attempt
        # succeeding — an override, a collision, a production value — goes through ``_text``
        # itself, which redoes the same first attempt and carries on exactly as before.
        inner, outer = self.keyed._inner, self.keyed._outer
        pre = f"{self.domain}\x1f"
        fake = _FAKES[self.kind]
        overrides, domain, avoid = self.overrides, self.domain, self.avoid
        unique, seen, max_length = self.unique, self._seen, self.max_length
        b2, from_bytes = hashlib.blake2b, int.from_bytes
        # Repeats within a block: the same value gives the same output unless the column is
        # unique (a repeat is then re-drawn). Per call only: another column of the same domain
        # may add an override between two blocks.
        memo: dict[tuple[type, Any], Any] | None = None if unique else {}
        out: list[Any] = []
        append = out.append
        for v in values:
            if v is None:
                append(None)
                continue
            if memo is not None:
                mk = (v.__class__, v)
                r = memo.get(mk)
                if r is not None:
                    append(r)
                    continue
            src = str(v).strip().lower()  # norm_text
            h = inner.copy()
            h.update(f"{pre}{src}\x1f0".encode())  # == Keyed.digest(domain, src, 0)
            o = outer.copy()
            o.update(h.digest())
            base = o.digest()
            dom = overrides.get(domain)
            if dom is not None and base in dom:
                r = self._text(v)
            else:
                r = fake(v, base)
                if max_length is not None and isinstance(r, str):
                    r = r[:max_length]
                vh = from_bytes(b2(str(r).strip().lower().encode(), digest_size=8).digest(),
                                "big")  # value_hash
                if vh in avoid or (unique and vh in seen):
                    r = self._text(v)
                elif unique:
                    seen.add(vh)
            if memo is not None:
                memo[mk] = r
            append(r)
        return out

    # -- numbers ----------------------------------------------------------------------
    def _noise_column(self, values: Sequence[Any], keys: Sequence[Any]) -> list[Any]:
        # ``_noise`` with the digest and the Decimal arithmetic inlined for the common case
        # (Decimal values): per value this is most of a refresh's Python time.
        inner, outer = self.keyed._inner, self.keyed._outer
        pre = f"{self.domain}\x1f"
        t, tol, quanta = self.rule.tolerance, self._tol, self._quanta
        out: list[Any] = []
        append = out.append
        for v, rk in zip(values, keys, strict=True):
            if v is None:
                append(None)
                continue
            if type(v) is not Decimal:
                append(self._noise(v, rk))
                continue
            h = inner.copy()
            h.update(f"{pre}{rk}\x1e{v}\x1f0".encode())  # == Keyed.digest(domain, …, 0)
            o = outer.copy()
            o.update(h.digest())
            f = 1 + t * (2 * (int.from_bytes(o.digest()[:8], "big") / 2**64) - 1)
            exp = v.as_tuple().exponent
            q = quanta.get(exp)
            if q is None:
                q = quanta[exp] = (Decimal(1).scaleb(exp) if isinstance(exp, int)
                                   else Decimal("0.01"))
            r = (v * Decimal(repr(f))).quantize(q)
            lim = abs(v) * tol
            if abs(r - v) > lim:
                r = v + (lim if r > v else -lim).quantize(q, rounding="ROUND_DOWN")
            append(r)
        return out

    def _noise(self, v: Any, row_key: Any) -> Any:
        d = self.keyed.digest(self.domain, f"{row_key}\x1e{v}")
        u = int.from_bytes(d[:8], "big") / 2**64  # [0, 1)
        t = self.rule.tolerance
        f = 1 + t * (2 * u - 1)
        if isinstance(v, Decimal):
            exp = v.as_tuple().exponent
            q = self._quanta.get(exp)
            if q is None:  # a handful of scales per column: build each once
                q = self._quanta[exp] = (Decimal(1).scaleb(exp) if isinstance(exp, int)
                                         else Decimal("0.01"))
            out = (v * Decimal(repr(f))).quantize(q)
            lim = abs(v) * self._tol
            if abs(out - v) > lim:  # rounding pushed it out: step back towards the original
                out = v + (lim if out > v else -lim).quantize(q, rounding="ROUND_DOWN")
            return out
        if isinstance(v, bool):
            return v
        if isinstance(v, int):
            out = round(v * f)
            lim = int(abs(v) * t)
            return max(v - lim, min(v + lim, out))
        if isinstance(v, float):
            return v * f
        raise RefreshError(f"rule 'noise' needs numbers, found {type(v).__name__}",
                           where=self.where, hint="use noise on numeric columns only")

    # -- dates ------------------------------------------------------------------------
    def shift_days(self, by: Any) -> int:
        # Keyed by the ``by`` value alone (not the column), so every date of one tenant moves
        # by the same days in every table: the order of related events is kept.
        days = self._shifts.get(by)
        if days is None:
            d = self.keyed.digest(f"shift:{self.rule.max_days}", "" if by is None else by)
            m = self.rule.max_days
            n = int.from_bytes(d[:4], "big") % (2 * m) - m  # [-m, m)
            days = self._shifts[by] = n if n < 0 else n + 1  # never 0: [-m, -1] ∪ [1, m]
        return days

    def _shift(self, v: Any, by: Any) -> Any:
        if isinstance(v, datetime | date):
            return v + timedelta(days=self.shift_days(by))
        if isinstance(v, str):
            try:
                parsed = datetime.fromisoformat(v)
            except ValueError:
                parsed = None
            if parsed is not None:
                out = parsed + timedelta(days=self.shift_days(by))
                return out.isoformat(sep=" ") if len(v) > 10 else out.date().isoformat()
        raise RefreshError(f"rule 'shift' needs dates, found {v!r:.40}", where=self.where,
                           hint="use shift on date/time columns only")


class RowMasker:
    """Masks whole rows of one table: only the columns whose rule changes anything run."""

    def __init__(self, columns: list[str], maskers: dict[str, ColumnMasker],
                 pk: list[str]):
        idx = {c: i for i, c in enumerate(columns)}
        self.ops: list[tuple[int, ColumnMasker, int | None]] = []
        for c, m in maskers.items():
            if m.kind == MaskKind.keep:
                continue
            by = idx.get(m.rule.by) if m.rule.by else None
            self.ops.append((idx[c], m, by))
        self.pk_idx = [idx[c] for c in pk if c in idx]
        self.active = bool(self.ops)

    def __call__(self, row: Sequence[Any]) -> tuple:
        if not self.ops:
            return tuple(row)
        out = list(row)
        needs_key = any(m.kind == MaskKind.noise for _, m, _ in self.ops)
        key = "\x1f".join(str(row[i]) for i in self.pk_idx) if needs_key else None
        for i, m, by in self.ops:
            # ``by`` reads the *source* row so that a masked tenant_id cannot change the shift.
            out[i] = m.mask(row[i], key, row[by] if by is not None else None)
        return tuple(out)


MaskFn = Callable[[Sequence[Any]], tuple]

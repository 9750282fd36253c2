"""Masking in COPY text: rows travel as bytes, only the masked columns become Python values.

The PostgreSQL → PostgreSQL refresh reads ``COPY (SELECT …) TO STDOUT`` and writes ``COPY …
FROM STDIN``. Building a Python row object for every row, and formatting every value back, was
most of the old path's cost; here a row is split on tabs, the fields of unmasked columns are
passed through byte for byte, and masking runs column by column over a block of rows.

A masked field is loaded with psycopg's own loader for the source column's type and dumped
with psycopg's own dumper — exactly what the row-by-row path did through the cursor and
``write_row`` — so both paths write the same values (a test holds them to it). The one shortcut
is for ``shift`` on ``date`` and ``timestamp`` columns in ISO form: moving by whole days changes
only the date part, so shifted date parts are cached and the time part is kept as it came.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

from plantstage.data._mask import ColumnMasker, MaskKind, norm_text, value_hash

NULL = b"\\N"
_DATE_OID, _TIMESTAMP_OID = 1082, 1114
_ISO = re.compile(rb"^\d{4}-\d{2}-\d{2}( \d{2}:\d{2}:\d{2}(\.\d{1,6})?)?$")
_ESC = re.compile(rb"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)", re.S)
_UNESC = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t", b"v": b"\v"}
#: Rows per masked block (the unit of column-wise masking and of writes).
BLOCK_ROWS = 5000


def _unesc(m: re.Match) -> bytes:
    s = m.group(1)
    if s in _UNESC:
        return _UNESC[s]
    if s[:1] == b"x" and len(s) > 1:
        return bytes([int(s[1:], 16)])
    if s[:1].isdigit():
        return bytes([int(s, 8) & 0xFF])
    return s


def unescape(field: bytes) -> bytes:
    """A COPY-text field's bytes as stored (``\\N`` is handled by the caller)."""
    return _ESC.sub(_unesc, field) if b"\\" in field else field


def escape(value: bytes) -> bytes:
    """Bytes as a COPY-text field."""
    if b"\\" in value:
        value = value.replace(b"\\", b"\\\\")
    if b"\t" in value or b"\n" in value or b"\r" in value:
        value = value.replace(b"\t", b"\\t").replace(b"\n", b"\\n").replace(b"\r", b"\\r")
    return value


def blocks(chunks: Iterable[bytes], size: int = 1 << 18) -> Iterator[bytes]:
    """Whole COPY-text lines, joined into blocks of about ``size`` bytes."""
    buf: list[bytes] = []
    n = 0
    for c in chunks:
        buf.append(c)
        n += len(c)
        if n >= size:
            yield b"".join(buf)
            buf, n = [], 0
    if buf:
        yield b"".join(buf)


def row_blocks(chunks: Iterable[bytes], rows: int = BLOCK_ROWS) -> Iterator[bytes]:
    """Blocks of ``rows`` whole COPY-text lines (one line per chunk, as ``copy_out`` yields)."""
    buf: list[bytes] = []
    for c in chunks:
        buf.append(c)
        if len(buf) >= rows:
            yield b"".join(buf)
            buf = []
    if buf:
        yield b"".join(buf)


def line_blocks(chunks: Iterable[bytes], rows: int = BLOCK_ROWS) -> Iterator[list[bytes]]:
    """Lists of ``rows`` COPY-text lines (without their newline)."""
    buf: list[bytes] = []
    for c in chunks:
        buf.append(c)
        if len(buf) >= rows:
            yield b"".join(buf).split(b"\n")[:-1]
            buf = []
    if buf:
        yield b"".join(buf).split(b"\n")[:-1]


class CopyMasker:
    """Masks blocks of COPY-text rows of one table (the COPY twin of ``RowMasker``).

    ``tx`` is a psycopg ``Transformer`` of the source connection; ``oids`` the source columns'
    type OIDs; ``keep``/``ident`` filter a subset by row identity as the row path does.
    """

    def __init__(self, columns: list[str], maskers: dict[str, ColumnMasker], pk: list[str],
                 oids: list[int], tx: Any, encoding: str, *,
                 keep: set[tuple] | None = None, ident: list[str] | None = None,
                 in_query: Iterable[str] = ()):
        from psycopg.pq import Format

        idx = {c: i for i, c in enumerate(columns)}
        self.ncols = len(columns)
        done = set(in_query)  # masked by the SELECT itself (see ``shift_in_query``)
        self.ops: list[tuple[int, ColumnMasker, int | None]] = []
        for c, m in maskers.items():
            if m.kind == MaskKind.keep or c in done:
                continue
            self.ops.append((idx[c], m, idx.get(m.rule.by) if m.rule.by else None))
        self.pk_idx = ([idx[c] for c in pk if c in idx]
                       if any(m.kind == MaskKind.noise for _, m, _ in self.ops) else [])
        self.keep = keep
        self.ident_idx = [idx[c] for c in ident] if keep is not None and ident else []
        need = {i for i, _, _ in self.ops} | {b for _, _, b in self.ops if b is not None}
        need |= set(self.pk_idx) | set(self.ident_idx)
        self.oids = oids
        self.loaders = {i: tx.get_loader(oids[i], Format.TEXT).load for i in need}
        self.tx = tx
        self.encoding = encoding
        self._dumpers: dict[type, Any] = {}
        self._dates: dict[tuple[int, bytes], bytes] = {}

    @property
    def passthrough(self) -> bool:
        """True when rows need no work at all (raw COPY → COPY)."""
        return not self.ops and self.keep is None

    def _load(self, i: int, fields: list[bytes]) -> list[Any]:
        load = self.loaders[i]
        return [None if f == NULL else load(unescape(f) if b"\\" in f else f) for f in fields]

    def _dump(self, v: Any) -> bytes:
        if v is None:
            return NULL
        d = self._dumpers.get(type(v))
        if d is None:
            from psycopg.adapt import PyFormat

            d = self._dumpers[type(v)] = self.tx.get_dumper(v, PyFormat.TEXT).dump
        out = bytes(d(v))
        if b"\\" in out or b"\t" in out or b"\n" in out or b"\r" in out:
            out = escape(out)
        return out

    def _dump_column(self, values: list[Any]) -> list[bytes]:
        """``[_dump(v) ...]``, with the per-value call and dumper lookup inlined."""
        dumpers = self._dumpers
        out: list[bytes] = []
        append = out.append
        for v in values:
            if v is None:
                append(NULL)
                continue
            d = dumpers.get(type(v))
            if d is None:
                append(self._dump(v))  # creates the dumper
                continue
            b = bytes(d(v))
            if b"\\" in b or b"\t" in b or b"\n" in b or b"\r" in b:
                b = escape(b)
            append(b)
        return out

    def _shift_iso(self, m: ColumnMasker, raw: bytes, by: Any) -> bytes | None:
        if not _ISO.match(raw):
            return None
        days = m.shift_days(by)
        key = (days, raw[:10])
        d = self._dates.get(key)
        if d is None:
            d = self._dates[key] = (date.fromisoformat(raw[:10].decode())
                                    + timedelta(days=days)).isoformat().encode()
        return d + raw[10:]

    def mask_lines(self, lines: list[bytes]) -> list[bytes]:
        """The masked (and, with a subset, filtered) lines of a block."""
        rows = [ln.split(b"\t") for ln in lines]
        if self.keep is not None:
            cols = [self._load(i, [r[i] for r in rows]) for i in self.ident_idx]
            keep = self.keep
            rows = [r for r, k in zip(rows, zip(*cols, strict=True), strict=True) if k in keep]
        if not rows or not self.ops:
            return [b"\t".join(r) for r in rows]
        loaded: dict[int, list[Any]] = {}

        def col(i: int) -> list[Any]:
            if i not in loaded:
                loaded[i] = self._load(i, [r[i] for r in rows])
            return loaded[i]

        keys: list[str | None] = [None] * len(rows)
        if len(self.pk_idx) == 1:  # the row path's "\x1f".join(str(v) ...) of one value
            keys = [str(v) for v in col(self.pk_idx[0])]
        elif self.pk_idx:
            keys = ["\x1f".join(map(str, k))
                    for k in zip(*[col(i) for i in self.pk_idx], strict=True)]
        for i, m, by in self.ops:
            bys = col(by) if by is not None else [None] * len(rows)
            if m.kind == MaskKind.shift and self.oids[i] in (_DATE_OID, _TIMESTAMP_OID):
                for r, b in zip(rows, bys, strict=True):
                    raw = r[i]
                    if raw == NULL:
                        continue
                    out = self._shift_iso(m, raw, b)
                    r[i] = out if out is not None else self._dump(
                        m.mask(self.loaders[i](unescape(raw)), None, b))
                continue
            dump = self._dump
            for r, v in zip(rows, m.mask_column(col(i), keys, bys), strict=True):
                r[i] = dump(v)
        return [b"\t".join(r) for r in rows]


    def mask_block(self, block: bytes) -> bytes:
        """A block of whole COPY-text lines, masked: the same bytes as ``mask_lines``.

        Without a subset filter no row needs to be an object: the block is split once into a
        flat list of fields (C), a column is a slice of it, a masked column is put back by
        slice assignment, and the block is joined again in one go (a tab or newline never
        occurs inside a COPY-text field: they are escaped)."""
        if self.keep is not None or not self.ops:
            out = self.mask_lines(block.split(b"\n")[:-1])
            return b"\n".join(out) + b"\n" if out else b""
        n = self.ncols
        fields = block[:-1].replace(b"\t", b"\n").split(b"\n")
        if len(fields) % n:  # pragma: no cover - COPY text always has every column
            raise ValueError("COPY text with a ragged row")
        nrows = len(fields) // n
        loaded: dict[int, list[Any]] = {}

        def col(i: int) -> list[Any]:
            # read when first needed, from the fields as they are then (as mask_lines does)
            if i not in loaded:
                loaded[i] = self._load(i, fields[i::n])
            return loaded[i]

        keys: list[str | None] = [None] * nrows
        if len(self.pk_idx) == 1:  # the row path's "\x1f".join(str(v) ...) of one value
            keys = [str(v) for v in col(self.pk_idx[0])]
        elif self.pk_idx:
            keys = ["\x1f".join(map(str, k))
                    for k in zip(*[col(i) for i in self.pk_idx], strict=True)]
        for i, m, by in self.ops:
            bys = col(by) if by is not None else [None] * nrows
            if m.kind == MaskKind.shift and self.oids[i] in (_DATE_OID, _TIMESTAMP_OID):
                new = []
                for raw, b in zip(fields[i::n], bys, strict=True):
                    if raw == NULL:
                        new.append(raw)
                        continue
                    out = self._shift_iso(m, raw, b)
                    new.append(out if out is not None else self._dump(
                        m.mask(self.loaders[i](unescape(raw)), None, b)))
                fields[i::n] = new
                continue
            fields[i::n] = self._dump_column(m.mask_column(col(i), keys, bys))
        fields[n - 1::n] = [f + b"\n" for f in fields[n - 1::n]]
        return b"\t".join(fields).replace(b"\n\t", b"\n")


def avoid_digests(avoid: set[int]) -> set[bytes]:
    """``value_hash`` digests as the bytes blake2b returns (skips a conversion per field)."""
    return {h.to_bytes(8, "big") for h in avoid}


class LeakScanner:
    """Counts fields whose normalized text is one of the sensitive production values.

    ``avoid`` holds 8-byte digests of ``norm_text`` (see ``value_hash``). COPY text is checked
    a block and a column at a time: the distinct fields of the column in the block are hashed
    (status codes and repeated references once per block), and only a block that holds a
    sensitive digest is counted field by field. ASCII blocks are normalized as bytes, which is
    what ``str.strip().lower()`` does to ASCII text.
    """

    _WS = b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f"  # what str.strip() strips, in ASCII

    #: what may start or end a field that ``str.strip()`` would change (tab and newline are
    #: COPY's separators; the other ASCII spaces are left unescaped by COPY)
    _RARE_WS = (b"\x0b", b"\x0c", b"\x1c", b"\x1d", b"\x1e", b"\x1f")

    @classmethod
    def _plain_as_is(cls, flat: bytes) -> bool:
        """No field of ``flat`` (fields joined by newlines) has outer whitespace. Substring
        searches in C, no regex: a regex over every byte cost more than the whole scan."""
        return not (flat[:1] == b" " or flat[-1:] == b" " or b"\n " in flat
                    or b" \n" in flat or any(s in flat for s in cls._RARE_WS))

    def __init__(self, avoid: set[int], ncols: int, encoding: str = "utf-8",
                 min_len: int = 3, digests: set[bytes] | None = None,
                 plain: set[bytes] | None = None):
        self.avoid = avoid
        # ``plain``: the sensitive values' normalized text itself (UTF-8, ``min_len`` and
        # longer). With it a column of a block is checked by one set operation in C instead
        # of a BLAKE2b call per distinct field — the scan reads every text column of staging,
        # so that per-field Python was most of the verification's time.
        self.plain = plain
        self.digests = (digests if digests is not None or plain is not None
                        else avoid_digests(avoid))
        self.hits = [0] * ncols
        self.encoding = encoding
        self.min_len = min_len

    def _digest(self, text: bytes) -> bytes:
        return hashlib.blake2b(text, digest_size=8).digest()

    def _norm(self, field: bytes, ascii_lower: bool) -> bytes:
        """A raw field (escaped, lowered if ``ascii_lower``) as ``norm_text(...).encode()``."""
        if b"\\" in field:
            field = unescape(field)
        if ascii_lower:
            return field.strip(self._WS)
        return norm_text(field.decode(self.encoding)).encode()

    def scan_block(self, block: bytes) -> None:
        """A block of whole COPY-text lines (columns in scanner order)."""
        ncols = len(self.hits)
        ascii_lower = block.isascii()
        if ascii_lower:
            # ``\N`` (NULL) becomes ``\n``: two characters, below any sensitive length, and
            # every COPY escape but ``\N`` is lowercase already.
            block = block.lower()
        # One flat list of every field (C), a column is a slice of it: no per-row Python.
        flat = block[:-1].replace(b"\t", b"\n")
        fields = flat.split(b"\n") if block else []
        if len(fields) % ncols:  # pragma: no cover - COPY text always has every column
            raise ValueError("COPY text with a ragged row")
        escaped = b"\\" in block
        if self.plain is not None:
            self._scan_plain(fields, ncols, ascii_lower, escaped, flat)
            return
        ws, lo, avoid = self._WS, self.min_len, self.digests
        b2 = hashlib.blake2b
        for i in range(ncols):
            col = fields[i::ncols]
            distinct = set(col)
            distinct.discard(NULL)
            if ascii_lower and not escaped:
                normed = {f: f.strip(ws) for f in distinct}
            else:
                normed = {f: self._norm(f, ascii_lower) for f in distinct}
            digests = {b2(n, digest_size=8).digest() for n in normed.values()}
            if digests.isdisjoint(avoid):  # nearly always: nothing more to do
                continue
            found = {f for f, n in normed.items()
                     if len(n.decode()) >= lo  # _norm gives UTF-8
                     and b2(n, digest_size=8).digest() in avoid}
            if found:
                self.hits[i] += sum(1 for f in col if f in found)

    def _scan_plain(self, fields: list[bytes], ncols: int, ascii_lower: bool, escaped: bool,
                    flat: bytes) -> None:
        plain = self.plain
        assert plain is not None
        # An ASCII block without escapes whose fields have no outer spaces is normalized as
        # it stands (lowered above): the fields themselves are compared, all in C.
        as_is = ascii_lower and not escaped and self._plain_as_is(flat)
        for i in range(ncols):
            col = fields[i::ncols]
            if as_is:
                if plain.isdisjoint(col):  # nearly always: nothing more to do
                    continue
                found = plain.intersection(col)
            else:
                distinct = set(col)
                distinct.discard(NULL)
                normed = {f: self._norm(f, ascii_lower) for f in distinct}
                if plain.isdisjoint(normed.values()):
                    continue
                found = {f for f, n in normed.items() if n in plain}
            # ``plain`` holds only values of ``min_len`` characters and more: every match counts
            self.hits[i] += sum(1 for f in col if f in found)

    def scan_rows(self, rows: Iterable[tuple]) -> None:
        """Values of rows read by a driver (columns in scanner order)."""
        for i, col in enumerate(zip(*rows, strict=True)):
            distinct = {v for v in col if v is not None}
            found = {v for v in distinct if len(n := norm_text(v)) >= self.min_len
                     and value_hash(n) in self.avoid}
            if found:
                self.hits[i] += sum(1 for v in col if v in found)


#: Above this many distinct ``by`` values a shift is done here rather than in the SELECT.
MAX_SHIFT_CASES = 256


def shift_in_query(conn: Any, table: Any, maskers: dict[str, ColumnMasker],
                   oids: dict[str, int]) -> dict[str, Any]:
    """SQL expressions that shift ``date``/``timestamp`` columns inside the SELECT.

    A shift depends only on the ``by`` value (a tenant, say): the days are computed here from
    the keyed hash, one per distinct value, and handed to the database as a ``CASE`` — the key
    never leaves plantstage, and the unshifted dates never leave production. Adding whole days
    to a ``date`` or a ``timestamp`` without time zone is the same calendar arithmetic in
    PostgreSQL as in Python, so the values are those the row path writes; then a table whose
    only rules are shifts streams as raw COPY. ``conn`` must read in one snapshot (REPEATABLE
    READ) with the COPY, so that no ``by`` value appears in between.
    """
    import sqlalchemy as sa

    out: dict[str, Any] = {}
    distinct: dict[str | None, list[Any] | None] = {}
    for c, m in maskers.items():
        if m.kind != MaskKind.shift or oids.get(c) not in (_DATE_OID, _TIMESTAMP_OID):
            continue
        by = m.rule.by
        if by not in distinct:
            if by is None:
                distinct[by] = [None]
            else:
                vals = conn.execute(sa.select(table.c[by]).distinct().limit(
                    MAX_SHIFT_CASES + 1)).scalars().all()
                ok = len(vals) <= MAX_SHIFT_CASES and all(
                    v is None or (isinstance(v, int | str) and not isinstance(v, bool))
                    for v in vals)
                distinct[by] = vals if ok else None
        vals = distinct[by]
        if vals is None:
            continue
        col = table.c[c]
        if by is None:
            days: Any = sa.literal(m.shift_days(None), sa.Integer)
        else:
            whens = [(table.c[by].is_(None) if v is None else table.c[by] == v,
                      m.shift_days(v)) for v in vals]
            days = sa.case(*whens, else_=sa.null())  # one snapshot: no other value exists
        if oids[c] == _DATE_OID:
            out[c] = (col + days).label(c)
        else:
            out[c] = (col + sa.literal_column("interval '1 day'") * days).label(c)
    return out


def select_sql(q: Any, engine: Any) -> str:
    return str(q.compile(dialect=engine.dialect, compile_kwargs={"literal_binds": True}))

"""Personal data inside free text: e-mail addresses, phone numbers, IBANs and person names.

Three users of one finder:

* the coverage check samples the text columns a refresh would copy unchanged and refuses the
  refresh when they hold personal data (``found_in``);
* the ``scrub`` rule replaces what it finds inside a text with keyed fakes and keeps the rest;
* the leak scan looks, inside staging's free-text columns, for production's sensitive values
  and for the fragments ``scrub`` replaced (``fragments``).

Names are found by a given name (the masking word lists and a list of common given names of
many languages, below) or a title followed by a capitalised word; a name the lists do not know
is still found by the leak scan when production holds it in a masked column.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from plantstage.data import _wordlists as W

EMAIL = "e-mail addresses"
PHONE = "phone numbers"
IBAN = "IBANs"
NAME = "person names"
KINDS = (EMAIL, PHONE, IBAN, NAME)

_EMAIL = re.compile(r"(?<![\w.%+-])[\w.%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"
                    r"(?![\w-])")
#: Reserved for documentation and tests (RFC 2606, RFC 6761): nobody's address.
_RESERVED_MAIL = (".example", ".invalid", ".test", ".localhost", "@example.com",
                  "@example.org", "@example.net")
_PHONE = re.compile(r"(?<![\w+/.,-])(?:\+|00)?\(?\d[\d ()./-]{5,22}\d(?![\w/-]|[.,]\d)")
_DATE = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b")
_WORD = r"[A-Z][^\W\d_]+(?:[-'’][A-Z][^\W\d_]+)?"
_NAME = re.compile(rf"\b(?=({_WORD})\.? +({_WORD})(?: +({_WORD}))?\b)")
_THOUSANDS = re.compile(r"\d{1,3}(?:[ .,]\d{3})+")
_TOKEN = re.compile(r"[^\s,;:()\[\]{}\"<>!?|]+")

_COMMON_GIVEN = """
Aaliyah Abdul Adam Ahmed Aiko Akira Alejandro Alexander Alexandra Alfred Ali Alicia Alina
Allison Amanda Amelia Amy Andrea Andreas Andrew Angela Angelika Anita Ann Anne Annette Anthony
Antonio Arthur Ashley Barbara Beatriz Benjamin Bernd Betty Brandon Brenda Brian Bridget
Camila Carl Carol Caroline Catherine Charles Charlotte Christian Christina Christine
Christopher Claudia Cynthia Daniela David Deborah Dennis Dieter Donald Donna Dorothy Douglas
Edward Elizabeth Ellen Emily Eric Ethan Eugene Fatima Fernando Francesca Francisco Frederik
Gary George Gerhard Giovanni Giulia Gloria Gregory Günter Hans Harold Heather Heinz Helen
Helga Henry Hiroshi Isabel Isabella Jack Jacob Jacqueline Jan Janet Janice Jason Javier Jean
Jeffrey Jennifer Jeremy Jerry Jessica Joan Joanna Joe John Johanna Jonathan Jorge Jose Joseph
Joshua Joyce Juan Judith Julie Jürgen Justin Karen Karin Katarzyna Katharina Kathleen Kathryn
Katrin Keith Kelly Kenneth Kevin Kimberly Klaus Kyle Larry Lauren Lawrence Linda Lisa Lorenzo
Louise Lukas Magdalena Manuel Margaret Maria Marie Marilyn Mario Martha Martin Mary Matthew
Max Megan Melissa Michael Michelle Miguel Monika Nancy Natalie Nathan Nicholas Nicole Olivia
Pablo Pamela Patricia Patrick Paul Peter Philip Pierre Rachel Ralph Raymond Rebecca Richard
Robert Roger Ronald Rose Roy Russell Ruth Ryan Sabine Samantha Samuel Sandra Sarah Scott
Sebastian Sharon Shirley Stephanie Stephen Steven Susan Sven Takeshi Teresa Thomas Timothy
Tobias Ursula Valentina Vincent Virginia Walter Wayne William Wolfgang Yuki Zachary
"""

#: Given names the name finder knows (the fakes' own lists included: a masked value is found
#: too, which is what the leak scan needs and why ``scrub`` checks its output against avoid).
GIVEN_NAMES = frozenset(W.FIRST_NAMES) | frozenset(_COMMON_GIVEN.split())
TITLES = frozenset("Mr Mrs Ms Miss Mx Dr Prof Herr Frau Hr Fr Mme Mlle Sr Sra Sig Dott "
                   "Ing".split())


@dataclass(frozen=True)
class Found:
    kind: str
    start: int
    end: int
    text: str


def _iban_ok(s: str) -> bool:
    s = s.replace(" ", "")
    if not 15 <= len(s) <= 34:
        return False
    n = "".join(str(int(ch, 36)) for ch in s[4:] + s[:4])
    return int(n) % 97 == 1


def _phone_ok(s: str) -> bool:
    digits = sum(ch.isdigit() for ch in s)
    if not 7 <= digits <= 15 or _DATE.match(s) or _THOUSANDS.fullmatch(s):
        return False
    groups = [g for g in re.split(r"[ ()./-]+", s) if g]
    return s.startswith(("+", "(", "00")) or len(groups) >= 3 or (
        len(groups) == 2 and s[0] == "0")


def find(text: str) -> list[Found]:
    """Personal data inside ``text``, left to right, not overlapping."""
    out: list[Found] = []
    taken: list[tuple[int, int]] = []

    def add(kind: str, s: int, e: int) -> None:
        if any(s < te and ts < e for ts, te in taken):
            return
        taken.append((s, e))
        out.append(Found(kind, s, e, text[s:e]))

    if "@" in text:
        for m in _EMAIL.finditer(text):
            if not m.group(0).lower().endswith(_RESERVED_MAIL):
                add(EMAIL, *m.span())
    if any(ch.isdigit() for ch in text):
        for m in _IBAN.finditer(text):
            if _iban_ok(m.group(0)):
                add(IBAN, *m.span())
        for m in _PHONE.finditer(text):
            s = m.group(0).rstrip(" (.-/")
            if s.count("(") < s.count(")"):
                s = s.rstrip(")")
            if _phone_ok(s):
                add(PHONE, m.start(), m.start() + len(s))
    for m in _NAME.finditer(text):
        if m.group(1) in GIVEN_NAMES or m.group(1) in TITLES:
            add(NAME, m.start(1), m.end(3) if m.group(3) else m.end(2))
    out.sort(key=lambda f: f.start)
    return out


def found_in(values: list) -> dict[str, int]:
    """How many of ``values`` hold each kind of personal data (kinds found only)."""
    counts: dict[str, int] = {}
    for v in values:
        if not isinstance(v, str) or len(v) < 6:
            continue
        for kind in {f.kind for f in find(v)}:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def describe(counts: dict[str, int], sampled: int) -> str:
    """``e-mail addresses in 41 of 200 sampled values, phone numbers in 37``."""
    parts = [f"{k} in {counts[k]}" for k in KINDS if counts.get(k)]
    if not parts:
        return ""
    parts[0] += f" of {sampled} sampled values"
    return ", ".join(parts)


def scrub(text: str, replace: Callable[[str, str], str]) -> str:
    """``text`` with every finding replaced by ``replace(kind, finding)``."""
    found = find(text)
    if not found:
        return text
    out, pos = [], 0
    for f in found:
        out.append(text[pos:f.start])
        out.append(replace(f.kind, f.text))
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


def ngrams(text: str, longest: int = 4) -> Iterator[str]:
    """Runs of 2 to ``longest`` words of ``text``, normalized as the leak scan compares."""
    words = [w.strip(".'’-") for w in _TOKEN.findall(text.lower())]
    words = [w for w in words if w]
    for n in range(2, longest + 1):
        for i in range(len(words) - n + 1):
            yield " ".join(words[i:i + n])


def fragments(text: str) -> Iterator[str]:
    """What the leak scan looks up from one free-text value: findings and word runs."""
    for f in find(text):
        yield f.text.strip().lower()
    yield from ngrams(text)


def is_free_text(col: sa.Column) -> bool:
    """A column whose type holds free text: TEXT/CLOB, or a string of 200 characters or more
    (or of no declared length)."""
    t = col.type
    if isinstance(t, sa.Enum) or not isinstance(t, sa.String):
        return False
    if isinstance(t, sa.Text):
        return True
    return t.length is None or t.length >= 200

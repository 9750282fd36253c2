"""The core knows no app: src/plantstage names nothing of the sample plant.

Everything specific to one app (its endpoints, tables, fields, flows, tenants, topics) lives in
that app's spec and plugin under examples/, and reaches plantstage through the extension points
any user has. This test fails the build when a word of the sample plant creeps back into src/.
"""

from __future__ import annotations

import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "plantstage"

#: The sample plant's vocabulary: endpoint paths, table and column names, payload fields,
#: flow names, tenant codes and its package name. Generic manufacturing words ("work order",
#: "confirmation" in prose) are fine; these identifiers are not.
APP_WORDS = [
    r"/api/",
    r"\binventory_ledger\b", r"\bon_hand\b", r"\bon-hand\b", r"\bwork_orders\b",
    r"\bproduction_confirmations\b", r"\bsales_orders?\b", r"\bsales_order_lines\b",
    r"\bbom_lines\b", r"\bsupplier_items\b",
    r"\bwork_order\b", r"\bgood_qty\b", r"\bscrap_qty\b", r"\bitem_code\b", r"\bqty_done\b",
    r"\bmessage_id\b", r"\bexternal_ref\b", r"\bcustomer_code\b",
    r"\bsales-order-import\b", r"\bproduction-confirmation\b", r"\binventory-adjustment\b",
    r"\bwork-order-to-stock\b", r"\bpurchase-to-receipt\b", r"\bmrp-run\b", r"\bretry-storm\b",
    r"\bmqtt-confirmation\b",
    r"\bacme-discrete\b", r"\bbluechem-process\b", r"\bcobalt-multiplant\b",
    r"\bdelta-integrated\b",
    r"\bsampleplant\b", r"wms/events", r"plant/\+/confirmations", r"plant/\{tenant\}",
    r"\balembic_version\b",
]
_PATTERN = re.compile("|".join(f"(?:{w})" for w in APP_WORDS))


def offending_lines(root: Path = SRC) -> list[str]:
    out = []
    for path in sorted(root.rglob("*")):
        if path.is_dir() or path.suffix in {".pyc", ".desc"} or "__pycache__" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for n, line in enumerate(text.splitlines(), 1):
            m = _PATTERN.search(line)
            if m:
                out.append(f"{path.relative_to(root.parent)}:{n}: {m.group(0)!r}: "
                           f"{line.strip()[:100]}")
    return out


def test_src_names_no_sample_plant_word():
    found = offending_lines()
    assert not found, ("src/ must not know the sample plant; move these to its spec or plugin:\n"
                       + "\n".join(found))


def test_the_check_would_catch_a_word(tmp_path: Path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text('PATH = "/api/{t}/work-orders"\n')
    assert offending_lines(tmp_path / "pkg")

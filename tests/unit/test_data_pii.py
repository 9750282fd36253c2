"""Personal data inside free text: the finder, the scrub rule, type-aware names."""

import sqlalchemy as sa

from plantstage.data import _pii
from plantstage.data._classify import classify, sensitive_by_name
from plantstage.data._mask import ColumnMasker, Keyed, value_hash
from plantstage.spec.masking import MaskRule, RefreshSpec


def kinds(text: str) -> list[tuple[str, str]]:
    return [(f.kind, f.text) for f in _pii.find(text)]


def test_finds_personal_data_inside_text():
    assert kinds("Call Jennifer Smith at +49 30 1234567 or jen.smith@acme.com") == [
        (_pii.NAME, "Jennifer Smith"), (_pii.PHONE, "+49 30 1234567"),
        (_pii.EMAIL, "jen.smith@acme.com")]
    assert kinds("Mr Brown phoned (030) 555-1234; IBAN DE89 3704 0044 0532 0130 00") == [
        (_pii.NAME, "Mr Brown"), (_pii.PHONE, "(030) 555-1234"),
        (_pii.IBAN, "DE89 3704 0044 0532 0130 00")]
    assert kinds("ship via 555-123-4567 today")[0][0] == _pii.PHONE


def test_codes_dates_amounts_and_reserved_addresses_are_not_personal():
    for text in ["WO-2024-000123 qty 1234.5678 at 12:30", "MES-1234567", "2024/03/01 10:00",
                 "total 1 234 567 units", "high-volume-discrete", "ops@plant.example",
                 "Precision Fox bolt M12 x 1.25", "DE89 3704 0044 0532 0130 01"]:
        assert kinds(text) == [], text


def test_scrub_replaces_findings_and_known_values_keeps_the_rest():
    keyed = Keyed(b"k" * 32)
    m = ColumnMasker(keyed, "orders.remarks", MaskRule(rule="scrub"),
                     avoid={value_hash("xochitl ngata")})
    out = m.mask("Call Jennifer Smith at +49 30 1234567 or jen@acme.com; Xochitl Ngata too")
    assert out.startswith("Call ") and out.endswith(" too")
    for gone in ("Jennifer Smith", "1234567", "jen@acme.com", "Xochitl Ngata"):
        assert gone not in out
    # an address inside a note becomes what the email rule makes of it elsewhere
    email = ColumnMasker(keyed, "c.email", MaskRule(rule="email")).mask("jen@acme.com")
    assert email in out
    assert m.mask("deliver to dock 3") == "deliver to dock 3" and m.mask(None) is None


def test_type_aware_names():
    md = sa.MetaData()
    t = sa.Table("x", md, sa.Column("account", sa.Integer, sa.ForeignKey("y.id")),
                 sa.Column("tax_id", sa.Integer), sa.Column("unit_price", sa.Numeric),
                 sa.Column("email", sa.String(80)), sa.Column("birth_date", sa.Date),
                 sa.Column("created_at", sa.DateTime))
    assert not sensitive_by_name("account", t.c.account, key=True)
    assert not sensitive_by_name("tax_id", t.c.tax_id)
    assert sensitive_by_name("unit_price", t.c.unit_price)
    assert sensitive_by_name("email", t.c.email)
    assert sensitive_by_name("birth_date", t.c.birth_date)
    assert not sensitive_by_name("created_at", t.c.created_at)


def test_kept_free_text_with_personal_data_is_unclassified(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE o (id INTEGER PRIMARY KEY, note TEXT, code VARCHAR(20))")
        c.exec_driver_sql("INSERT INTO o VALUES (1, 'ring Maria Lopez on 0171 2345678', "
                          "'A-1'), (2, 'fine', 'B-2')")
    md = sa.MetaData()
    md.reflect(eng)

    def plans(rules: dict) -> dict:
        spec = RefreshSpec.model_validate({"rules": {"o": rules}})
        return {p.column: p for p in classify(eng, md, spec.rules, ["o"])}

    p = plans({"*": "keep"})
    assert p["note"].status == "unclassified" and p["note"].free_text_pii
    assert "phone numbers in 1 of 2 sampled values" in p["note"].reason
    assert p["code"].status == "kept-by-wildcard"
    assert plans({"note": "keep", "*": "keep"})["note"].reason.startswith("is ruled keep")
    assert plans({"note": {"rule": "keep", "reviewed": True}, "*": "keep"})["note"].status == \
        "kept"
    assert plans({"note": "scrub", "*": "keep"})["note"].status == "masked"

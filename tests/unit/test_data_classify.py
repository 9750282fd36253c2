"""Coverage: sensitive-looking columns must be classified; new columns are schema drift."""

import sqlalchemy as sa

from plantstage.data._classify import classify, sensitive_by_content, sensitive_by_name
from plantstage.spec.masking import RefreshSpec


def test_names_and_contents():
    assert sensitive_by_name("contact_name") and sensitive_by_name("unit_price")
    assert not sensitive_by_name("message_id") and not sensitive_by_name("qty_done")
    assert sensitive_by_content(["a@b.com", "c@d.org"]) == "values look like e-mail addresses"
    assert sensitive_by_content(["(030) 555-1234", "+49 30 1234567"])
    assert sensitive_by_content(["WO-1000001", "GRN-100012345"]) is None


def test_classify(tmp_path):
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'p.db'}")
    with eng.begin() as c:
        c.exec_driver_sql("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, note TEXT, "
                          "added TEXT)")
        c.exec_driver_sql("CREATE TABLE log (id INTEGER PRIMARY KEY, info TEXT, qty INTEGER)")
        c.exec_driver_sql("INSERT INTO log VALUES (1, 'x@y.com', 1)")
    md = sa.MetaData()
    md.reflect(eng)
    spec = RefreshSpec.model_validate({"rules": {"people": {"name": "person", "note": "keep",
                                                            "id": "keep"}}})
    plans = {(p.table, p.column): p for p in classify(eng, md, spec.rules, ["people", "log"])}
    assert plans[("people", "name")].status == "masked"
    assert plans[("people", "note")].status == "kept"
    assert plans[("people", "added")].status == "drift"
    assert plans[("log", "info")].status == "unclassified"  # by content
    assert plans[("log", "qty")].status == "not-sensitive"
    star = RefreshSpec.model_validate({"rules": {"people": {"name": "person", "*": "keep"}}})
    plans = {(p.table, p.column): p for p in classify(eng, md, star.rules, ["people"])}
    assert plans[("people", "added")].status == "kept-by-wildcard"


def test_table_patterns_and_shorthand():
    spec = RefreshSpec.model_validate({"rules": {
        "ir_model": {"id": "keep", "name": "token"}, "ir_*": "keep", "log_?": {"rule": "null"},
        "res_partner": {"*": "keep"}}})
    got = spec.table_rules(["ir_model", "ir_ui_view", "log_1", "log_10", "res_partner", "x"])
    assert set(got) == {"ir_model", "ir_ui_view", "log_1", "res_partner"}
    assert got["ir_model"]["name"].rule == "token"  # its own entry wins over the pattern
    assert got["ir_ui_view"]["*"].rule == "keep" and got["log_1"]["*"].rule == "null"


def test_a_pattern_must_match_a_table(tmp_path):
    import pytest

    from plantstage.data._plan import check_spec_against
    from plantstage.errors import SpecError

    md = sa.MetaData()
    sa.Table("ir_model", md, sa.Column("id", sa.Integer, primary_key=True))
    check_spec_against(RefreshSpec.model_validate({"rules": {"ir_*": "keep"}}), md, "s.yaml")
    with pytest.raises(SpecError, match="no table in production matches 'mail_\\*'"):
        check_spec_against(RefreshSpec.model_validate({"rules": {"mail_*": "keep"}}), md,
                           "s.yaml")

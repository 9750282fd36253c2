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

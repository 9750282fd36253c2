"""Masking rules: keyed determinism, format, uniqueness, tolerance, order of dates."""

from datetime import datetime
from decimal import Decimal

import pytest

from plantstage.data._mask import ColumnMasker, Keyed, RefreshError, RowMasker, value_hash
from plantstage.spec.masking import MaskRule

KEY = Keyed(b"k" * 32)


def masker(rule, **kw) -> ColumnMasker:
    return ColumnMasker(KEY, "t.c", MaskRule.model_validate(rule), **kw)


def test_same_input_same_output_across_tables_and_keys_differ():
    a, b = masker("email"), masker("email")  # two tables, same domain
    assert a.mask("ann@corp.com") == b.mask("ANN@corp.com ")  # normalized input
    other = ColumnMasker(Keyed(b"x" * 32), "t.c", MaskRule(rule="email"))
    assert other.mask("ann@corp.com") != a.mask("ann@corp.com")


def test_fakes_keep_the_format():
    assert "@" in masker("email").mask("ann@corp.com")
    assert masker("email").mask("ann@corp.com").endswith(".example")
    phone = masker("phone").mask("(034)051-2775x12")
    assert len(phone) == len("(034)051-2775x12") and phone[0] == "(" and phone[-3] == "x"
    tok = masker("token").mask("AB-1234-cd")
    assert len(tok) == 10 and tok[2] == "-" and tok[:2].isupper() and tok[-2:].islower()
    assert isinstance(masker("token").mask(4711), int)
    assert len(masker("person").mask("Jane Roe").split()) == 2
    assert len(masker("company").mask("Acme")) > 3


def test_truncated_to_the_column_length():
    assert len(masker("address", max_length=12).mask("1 Main Street")) <= 12


def test_unique_columns_stay_unique_with_collisions_forced():
    # One-digit tokens: ten inputs onto ten outputs collide almost surely without retries.
    m = masker({"rule": "token"}, unique=True)
    outs = [m.mask(str(i)) for i in range(10)]
    assert sorted(outs) == [str(i) for i in range(10)]
    with pytest.raises(RefreshError, match="too small"):
        m.mask("0")  # an eleventh one-digit value has nowhere left to go


def test_collision_resolution_is_shared_by_the_domain():
    shared: dict = {}
    parent = masker({"rule": "token", "domain": "code"}, unique=True, overrides=shared)
    child = masker({"rule": "token", "domain": "code"}, overrides=shared)
    outs = {str(i): parent.mask(str(i)) for i in range(10)}
    assert all(child.mask(k) == v for k, v in outs.items())  # joins on the masked key match


def test_never_emits_a_production_value():
    first = masker("city").mask("Springfield")
    m = masker("city", avoid={value_hash(first)})
    assert m.mask("Springfield") != first


def test_noise_within_tolerance_and_totals_too():
    m = masker({"rule": "noise", "tolerance": 0.05})
    values = [Decimal(f"{i * 3.17 + 1:.2f}") for i in range(500)]
    out = [m.mask(v, row_key=i) for i, v in enumerate(values)]
    assert all(abs(o - v) <= v * Decimal("0.05") for o, v in zip(out, values, strict=True))
    assert all(o.as_tuple().exponent == -2 for o in out)
    assert abs(sum(out) - sum(values)) <= sum(values) * Decimal("0.05")
    assert out != values
    assert m.mask(values[3], row_key=3) == out[3]  # deterministic
    assert abs(m.mask(1000, row_key=1) - 1000) <= 50


def test_shift_keeps_order_within_and_across_records():
    a = masker({"rule": "shift", "by": "tenant_id", "max_days": 30})
    b = masker({"rule": "shift", "by": "tenant_id", "max_days": 30})
    sent, posted = datetime(2024, 3, 1, 8), datetime(2024, 3, 1, 9)
    s2, p2 = a.mask(sent, by=1), b.mask(posted, by=1)
    assert s2 < p2 and s2 != sent and (p2 - s2) == (posted - sent)
    assert 1 <= abs((s2 - sent).days) <= 30
    assert a.mask("2024-03-01 08:00:00", by=1) == str(s2)


def test_row_masker_runs_only_changing_rules():
    rm = RowMasker(["id", "name", "price"],
                   {"name": masker("keep"), "price": masker({"rule": "null"})}, ["id"])
    assert rm((1, "x", 2)) == (1, "x", None)
    assert not RowMasker(["id"], {"id": masker("keep")}, ["id"]).active


def test_short_keys_are_refused():
    with pytest.raises(RefreshError, match="too short"):
        Keyed(b"short")


def test_keyed_digest_is_hmac_sha256():
    import hashlib
    import hmac

    for key in (b"k" * 32, b"long-key-" * 10):
        keyed = Keyed(key)
        for domain, value, attempt in (("email", "ann@corp.com", 0), ("noise", "7\x1e1.50", 3)):
            msg = f"{domain}\x1f{value}\x1f{attempt}".encode()
            assert keyed.digest(domain, value, attempt) == hmac.new(key, msg,
                                                                    hashlib.sha256).digest()


@pytest.mark.parametrize("values", [
    [Decimal("12.50"), None, Decimal("0.0000001"), Decimal("-3"), Decimal("1E+2"), 7, 2.5],
    ["a@b.com", None, "Ann Roe"],
])
def test_mask_column_is_mask_per_value(values):
    rule = "email" if isinstance(values[0], str) else {"rule": "noise", "tolerance": 0.2}
    keys = [str(i) for i in range(len(values))]
    a, b = masker(rule), masker(rule)
    assert a.mask_column(values, keys) == [b.mask(v, k) for v, k in zip(values, keys, strict=True)]


@pytest.mark.parametrize("rule", ["token", "digits", "phone", "person", "first_name", "last_name",
                                  "company", "email", "address", "city"])
@pytest.mark.parametrize("unique", [False, True])
def test_text_column_is_mask_per_value(rule, unique):
    # A column at a time takes an inlined first attempt and masks repeats once: the values,
    # the collision re-draws shared by the domain and the "never a production value" checks
    # must come out as they do one value at a time.
    values = ["Ann Roe", "ann roe ", None, "+49 30 1234567", "Ünïcode Straße 7", "x1", 12345,
              "Ann Roe", "ab-12-CD", "(030) 555-0199", "Ann Roe", 7, "ÄÖÜ 123 ½ ²"]
    if not unique:  # repeats of a unique column are re-drawn: keep within small domains
        values = values + [f"value {i % 40}" for i in range(300)]
    first = masker(rule).mask_column(values[3:5])  # some outputs made production values
    avoid = {value_hash(v) for v in first if v is not None}
    col = masker(rule, unique=unique, avoid=avoid, max_length=12)
    one = masker(rule, unique=unique, avoid=avoid, max_length=12)
    try:
        want = [one.mask(v) for v in values]
    except RefreshError:  # e.g. unique digits of text without digits: no distinct value
        with pytest.raises(RefreshError, match="too small"):
            col.mask_column(values[:9]) + col.mask_column(values[9:])
        return
    assert col.mask_column(values[:9]) + col.mask_column(values[9:]) == want
    assert col.overrides == one.overrides and col._seen == one._seen

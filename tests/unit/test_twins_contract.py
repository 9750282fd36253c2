"""Contract building blocks: templates, exact decimal quantities, JSON rendering."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from plantstage.spec.twins import QuantitySpec, template_problem
from plantstage.twins.contract import (
    ContractError,
    JsonTemplate,
    TextTemplate,
    dumps,
    get_path,
    parse_json,
    quantity,
    render_value,
)

KG = QuantitySpec(unit="kg", decimals=3)
EA = QuantitySpec(unit="EA", decimals=0, encoding="number")


@pytest.mark.parametrize("raw", [Decimal("2.75"), "2.75", 2.75, "2.750 kg", " 2.7500 "])
def test_quantities_keep_their_declared_decimals(raw):
    q = quantity(raw, KG, "qty")
    assert q.value == Decimal("2.750") and q.text == "2.750" and str(q) == "2.750 kg"
    assert q.json() == '"2.750"'


def test_a_float_is_taken_by_its_shortest_repr_not_its_binary_expansion():
    assert quantity(0.1, KG, "q").text == "0.100"
    assert quantity(1e-3, KG, "q").text == "0.001"


@pytest.mark.parametrize("raw, msg", [
    ("2.7501", "more than 3 decimal"), (Decimal("1E-4"), "more than 3 decimal"),
    ("2 lb", "in lb, the contract says kg"), ("x", "not a decimal"), (None, "must be a number"),
    (True, "must be a number"), ("NaN", "not a decimal"), ("Infinity", "not a decimal"),
    ([1], "not a decimal"),
])
def test_quantities_are_refused_rather_than_rounded(raw, msg):
    with pytest.raises(ContractError, match=msg):
        quantity(raw, KG, "qty")


def test_whole_numbers_as_json_numbers():
    assert quantity(4, EA, "n").json() == "4"
    assert quantity("4.0", EA, "n").json() == "4"
    with pytest.raises(ContractError):
        quantity("4.5", EA, "n")


def test_json_template_types_nesting_and_escapes():
    t = JsonTemplate({"id": "{id}", "n": "{n}", "q": {"value": "{q}", "uom": "{q.unit}"},
                      "label": "lot-{id}-{{x}}", "none": None, "list": ["{n}", 1, True],
                      "text": 'quote " and é'}, "contract.publish.payload")
    env = {"id": "A1", "n": 7, "q": quantity("2.75", KG, "q")}
    out = t.render(env)
    assert json.loads(out) == {"id": "A1", "n": 7, "q": {"value": "2.750", "uom": "kg"},
                               "label": "lot-A1-{x}", "none": None, "list": [7, 1, True],
                               "text": 'quote " and é'}
    # byte-identical to json.dumps for plain values
    plain = {"id": "A1", "n": 7, "label": "lot-A1-{x}", "none": None, "list": [7, 1, True],
             "text": 'quote " and é'}
    t2 = JsonTemplate({k: v for k, v in {"id": "{id}", "n": "{n}", "label": "lot-{id}-{{x}}",
                                         "none": None, "list": ["{n}", 1, True],
                                         "text": 'quote " and é'}.items()}, "p")
    assert t2.render(env) == json.dumps(plain, separators=(",", ":")).encode()
    assert t.uses == {"id": "contract.publish.payload.id", "n": "contract.publish.payload.n",
                      "q": "contract.publish.payload.q.value"}
    assert t.missing({"id": 1}) == "n"


def test_text_templates_topics_and_filters():
    t = TextTemplate("plant/{tenant}/lines/{line}/out")
    assert t.render({"tenant": "a", "line": "L1"}) == "plant/a/lines/L1/out"
    assert t.mqtt_filter() == "plant/+/lines/+/out"
    m = t.pattern().match("plant/a/lines/L1/out")
    assert m and m.group("tenant") == "a"
    assert TextTemplate("{x}").single == ("x", None)
    assert TextTemplate("{q.unit}").render({"q": quantity(1, KG, "q")}) == "kg"


def test_template_syntax_errors_are_named():
    assert template_problem({"a": ["ok {x}", "bad {x"]}).startswith("bad placeholder")
    assert template_problem("{not valid}") is not None
    assert template_problem("{{literal}} {x.unit}") is None


def test_exact_json_in_and_out():
    body = parse_json(b'{"q": {"value": 2.750}, "n": 3}')
    assert body["q"]["value"] == Decimal("2.750") and get_path(body, "q.value") == Decimal("2.750")
    with pytest.raises(KeyError):
        get_path(body, "q.uom")
    assert dumps({"v": Decimal("2.750"), "q": quantity(3, EA, "n")}) == b'{"v":2.750,"q":3}'
    assert render_value({"a": "{q}", "b": "x{q}"}, {"q": quantity("1.5", KG, "q")})["b"] == \
        "x1.500"

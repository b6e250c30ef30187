"""The rule expression language: semantics (null-safety, dates in the customer's calendar) and load-time rejection."""

import itertools
from datetime import date

import pytest

from shared.domain.model import Customer, Person, Purchase
from shared.rules.expressions import ExpressionError, compile_expression
from shared.rules.expressions.helpers import _first_purchase, _last_purchase, _matching_purchases

TODAY = date(2026, 1, 1)
CUSTOMER = Customer.from_dict({
    "id": "C-1", "name": "Sample", "products": ["A", "C"], "plan": "Basic", "contract_end": "2026-02-15",
    "contract_status": "active", "birthday": "1980-02-29", "annual_spend": 1_200_000, "usage": {"reports": 120},
    "owner": {"name": "Rep", "email": "rep@contoso.com"}, "stage": "onboarding",
    "purchases": [{"product": "A", "date": "2025-11-22", "amount": 120000},
                  {"product": "C", "date": "2023-06-01", "amount": 50000}],
    "deals": [{"id": "D-1", "stage": "won", "amount": 500000, "segment": "smb"}],
    "custom": {"industry": "retail", "since": "2020-05-01", "tags": ["vip"]},
})
EMPTY = Customer(id="C-2")


def run(source: str, customer: Customer = CUSTOMER, today: date = TODAY, prev: Customer | None = None):
    return compile_expression(source).fn(customer, today, prev)


@pytest.mark.parametrize(("source", "expected"), [
    ("'A' in products and 'B' not in products", True),
    ("'A' in products and 'C' in products and 'D' not in products", True),
    ("plan == 'Basic' and days_until(contract_end) <= 90", True),
    ("0 <= days_until(contract_end) < 30", False),
    ("months_until(contract_end) < 3", True),
    ("usage.reports >= 100 and usage['reports'] < 200", True),
    ("owner.email == 'rep@contoso.com'", True),
    ("annual_spend > 1000000", True),
    ("plan in ['Basic', 'Standard']", True),
    ("custom.industry == 'retail' and 'vip' in custom.tags", True),
    ("days_since(custom.since) > 365", True),
    ("any_purchase(product='A', within_days=60)", True),
    ("any_purchase(product='C', within_days=60)", False),
    ("any_purchase(min_amount=100000)", True),
    ("count_purchases() == 2 and spend(within_days=365) == 120000", True),
    ("last_purchase('A') == date('2025-11-22')", True),
    ("any(d.stage == 'won' and d.amount >= 500000 for d in deals)", True),
    ("count(p.amount > 100000 for p in purchases) == 1", True),
    ("all(p.product in products for p in purchases)", True),
    ("deals[0].segment == 'smb'", True),
    ("age(birthday) == 45", True),
    ("today.month == 1 and today == date('2026-01-01')", True),
    ("len(products) == 2 and lower(plan) == 'basic'", True),
    ("contract_end - today == 45", True),
    ("annual_spend / 12 >= 100000", True),
    ("rfm.label in ['new', 'potential', 'champions', 'loyal', 'at_risk', 'hibernating']", True),
])
def test_semantics(source, expected):
    assert run(source) == expected


@pytest.mark.parametrize("source", [
    "plan == 'Basic'", "plan != 'Basic'", "annual_spend > 0", "annual_spend < 0", "days_until(contract_end) <= 90",
    "usage.reports >= 100", "owner.email == 'x'", "owner.email != 'x'", "manager.name != 'x'",
    "'A' in custom.tags", "'A' not in custom.tags", "custom.nope.deeper > 3", "contract_end < today",
    "annual_spend + 1 > 0", "is_anniversary(birthday)", "any_purchase(product='A')",
])
def test_missing_fields_are_null_and_comparisons_with_null_are_false(source):
    assert not run(source, EMPTY)


def test_null_literal_tests_presence_and_not_null_is_true():
    assert run("contract_end != null and manager == null")
    assert run("contract_end == null and not contract_end", EMPTY)
    assert run("annual_spend / 0", CUSTOMER) is None  # division by zero is null, not an error
    assert run("custom.industry * 1000000000") is None  # text times a number: null, never a huge string


def test_prev_is_the_previous_version_and_null_in_a_sweep():
    rule = "stage == 'onboarding' and prev.stage != 'onboarding'"
    assert run(rule, prev=Customer(id="C-1", stage="implementation"))
    assert not run(rule, prev=Customer(id="C-1", stage="onboarding"))
    assert not run(rule, prev=None)  # sweep: prev is null, so the transition is not seen
    assert not run("any(d.stage == 'won' for d in prev.deals)", prev=None)


@pytest.mark.parametrize(("birthday", "today", "expected"), [
    ("1980-02-29", date(2025, 2, 28), True),  # common year: 29 Feb falls on 28 Feb
    ("1980-02-29", date(2025, 3, 1), False),
    ("1980-02-29", date(2024, 2, 28), False),  # leap year: the real day
    ("1980-02-29", date(2024, 2, 29), True),
    ("1980-11-22", date(2025, 11, 22), True),
    ("2025-11-22", date(2025, 11, 22), False),  # the day itself is not an anniversary
])
def test_is_anniversary(birthday, today, expected):
    assert run("is_anniversary(birthday)", Customer(id="C", birthday=date.fromisoformat(birthday)), today) == expected


def test_is_anniversary_years_and_purchase_anniversary():
    customer = Customer.from_dict({"id": "C", "purchases": [{"product": "A", "date": "2024-11-22"}]})
    assert run("is_anniversary(first_purchase('A'), years=1)", customer, date(2025, 11, 22))
    assert not run("is_anniversary(first_purchase('A'), years=1)", customer, date(2026, 11, 22))
    assert run("years_since(first_purchase('A')) == 2", customer, date(2026, 11, 22))


@pytest.mark.parametrize(("end", "today", "months"), [
    ("2026-04-01", date(2026, 1, 1), 3), ("2026-03-31", date(2026, 1, 1), 2), ("2026-01-01", date(2026, 1, 1), 0),
    ("2025-12-15", date(2026, 1, 1), 0), ("2025-11-30", date(2026, 1, 1), -1),
])
def test_months_until(end, today, months):
    assert run("months_until(contract_end)", Customer(id="C", contract_end=date.fromisoformat(end)), today) == months


@pytest.mark.parametrize(("source", "message"), [
    ("__import__('os').system('x')", "reserved"),
    ("products.__class__", "not allowed"),
    ("open('/etc/passwd')", "unknown function"),
    ("eval('1')", "unknown function"),
    ("(lambda: 1)()", "helper calls"),
    ("[p for p in products]", "list comprehension"),
    ("{p: 1 for p in products}", "dict comprehension"),
    ("any(x for x in [1, 2, 3])", "list field"),
    ("any(x for x in products for y in products)", "only one 'for'"),
    ("products.pop()", "not methods"),
    ("plann == 'Basic'", "did you mean 'plan'"),
    ("owner.phone == 'x'", "no field 'phone'"),
    ("contract_end > 5", "cannot compare a date with a number"),
    ("contract_end == '2026-01-01'", "date('2026-01-31')"),
    ("2 ** 1000", "'**'"),
    ("'x' * 3", "cannot apply"),
    ("(x := 1)", "':='"),
    ("f'{plan}'", "f-string"),
    ("plan is None", "'is'"),
    ("products[0:2]", "slice"),
    ("_rfm", "reserved"),
    ("usage['__class__']", "not allowed"),
    ("days_until()", "takes 1 argument"),
    ("any_purchase(prodcut='A')", "no parameter 'prodcut'"),
    ("date('tomorrow')", "date() takes one literal"),
    ("plan ==", "syntax error"),
    ("", "empty"),
])
def test_rejected_at_load(source, message):
    with pytest.raises(ExpressionError) as caught:
        compile_expression(source)
    assert message in str(caught.value)


def test_compiled_once_into_a_plain_function():
    compiled = compile_expression("'A' in products and days_until(contract_end) <= 90")
    assert compiled.fn.__code__.co_name == "<lambda>"
    assert compiled.uses == {"products", "contract_end", "today"}
    assert compiled.fn(CUSTOMER, TODAY, None) is True


def test_field_schema_follows_the_model_dataclasses():
    import dataclasses

    from shared.domain.model import Customer, Deal
    from shared.rules.expressions.schema import DATE, LIST, NUM, SCHEMAS, field_of

    assert set(SCHEMAS["customer"]) == {f.name for f in dataclasses.fields(Customer)}
    assert "extra" not in SCHEMAS["deal"] and set(SCHEMAS["deal"]) < {f.name for f in dataclasses.fields(Deal)}
    assert {"score", "label", "recency_days"} <= set(SCHEMAS["rfm"])
    assert (field_of(int | None).type, field_of(int | None).nullable) == (NUM, True)
    assert field_of(tuple[Deal, ...]).item == "deal" and field_of(tuple[str, ...]).type == LIST
    assert SCHEMAS["customer"]["birthday"].type == DATE and not SCHEMAS["customer"]["id"].nullable
    # A field added to the model is usable in rules at once; a typo is still a load error.
    assert compile_expression("annual_spend >= 1000000").type == "boolean"
    with pytest.raises(ExpressionError, match="annual_spend"):
        compile_expression("anual_spend > 1")


# Dates typed by the schema get inline code (no helper call); the same expression over a custom field, which is
# untyped, goes through the runtime helpers. Both must agree on every edge: 29 February, year ends, null, future.
_EDGE_DATES = [None, date(1980, 2, 29), date(1981, 2, 28), date(1981, 3, 1), date(1979, 12, 31), date(1990, 1, 1),
               date(2024, 2, 29), date(2025, 2, 28), date(2026, 2, 27), date(2027, 6, 15), date(1986, 11, 24)]
_EDGE_TODAYS = [date(2025, 2, 28), date(2025, 3, 1), date(2024, 2, 28), date(2024, 2, 29), date(2026, 1, 1),
                date(2026, 12, 31), date(2026, 11, 24), date(2026, 2, 27), date(2027, 2, 28)]


@pytest.mark.parametrize("template", [
    "age({})", "years_since({})", "40 <= age({}) < 50", "is_anniversary({})", "is_anniversary({}, 1)",
    "is_anniversary({}, years=45)", "days_until({})", "days_since({})", "0 <= days_until({}) <= 90",
    "-30 < days_since({}) <= 400 and 'A' in products", "days_until({}) + 1 > 5", "10 // days_since({})",
    "days_since({}) % 7 == 0", "age({0}) == years_since({0})", "age({}) != 45", "days_until({}) == null",
])
def test_inline_date_code_agrees_with_the_helpers(template):
    typed = compile_expression(template.format("birthday"))
    untyped = compile_expression(template.format("custom.d"))
    for day in _EDGE_DATES:
        customer = Customer(id="C", birthday=day, products=("A",), custom={"d": day})
        for today in _EDGE_TODAYS:
            assert typed.fn(customer, today, None) == untyped.fn(customer, today, None), (template, day, today)


def test_null_guards_of_nested_values_and_chains():
    nameless = Customer(id="C", owner=Person(name=None), contract_end=date(2026, 3, 1))
    assert not run("owner.name == 'Rep'", nameless) and not run("owner.name != 'Rep'", nameless)
    assert not run("owner.name == 'Rep'", EMPTY) and not run("owner.name != 'Rep'", EMPTY)
    assert run("owner.name == 'Rep' and owner.name != 'Other'")
    assert run("30 < days_until(contract_end) < 90 > 60", nameless) is True
    assert run("30 < days_until(contract_end) < 90 > 60", EMPTY) is False
    assert run("0 <= annual_spend <= 2000000 and annual_spend > 5", CUSTOMER) is True
    assert run("0 <= annual_spend <= 2000000", EMPTY) is False
    assert run("days_until(contract_end) + 1", EMPTY) is None and run("days_until(contract_end) + 1") == 46
    assert run("birthday.month == 2 and birthday.day == 29") and not run("birthday.month == 2", EMPTY)


def test_first_and_last_purchase_pick_the_dates_the_matching_purchases_give():
    today = date(2026, 11, 24)
    kinds = [Purchase("A", date(2025, 1, 5)), Purchase("A", date(2024, 3, 1)), Purchase("B", date(2023, 1, 1)),
             Purchase("A", None), Purchase("B", date(2027, 1, 1)), Purchase("A", date(2024, 3, 1), amount=5)]
    for size in range(4):
        for purchases in itertools.product(kinds, repeat=size):
            for product in (None, "A", "B", "C"):
                dates = [p.date for p in _matching_purchases(purchases, today, product, None) if p.date]
                assert _first_purchase(purchases, today, product) == (min(dates) if dates else None)
                assert _last_purchase(purchases, today, product) == (max(dates) if dates else None)
    assert _first_purchase(None, today) is None and _last_purchase((), today, "A") is None

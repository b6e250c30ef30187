"""The baseline of bench/rules.py part 2: what a competent zen-engine user writes to evaluate rule conditions over a
JSON file of customers. Imports only json and zen; runs as its own process, like `crmflow dry-run`.

    python bench/lean_zen.py CUSTOMERS.json CONDITIONS.json FIELDS.json TODAY     → prints "customers hits"

Loads the JSON, builds per customer a small context with just the fields the conditions read (zen-engine converts
its whole context on every call), evaluates each condition compiled once, and counts the hits.
"""

import json
import sys

import zen


def lean_zen(customers_path: str, conditions: list[str], fields: list[str], today: str) -> tuple[int, int]:
    expressions = [zen.compile_expression(source) for source in conditions]
    hits = customers = 0
    with open(customers_path, "rb") as handle:
        records = json.loads(handle.read())
    for record in records:
        context = {key: record.get(key) for key in fields}
        context["today"] = today
        context["bought"] = [p["product"] for p in record.get("purchases") or ()]
        customers += 1
        for expression in expressions:
            if expression.evaluate(context):
                hits += 1
    return customers, hits


if __name__ == "__main__":
    path, conditions, fields, day = sys.argv[1:5]
    with open(conditions, encoding="utf-8") as c, open(fields, encoding="utf-8") as f:
        print(*lean_zen(path, json.load(c), json.load(f), day))

"""The rule expression language: parsed with `ast`, checked against a whitelist, compiled once into Python code.

An expression such as `'A' in products and days_until(contract_end) <= 90` is parsed by Python's own parser, every
node is checked (only literals, customer fields, attribute/index access, comparisons, `in`/`not in`, boolean logic,
arithmetic and the helpers below) and types are inferred from the canonical customer, so typos and nonsense
(`contract_end > 5`, `owner.phone`, `__class__`, `open('x')`) are load errors naming the offending part. The checked
tree is then rewritten into a null-safe Python lambda `f(c, t, prev)` (customer, local date, previous version) and
compiled once: evaluation is plain bytecode, close to a hand-written lambda. Raw rule text is never evaluated.

Semantics: a missing field or key is null; arithmetic with null is null; every comparison with null is false
(`x == null` / `x != null` test presence); `not null` is true. Date helpers use `t`, the customer's local date.

Layout: `schema` (the types of what expressions read, derived from the model), `helpers` (the runtime functions
compiled code calls), `signatures` (what each helper takes and returns), `compiler` (checking and code generation).
"""

from shared.rules.expressions.compiler import (
    MAX_EXPRESSION_CHARS,
    CompiledExpression,
    ExpressionError,
    compile_expression,
)
from shared.rules.expressions.helpers import as_date
from shared.rules.expressions.schema import ANY, DATE, DATETIME, NULL, STR

__all__ = ["ANY", "DATE", "DATETIME", "MAX_EXPRESSION_CHARS", "NULL", "STR", "CompiledExpression", "ExpressionError",
           "as_date", "compile_expression"]

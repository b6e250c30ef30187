"""The compiler: one visit per whitelisted node type (anything else is rejected), typed against the schema, and
rewritten into a null-safe lambda `f(c, t, prev)` compiled once."""

from __future__ import annotations

import ast
import difflib
import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from shared.rules.expressions.helpers import MAX_ROUND_DIGITS, RUNTIME
from shared.rules.expressions.schema import (
    ANY,
    BOOL,
    CUSTOMER,
    DATE,
    DATETIME,
    DEAL,
    LIST,
    MAP,
    NULL,
    NUM,
    RFM,
    SCHEMAS,
    STR,
)
from shared.rules.expressions.signatures import (
    AGGREGATES,
    ALL_HELPERS,
    HELPERS,
    KEYWORD_TYPES,
    SPECIAL_CALLS,
    Helper,
)
from shared.segments.rfm import DEFAULT as DEFAULT_SEGMENTS

MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_DEPTH = 40  # nested operators/calls: far beyond any real rule, far below Python's recursion limit


class ExpressionError(ValueError):
    """A rejected expression: `part` is the offending source text."""

    def __init__(self, message: str, part: str | None = None):
        super().__init__(message)
        self.message = message
        self.part = part

    def __str__(self) -> str:
        return f"{self.message} (in {self.part!r})" if self.part else self.message


_ORDERED = {NUM, STR, DATE, DATETIME}
_CONSTANT_NAMES = {"null": None, "None": None, "true": True, "True": True, "false": False, "False": False}


@dataclass(frozen=True)
class Typed:
    """A compiled sub-expression: Python AST producing the value, its type, and whether it may be null."""

    node: ast.expr
    type: str
    nullable: bool = True
    item: str | None = None


@dataclass(frozen=True)
class CompiledExpression:
    """A checked, compiled expression: call `fn(customer, local_date, prev)`."""

    source: str
    fn: Callable[[Any, date, Any], Any]
    type: str
    uses: frozenset[str]  # top-level names read: lets the evaluator skip work (e.g. RFM) nobody needs


def compile_expression(source: str, *, filename: str = "<rule>", segments: Any = None) -> CompiledExpression:
    """Parse, check and compile one expression. Raises ExpressionError naming the offending part.

    `segments` (a `shared.segments.rfm.Segments`, default the shipped one) gives `rfm.*` its thresholds and the
    labels `rfm.label` may be compared with.
    """
    if not isinstance(source, str) or not source.strip():
        raise ExpressionError("expression is empty")
    if len(source) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is longer than {MAX_EXPRESSION_CHARS} characters")
    text = " ".join(source.strip().splitlines())  # YAML folded strings: newlines are just spaces
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"syntax error: {exc.msg}", text[max(0, (exc.offset or 1) - 1):][:40]) from None
    except (RecursionError, MemoryError):
        raise ExpressionError(f"expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep") from None
    _check_depth(tree.body)  # before any recursive visit
    if segments is None:
        segments = DEFAULT_SEGMENTS
    _check_rfm_labels(tree, text, segments.labels)
    compiler = _Compiler(text)
    typed = compiler.visit(tree.body)
    lam = ast.Lambda(
        args=ast.arguments(posonlyargs=[], args=[ast.arg("c"), ast.arg("t"), ast.arg("prev")], kwonlyargs=[],
                           kw_defaults=[], defaults=[]),
        body=typed.node)
    module = ast.fix_missing_locations(ast.Expression(lam))
    namespace = dict(RUNTIME)
    namespace["_rfm"] = segments.rfm
    namespace.update(compiler.constants)
    # Evaluating the compiled *checked tree* only defines the lambda; user text never reaches eval.
    fn = eval(compile(module, filename, "eval"), namespace)  # noqa: S307
    return CompiledExpression(source, fn, typed.type, frozenset(compiler.uses))


def _literal_number(node: ast.AST) -> float | int | None:
    """The value of a number literal, signs included (`-15`, `+-3`); None for anything else."""
    sign = 1
    while isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        sign = -sign if isinstance(node.op, ast.USub) else sign
        node = node.operand
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool):
        return sign * node.value
    return None


def _check_depth(root: ast.AST) -> None:
    """ExpressionError when the tree is deeper than MAX_EXPRESSION_DEPTH (checked without recursion)."""
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_EXPRESSION_DEPTH:
            raise ExpressionError(f"expression is nested more than {MAX_EXPRESSION_DEPTH} levels deep")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node)
                     if not isinstance(child, ast.expr_context | ast.operator | ast.unaryop | ast.boolop | ast.cmpop))


def _is_rfm_label(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "label" and isinstance(node.value, ast.Name) \
        and node.value.id == "rfm"


def _check_rfm_labels(tree: ast.AST, text: str, labels: tuple[str, ...]) -> None:
    """`rfm.label == 'at_rsk'` would never match: a label named in a comparison must be one segments.yaml gives."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
            named: list[ast.AST] = []
            if _is_rfm_label(left) and isinstance(op, ast.In | ast.NotIn) and \
                    isinstance(right, ast.List | ast.Tuple | ast.Set):
                named = list(right.elts)
            elif _is_rfm_label(left):
                named = [right]
            elif _is_rfm_label(right) and not isinstance(op, ast.In | ast.NotIn):
                named = [left]
            for item in named:
                if isinstance(item, ast.Constant) and isinstance(item.value, str) and item.value not in labels:
                    close = difflib.get_close_matches(item.value, labels, n=1)
                    hint = f"did you mean {close[0]!r}? " if close else ""
                    raise ExpressionError(f"unknown RFM label {item.value!r} ({hint}known: {', '.join(labels)})",
                                          ast.get_source_segment(text, node) or text)
def _name(identifier: str) -> ast.Name:
    return ast.Name(identifier, ast.Load())


def _call(func: str, *args: ast.expr) -> ast.Call:
    return ast.Call(_name(func), list(args), [])


def _const(value: Any) -> ast.Constant:
    return ast.Constant(value)


def _is_not_none(node: ast.expr) -> ast.Compare:
    return ast.Compare(node, [ast.IsNot()], [_const(None)])


def _and(*nodes: ast.expr) -> ast.expr:
    return nodes[0] if len(nodes) == 1 else ast.BoolOp(ast.And(), list(nodes))


_COMPARE_OPS: Mapping[type, str] = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">",
                                    ast.GtE: ">=", ast.In: "in", ast.NotIn: "not in"}
_ARITH_OPS: Mapping[type, str] = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
                                  ast.Mod: "%"}


class _Compiler:
    def __init__(self, source: str):
        self.source = source
        self.temps = itertools.count(1)
        self.constants: dict[str, Any] = {}
        self.uses: set[str] = set()
        self.loop_vars: dict[str, Typed] = {}

    # --- plumbing --------------------------------------------------------------------------------------------
    def part(self, node: ast.AST) -> str:
        return ast.get_source_segment(self.source, node) or type(node).__name__

    def fail(self, node: ast.AST, message: str) -> ExpressionError:
        return ExpressionError(message, self.part(node))

    def temp(self) -> str:
        return f"_v{next(self.temps)}"

    def constant(self, value: Any) -> ast.Name:
        name = f"_k{len(self.constants) + 1}"
        self.constants[name] = value
        return _name(name)

    def bind(self, typed: Typed) -> tuple[ast.expr, ast.expr]:
        """(first use, later uses) of a value that is read twice: a walrus temp unless it is a plain name/const."""
        if isinstance(typed.node, ast.Constant | ast.Name):
            return typed.node, typed.node
        name = self.temp()
        return ast.NamedExpr(ast.Name(name, ast.Store()), typed.node), _name(name)

    def visit(self, node: ast.AST) -> Typed:
        method = getattr(self, f"visit_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in rule expressions")
        return method(node)

    # --- literals and names ----------------------------------------------------------------------------------
    def visit_Constant(self, node: ast.Constant) -> Typed:
        value = node.value
        if value is None:
            return Typed(_const(None), NULL, True)
        if isinstance(value, bool):
            return Typed(_const(value), BOOL, False)
        if isinstance(value, int | float):
            if isinstance(value, int) and abs(value) > 10**15:
                raise self.fail(node, "number is too large")
            return Typed(_const(value), NUM, False)
        if isinstance(value, str):
            return Typed(_const(value), STR, False)
        raise self.fail(node, f"{type(value).__name__} literals are not allowed")

    def visit_List(self, node: ast.List | ast.Tuple | ast.Set) -> Typed:
        if len(node.elts) > 1000:
            raise self.fail(node, "list literal is too long")
        items = [self.visit(element) for element in node.elts]
        types = {item.type for item in items}
        item_type = types.pop() if len(types) == 1 else ANY
        if all(isinstance(item.node, ast.Constant) for item in items):
            values = [item.node.value for item in items]
            try:
                container = frozenset(values)  # constant membership test: one hash lookup
            except TypeError:
                container = tuple(values)
            return Typed(self.constant(container), LIST, False, item_type)
        return Typed(ast.Tuple([item.node for item in items], ast.Load()), LIST, False, item_type)

    visit_Tuple = visit_List
    visit_Set = visit_List

    def visit_Name(self, node: ast.Name) -> Typed:
        name = node.id
        if name.startswith("_"):
            raise self.fail(node, "names starting with '_' are reserved")
        if name in self.loop_vars:
            return self.loop_vars[name]
        if name in _CONSTANT_NAMES:
            return self.visit_Constant(ast.Constant(_CONSTANT_NAMES[name]))
        self.uses.add(name)
        if name == "today":
            return Typed(_name("t"), DATE, False)
        if name == "prev":
            return Typed(_name("prev"), CUSTOMER, True)
        if name == "rfm":
            return Typed(_call("_rfm", _name("c"), _name("t")), RFM, False)
        spec = SCHEMAS[CUSTOMER].get(name)
        if spec is None:
            hint = difflib.get_close_matches(name, [*SCHEMAS[CUSTOMER], "today", "prev", "rfm"], n=1)
            suggestion = f"; did you mean {hint[0]!r}?" if hint else "; custom fields are custom.<name>"
            if name in HELPERS or name in SPECIAL_CALLS:
                suggestion = f"; {name} is a helper: call it as {name}(...)"
            raise self.fail(node, f"unknown field {name!r}{suggestion}")
        return Typed(ast.Attribute(_name("c"), name, ast.Load()), spec.type, spec.nullable, spec.item)

    # --- access ----------------------------------------------------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> Typed:
        if node.attr.startswith("_"):
            raise self.fail(node, "attributes starting with '_' are not allowed")
        base = self.visit(node.value)
        return self.member(node, base, node.attr)

    def member(self, node: ast.AST, base: Typed, key: str) -> Typed:
        schema = SCHEMAS.get(base.type)
        if base.type in (MAP, ANY) or (base.type == DEAL and key not in SCHEMAS[DEAL]):
            if base.type == MAP and not base.nullable:
                return Typed(ast.Call(ast.Attribute(base.node, "get", ast.Load()), [_const(key)], []), ANY)
            return Typed(_call("_get", base.node, _const(key)), ANY)
        if schema is None:
            raise self.fail(node, f"a {base.type} has no field {key!r}")
        spec = schema.get(key)
        if spec is None:
            hint = difflib.get_close_matches(key, list(schema), n=1)
            raise self.fail(node, f"a {base.type} has no field {key!r}"
                                  + (f"; did you mean {hint[0]!r}?" if hint else ""))
        if not base.nullable:
            return Typed(ast.Attribute(base.node, key, ast.Load()), spec.type, spec.nullable, spec.item)
        first, later = self.bind(base)
        value = ast.IfExp(_is_not_none(first), ast.Attribute(later, key, ast.Load()), _const(None))
        return Typed(value, spec.type, True, spec.item)

    def visit_Subscript(self, node: ast.Subscript) -> Typed:
        if isinstance(node.slice, ast.Slice):
            raise self.fail(node, "slices are not allowed")
        base = self.visit(node.value)
        index = self.visit(node.slice)
        if isinstance(index.node, ast.Constant) and isinstance(index.node.value, str):
            if index.node.value.startswith("_"):
                raise self.fail(node, "keys starting with '_' are not allowed")
            if base.type not in (MAP, ANY, LIST):
                return self.member(node, base, index.node.value)
        if base.type not in (MAP, ANY, LIST, STR):
            raise self.fail(node, f"a {base.type} cannot be indexed")
        item_type = base.item if base.type == LIST and base.item else ANY
        return Typed(_call("_get", base.node, index.node), item_type)

    # --- operators -------------------------------------------------------------------------------------------
    def visit_BoolOp(self, node: ast.BoolOp) -> Typed:
        values = [self.visit(value) for value in node.values]
        result = BOOL if all(v.type == BOOL for v in values) else ANY
        return Typed(ast.BoolOp(node.op, [v.node for v in values]), result,
                     any(v.nullable for v in values))

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Typed:
        operand = self.visit(node.operand)
        if isinstance(node.op, ast.Not):
            return Typed(ast.UnaryOp(ast.Not(), operand.node), BOOL, False)
        if isinstance(node.op, ast.USub | ast.UAdd):
            if operand.type not in (NUM, ANY, NULL):
                raise self.fail(node, f"cannot negate a {operand.type}")
            if operand.type == NUM and not operand.nullable:
                return Typed(ast.UnaryOp(node.op, operand.node), NUM, False)
            sign = -1 if isinstance(node.op, ast.USub) else 1
            return Typed(_call("_arith", _const("*"), operand.node, _const(sign)), NUM)
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    def visit_BinOp(self, node: ast.BinOp) -> Typed:
        op = _ARITH_OPS.get(type(node.op))
        if op is None:
            raise self.fail(node, f"operator {_describe(node.op)} is not allowed")
        left, right = self.visit(node.left), self.visit(node.right)
        kinds = (left.type, right.type)
        if kinds == (DATE, DATE) and op == "-":
            return self.guarded(left, right, lambda a, b: ast.Attribute(ast.BinOp(a, ast.Sub(), b), "days",
                                                                         ast.Load()), NUM)
        if left.type == DATE and right.type in (NUM, ANY) and op in "+-":
            days = right.node if op == "+" else _call("_arith", _const("*"), right.node, _const(-1))
            return Typed(_call("_add_days", left.node, days), DATE)
        if NULL in kinds or ANY in kinds or MAP in kinds:
            if not set(kinds) <= {NUM, STR, ANY, NULL}:
                raise self.fail(node, f"cannot apply {op} to a {left.type} and a {right.type}")
            return Typed(_call("_arith", _const(op), left.node, right.node), ANY)
        if kinds == (NUM, NUM) or (kinds == (STR, STR) and op == "+"):
            if op in ("/", "//", "%"):
                return self.guarded(left, right, lambda a, b: ast.BinOp(a, node.op, b), NUM, nonzero=True)
            if not left.nullable and not right.nullable:
                return Typed(ast.BinOp(left.node, node.op, right.node), left.type, False)
            return self.guarded(left, right, lambda a, b: ast.BinOp(a, node.op, b), left.type)
        raise self.fail(node, f"cannot apply {op} to a {left.type} and a {right.type}")

    def guarded(self, left: Typed, right: Typed, build: Callable[[ast.expr, ast.expr], ast.expr], result: str,
                *, nonzero: bool = False) -> Typed:
        """`build(a, b) if a is not None and b is not None [and b != 0] else None`, each operand evaluated once."""
        checks: list[ast.expr] = []
        a_first, a = self.bind(left) if left.nullable else (left.node, left.node)
        if left.nullable:
            checks.append(_is_not_none(a_first))
        b_first, b = self.bind(right) if (right.nullable or nonzero) else (right.node, right.node)
        if right.nullable:
            checks.append(_is_not_none(b_first))
            b_first = b
        if nonzero:
            checks.append(ast.Compare(b_first, [ast.NotEq()], [_const(0)]))
        if not checks:
            return Typed(build(a, b), result, False)
        return Typed(ast.IfExp(_and(*checks), build(a, b), _const(None)), result, True)

    def visit_Compare(self, node: ast.Compare) -> Typed:
        operands = [self.visit(node.left), *(self.visit(c) for c in node.comparators)]
        parts: list[ast.expr] = []
        # Operands read by two comparisons (a < b < c) are bound to a temp at their first read.
        reads: list[tuple[ast.expr, ast.expr]] = [
            self.bind(o) if 0 < i < len(operands) - 1 else (o.node, o.node) for i, o in enumerate(operands)]
        for index, op in enumerate(node.ops):
            left, right = operands[index], operands[index + 1]
            left_node = reads[index][1] if index > 0 else reads[index][0]
            right_node = reads[index + 1][0]
            parts.append(self.compare(node, op, Typed(left_node, left.type, left.nullable, left.item),
                                      Typed(right_node, right.type, right.nullable, right.item)))
        return Typed(_and(*parts), BOOL, False)

    def compare(self, node: ast.AST, op: ast.cmpop, left: Typed, right: Typed) -> ast.expr:
        symbol = _COMPARE_OPS.get(type(op))
        if symbol is None:
            raise self.fail(node, f"comparison {_describe(op)} is not allowed (use == and !=)")
        if symbol in ("in", "not in"):
            return self.membership(node, symbol, left, right)
        if NULL in (left.type, right.type):
            if symbol not in ("==", "!="):
                raise self.fail(node, f"cannot order against null with {symbol}")
            other = right if left.type == NULL else left
            return ast.Compare(other.node, [ast.Is() if symbol == "==" else ast.IsNot()], [_const(None)])
        self.check_comparable(node, symbol, left, right)
        if symbol == "==" and not (left.nullable and right.nullable):
            return ast.Compare(left.node, [op], [right.node])  # None == 'x' is already False
        return self.null_guarded_compare(left, op, right)

    def null_guarded_compare(self, left: Typed, op: ast.cmpop, right: Typed) -> ast.expr:
        """`a is not None and b is not None and a OP b` (guards only for what may be null; each side read once)."""
        checks: list[ast.expr] = []
        left_node, right_node = left.node, right.node
        if left.nullable:
            first, left_node = self.bind(left)
            checks.append(_is_not_none(first))
        if right.nullable:
            first, right_node = self.bind(right)
            checks.append(_is_not_none(first))
        return _and(*checks, ast.Compare(left_node, [op], [right_node]))

    def check_comparable(self, node: ast.AST, symbol: str, left: Typed, right: Typed) -> None:
        if ANY in (left.type, right.type):
            return
        if left.type != right.type:
            hint = ""
            if {left.type, right.type} == {DATE, STR}:
                hint = "; write a date literal as date('2026-01-31')"
            raise self.fail(node, f"cannot compare a {left.type} with a {right.type} using {symbol}{hint}")
        if symbol not in ("==", "!=") and left.type not in _ORDERED:
            raise self.fail(node, f"a {left.type} cannot be ordered with {symbol}")

    def membership(self, node: ast.AST, symbol: str, item: Typed, container: Typed) -> ast.expr:
        if container.type not in (LIST, STR, MAP, ANY):
            raise self.fail(node, f"'{symbol}' needs a list, text or mapping on the right, not a {container.type}")
        if container.type == LIST and container.item not in (None, ANY) and item.type not in (ANY, NULL) \
                and item.type != container.item:
            raise self.fail(node, f"a list of {container.item} never contains a {item.type}")
        if container.type == ANY or (container.type == STR and item.type != STR):
            return _call("_contains", container.node, item.node, _const(symbol == "not in"))
        return self.null_guarded_compare(item, ast.In() if symbol == "in" else ast.NotIn(), container)

    def visit_IfExp(self, node: ast.IfExp) -> Typed:
        test, body, orelse = self.visit(node.test), self.visit(node.body), self.visit(node.orelse)
        result = body.type if body.type == orelse.type else ANY
        return Typed(ast.IfExp(test.node, body.node, orelse.node), result, body.nullable or orelse.nullable)

    # --- calls -----------------------------------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> Typed:
        if isinstance(node.func, ast.Attribute):
            self.visit(node.func.value)  # reports what is wrong inside first (e.g. __import__(...).system)
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, f"only helper calls are allowed ({', '.join(ALL_HELPERS)}), not methods")
        name = node.func.id
        if name.startswith("_"):
            raise self.fail(node, "names starting with '_' are reserved")
        if any(isinstance(arg, ast.Starred) for arg in node.args) or any(k.arg is None for k in node.keywords):
            raise self.fail(node, "* and ** arguments are not allowed")
        if name == "today":
            if node.args or node.keywords:
                raise self.fail(node, "today() takes no arguments")
            self.uses.add("today")
            return Typed(_name("t"), DATE, False)
        if name == "date":
            return self.date_literal(node)
        if name in AGGREGATES:
            return self.aggregate(node, name)
        helper = HELPERS.get(name)
        if helper is None:
            hint = difflib.get_close_matches(name, ALL_HELPERS, n=1)
            raise self.fail(node, f"unknown function {name!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
                            + f" (helpers: {', '.join(ALL_HELPERS)})")
        return self.helper_call(node, name, helper)

    def helper_call(self, node: ast.Call, name: str, helper: Helper) -> Typed:
        given = len(node.args)
        if helper.variadic:
            if given < 1:
                raise self.fail(node, f"{name}() needs at least one argument")
        elif not len(helper.positional) - helper.optional <= given <= len(helper.positional):
            raise self.fail(node, f"{name}() takes {len(helper.positional)} argument(s), got {given}")
        typed_args = [self.argument(arg, helper.positional[0 if helper.variadic else position], name)
                      for position, arg in enumerate(node.args)]
        keywords: list[ast.keyword] = []
        for keyword in node.keywords:
            if keyword.arg not in helper.keywords:
                allowed = ", ".join(helper.keywords) or "none"
                raise self.fail(node, f"{name}() has no parameter {keyword.arg!r} (keywords: {allowed})")
            typed = self.argument(keyword.value, KEYWORD_TYPES[keyword.arg], name)
            keywords.append(ast.keyword(keyword.arg, typed.node))
        if name == "round" and len(node.args) == 2:
            digits = _literal_number(node.args[1])
            if digits is not None and abs(digits) > MAX_ROUND_DIGITS:
                raise self.fail(node.args[1], f"round() takes at most {MAX_ROUND_DIGITS} digits either way")
        if name in ("days_until", "days_since") and typed_args[0].type == DATE:
            return self.inline_days(name, typed_args[0])
        args = [typed.node for typed in typed_args]
        if helper.purchases:
            self.uses.update({"purchases", "today"})
            args = [ast.Attribute(_name("c"), "purchases", ast.Load()), _name("t"), *args]
        elif helper.needs_today:
            self.uses.add("today")
            args = [args[0], _name("t"), *args[1:]]
        return Typed(ast.Call(_name(helper.runtime), args, keywords), helper.result, helper.nullable)

    def inline_days(self, name: str, value: Typed) -> Typed:
        """days_until/days_since of a date-typed value: inline date arithmetic, no call (the hot case)."""
        self.uses.add("today")
        first, later = self.bind(value) if value.nullable else (value.node, value.node)

        def days(d: ast.expr) -> ast.expr:
            diff = ast.BinOp(d, ast.Sub(), _name("t")) if name == "days_until" else ast.BinOp(_name("t"), ast.Sub(), d)
            return ast.Attribute(diff, "days", ast.Load())

        if not value.nullable:
            return Typed(days(value.node), NUM, False)
        return Typed(ast.IfExp(_is_not_none(first), days(later), _const(None)), NUM, True)

    def argument(self, arg: ast.expr, expected: str, name: str) -> Typed:
        typed = self.visit(arg)
        acceptable = {expected, ANY, NULL}
        if expected == DATE:
            acceptable |= {DATETIME, STR}
        if typed.type not in acceptable and expected != ANY:
            raise self.fail(arg, f"{name}() expects a {expected}, got a {typed.type}")
        return typed

    def date_literal(self, node: ast.Call) -> Typed:
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant) \
                or not isinstance(node.args[0].value, str):
            raise self.fail(node, "date() takes one literal 'YYYY-MM-DD'")
        try:
            value = date.fromisoformat(node.args[0].value)
        except ValueError:
            raise self.fail(node, "date() takes one literal 'YYYY-MM-DD'") from None
        return Typed(self.constant(value), DATE, False)

    def aggregate(self, node: ast.Call, name: str) -> Typed:
        runtime, result = AGGREGATES[name]
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.GeneratorExp):
            raise self.fail(node, f"{name}() takes one generator: {name}(x.stage == 'won' for x in deals)")
        gen = node.args[0]
        if len(gen.generators) != 1:
            raise self.fail(gen, "only one 'for' is allowed")
        loop = gen.generators[0]
        if loop.is_async or not isinstance(loop.target, ast.Name) or loop.target.id.startswith("_"):
            raise self.fail(gen, "the loop variable must be a plain name")
        if loop.target.id in self.loop_vars or loop.target.id in SCHEMAS[CUSTOMER]:
            raise self.fail(gen, f"loop variable {loop.target.id!r} hides another name")
        source = self.visit(loop.iter)
        # Bounded input only: a list that belongs to the customer (products, purchases, deals, prev.…).
        if source.type != LIST or isinstance(loop.iter, ast.List | ast.Tuple | ast.Set):
            raise self.fail(loop.iter, "can only loop over a list field of the customer (purchases, deals, ...)")
        var = f"_l{next(self.temps)}"
        self.loop_vars[loop.target.id] = Typed(_name(var), source.item or ANY, False)
        try:
            element = self.visit(gen.elt)
            conditions = [self.visit(condition).node for condition in loop.ifs]
        finally:
            del self.loop_vars[loop.target.id]
        if name == "count":
            conditions = [element.node, *conditions]
            element = Typed(_const(1), NUM, False)
        if not source.nullable and isinstance(source.node, ast.Attribute | ast.Name):
            comprehension = ast.comprehension(ast.Name(var, ast.Store()), source.node, conditions, 0)
            return Typed(_call(runtime, ast.GeneratorExp(element.node, [comprehension])), result, False)
        # Python forbids ':=' in a comprehension's iterable, so a guarded source is bound first:
        # `agg(... for x in _v) if (_v := source) else <agg of nothing>`.
        first, later = self.bind(source)
        comprehension = ast.comprehension(ast.Name(var, ast.Store()), later, conditions, 0)
        empty = {"any": False, "all": True, "count": 0}[name]
        return Typed(ast.IfExp(first, _call(runtime, ast.GeneratorExp(element.node, [comprehension])),
                               _const(empty)), result, False)


def _describe(node: ast.AST) -> str:
    names = {
        "Lambda": "lambda", "ListComp": "a list comprehension", "SetComp": "a set comprehension",
        "DictComp": "a dict comprehension", "GeneratorExp": "a generator (only inside any/all/count)",
        "NamedExpr": "':='", "JoinedStr": "an f-string", "Starred": "'*'", "Await": "await", "Yield": "yield",
        "Dict": "a dict literal", "Pow": "'**'", "BitAnd": "'&' (use 'and')", "BitOr": "'|' (use 'or')",
        "BitXor": "'^'", "LShift": "'<<'", "RShift": "'>>'", "MatMult": "'@'", "Is": "'is'", "IsNot": "'is not'",
        "Invert": "'~'", "Slice": "a slice",
    }
    return names.get(type(node).__name__, type(node).__name__)

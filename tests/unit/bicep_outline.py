"""A small Bicep reader for structural tests (no Bicep compiler can be installed on these machines).

It tokenizes Bicep (strings with `${}` interpolation, comments, multi-line strings) and reads the top-level
declarations — param, var, resource, module, output — with their decorators and values as a light tree:
`Obj` (object literal), `Arr` (array literal), `For` (`[for x in y: body]`), `Cond` (`if (c) body`) and `Expr`
(any other expression, kept as tokens). That is enough to check wiring (module paths, module params, outputs,
identifiers) and values (literals, role assignments, app settings). It does not type-check or evaluate ARM
functions: `az bicep build` and `az deployment sub what-if` remain the real validation.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

# Bicep's built-in functions (those these templates may call) and namespaces.
BUILTIN_FUNCTIONS = frozenset({
    "any", "array", "base64", "bool", "concat", "contains", "dataUri", "dateTimeAdd", "deployment", "empty",
    "endsWith", "environment", "extensionResourceId", "filter", "first", "format", "guid", "indexOf", "int",
    "intersection", "items", "join", "json", "last", "lastIndexOf", "length", "listKeys", "loadFileAsBase64",
    "loadJsonContent", "loadTextContent", "managementGroup", "map", "max", "min", "newGuid", "padLeft", "range",
    "reduce", "reference", "replace", "resourceGroup", "resourceId", "skip", "sort", "split", "startsWith",
    "string", "subscription", "subscriptionResourceId", "substring", "take", "tenant", "tenantResourceId",
    "toLower", "toUpper", "trim", "union", "uniqueString", "uri", "uriComponent", "utcNow",
})
NAMESPACES = frozenset({"az", "sys"})
KEYWORDS = frozenset({"true", "false", "null", "if", "for", "in", "existing"})

_PUNCT = ("==", "!=", "<=", ">=", "&&", "||", "??", "?.", ".?", "=~", "!~", "::", "=>",
          "{", "}", "[", "]", "(", ")", ":", ",", ".", "=", "?", "!", "<", ">", "+", "-", "*", "/", "%", "@", "|", "&")
_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class Token:
    kind: str  # ident | number | string | punct | newline
    text: str
    line: int
    parts: tuple = ()  # strings: literal text pieces (str) and interpolations (tuple of Tokens)

    @property
    def literal(self) -> str | None:
        """The string's value when it has no interpolation, else None."""
        if self.kind != "string" or any(not isinstance(p, str) for p in self.parts):
            return None
        return "".join(self.parts)


class BicepSyntaxError(ValueError):
    pass


def tokenize(source: str) -> list[Token]:
    tokens, _ = _tokenize(source, 0, 1, inside_interpolation=False)
    return tokens


def _tokenize(src: str, i: int, line: int, *, inside_interpolation: bool) -> tuple[list[Token], int]:
    tokens: list[Token] = []
    depth = 0
    while i < len(src):
        c = src[i]
        if c == "\n":
            tokens.append(Token("newline", "\n", line))
            line += 1
            i += 1
        elif c in " \t\r":
            i += 1
        elif src.startswith("//", i):
            while i < len(src) and src[i] != "\n":
                i += 1
        elif src.startswith("/*", i):
            end = src.index("*/", i + 2)
            line += src.count("\n", i, end)
            i = end + 2
        elif src.startswith("'''", i):
            end = src.index("'''", i + 3)
            text = src[i + 3:end]
            tokens.append(Token("string", src[i:end + 3], line, (text,)))
            line += text.count("\n")
            i = end + 3
        elif c == "'":
            token, i, line = _string(src, i, line)
            tokens.append(token)
        elif c.isalpha() or c == "_":
            j = i
            while j < len(src) and (src[j].isalnum() or src[j] == "_"):
                j += 1
            tokens.append(Token("ident", src[i:j], line))
            i = j
        elif c.isdigit():
            j = i
            while j < len(src) and src[j].isdigit():
                j += 1
            tokens.append(Token("number", src[i:j], line))
            i = j
        else:
            punct = next((p for p in _PUNCT if src.startswith(p, i)), None)
            if punct is None:
                raise BicepSyntaxError(f"line {line}: unexpected character {c!r}")
            if inside_interpolation and punct == "}" and depth == 0:
                return tokens, i + 1
            if punct in _OPEN:
                depth += 1
            elif punct in _CLOSE:
                depth -= 1
            tokens.append(Token("punct", punct, line))
            i += len(punct)
    if inside_interpolation:
        raise BicepSyntaxError(f"line {line}: unterminated ${{...}}")
    return tokens, i


def _string(src: str, i: int, line: int) -> tuple[Token, int, int]:
    start, start_line = i, line
    i += 1
    parts: list = []
    buf: list[str] = []
    escapes = {"n": "\n", "r": "\r", "t": "\t", "\\": "\\", "'": "'", "$": "$"}
    while True:
        if i >= len(src) or src[i] == "\n":
            raise BicepSyntaxError(f"line {start_line}: unterminated string")
        c = src[i]
        if c == "\\":
            buf.append(escapes.get(src[i + 1], src[i + 1]))
            i += 2
        elif c == "'":
            i += 1
            break
        elif src.startswith("${", i):
            if buf:
                parts.append("".join(buf))
                buf = []
            inner, i = _tokenize(src, i + 2, line, inside_interpolation=True)
            parts.append(tuple(inner))
        else:
            buf.append(c)
            i += 1
    if buf or not parts:
        parts.append("".join(buf))
    return Token("string", src[start:i], start_line, tuple(parts)), i, line


# -------------------------------------------------------------------------------------------------------------------
# Values
# -------------------------------------------------------------------------------------------------------------------
@dataclass
class Expr:
    """Any expression that is not an object/array literal, kept as tokens."""

    tokens: list[Token]

    @property
    def text(self) -> str:
        return " ".join(t.text for t in self.tokens)

    @property
    def line(self) -> int:
        return self.tokens[0].line if self.tokens else 0

    def is_literal(self) -> bool:
        if len(self.tokens) == 2 and self.tokens[0].text == "-" and self.tokens[1].kind == "number":
            return True
        if len(self.tokens) != 1:
            return False
        t = self.tokens[0]
        return t.kind == "number" or (t.kind == "ident" and t.text in {"true", "false", "null"}) or (
            t.kind == "string" and t.literal is not None)

    @property
    def literal(self):
        """The Python value of a literal (str, int, bool, None); raises ValueError for any other expression."""
        if not self.is_literal():
            raise ValueError(f"line {self.line}: not a literal: {self.text}")
        if len(self.tokens) == 2:
            return -int(self.tokens[1].text)
        t = self.tokens[0]
        if t.kind == "number":
            return int(t.text)
        if t.kind == "string":
            return t.literal
        return {"true": True, "false": False, "null": None}[t.text]

    @property
    def reference(self) -> str | None:
        """The name when the expression is a single identifier (a param, var or symbol), else None."""
        if len(self.tokens) == 1 and self.tokens[0].kind == "ident" and self.tokens[0].text not in KEYWORDS:
            return self.tokens[0].text
        return None

    @property
    def string(self) -> Token | None:
        """The string token when the expression is one (interpolated or not) string."""
        if len(self.tokens) == 1 and self.tokens[0].kind == "string":
            return self.tokens[0]
        return None


@dataclass
class Obj:
    entries: dict[str, object]
    keys_lines: dict[str, int] = field(default_factory=dict)

    def get(self, *path: str):
        node: object = self
        for key in path:
            node = unwrap(node)
            if not isinstance(node, Obj) or key not in node.entries:
                return None
            node = node.entries[key]
        return node

    def literal(self, *path: str):
        node = self.get(*path)
        if not isinstance(node, Expr):
            raise KeyError("/".join(path))
        return node.literal


@dataclass
class Arr:
    items: list[object]


@dataclass
class For:
    variables: list[str]
    iterable: Expr
    body: object


@dataclass
class Cond:
    condition: Expr
    body: object


def unwrap(node):
    """The object inside `[for ...: body]` and `if (...) body` wrappers."""
    while isinstance(node, For | Cond):
        node = node.body
    return node


# -------------------------------------------------------------------------------------------------------------------
# Declarations
# -------------------------------------------------------------------------------------------------------------------
@dataclass
class Decorator:
    name: str
    args: list[Token]

    @property
    def first_literal(self):
        inner = [t for t in self.args if t.kind != "newline"]
        return Expr(inner).literal if inner else None


@dataclass
class Param:
    name: str
    type: str
    default: object | None
    decorators: dict[str, Decorator]
    line: int

    @property
    def secure(self) -> bool:
        return "secure" in self.decorators

    @property
    def required(self) -> bool:
        return self.default is None and not self.type.endswith("?")


@dataclass
class Resource:
    symbol: str
    type: str
    api_version: str
    body: object
    line: int
    existing: bool = False

    @property
    def obj(self) -> Obj:
        return unwrap(self.body)

    @property
    def conditional(self) -> bool:
        return isinstance(self.body, Cond)


@dataclass
class Module:
    symbol: str
    path: str
    body: object
    line: int

    @property
    def obj(self) -> Obj:
        return unwrap(self.body)

    @property
    def params(self) -> dict[str, object]:
        params = self.obj.get("params")
        return params.entries if isinstance(params, Obj) else {}


@dataclass
class Output:
    name: str
    type: str
    value: object
    line: int


@dataclass
class BicepFile:
    path: Path
    target_scope: str = "resourceGroup"
    params: dict[str, Param] = field(default_factory=dict)
    vars: dict[str, object] = field(default_factory=dict)
    resources: dict[str, Resource] = field(default_factory=dict)
    modules: dict[str, Module] = field(default_factory=dict)
    outputs: dict[str, Output] = field(default_factory=dict)
    loop_variables: set[str] = field(default_factory=set)

    def resources_of_type(self, type_: str) -> list[Resource]:
        return [r for r in self.resources.values() if r.type.lower() == type_.lower()]

    def module_file(self, module: Module) -> Path:
        return (self.path.parent / module.path).resolve()

    @property
    def declared(self) -> set[str]:
        return (set(self.params) | set(self.vars) | set(self.resources) | set(self.modules)
                | self.loop_variables)

    def expressions(self):
        """Every Expr in the file's values (params' defaults, vars, resource/module bodies, outputs)."""
        roots: list[object] = [p.default for p in self.params.values() if p.default is not None]
        roots += list(self.vars.values())
        roots += [r.body for r in self.resources.values()]
        roots += [m.body for m in self.modules.values()]
        roots += [o.value for o in self.outputs.values()]
        for root in roots:
            yield from _walk_expressions(root)


def _walk_expressions(node):
    if isinstance(node, Expr):
        yield node
        for token in node.tokens:
            yield from _interpolations(token)
    elif isinstance(node, Obj):
        for value in node.entries.values():
            yield from _walk_expressions(value)
    elif isinstance(node, Arr):
        for item in node.items:
            yield from _walk_expressions(item)
    elif isinstance(node, For):
        yield node.iterable
        yield from _walk_expressions(node.body)
    elif isinstance(node, Cond):
        yield node.condition
        yield from _walk_expressions(node.body)


def _interpolations(token: Token):
    for part in token.parts:
        if not isinstance(part, str):
            yield Expr(list(part))
            for inner in part:
                yield from _interpolations(inner)


def references(expr: Expr) -> list[Token]:
    """Identifiers an expression refers to (not property names, object keys, function names or keywords)."""
    found = []
    toks = expr.tokens
    for i, t in enumerate(toks):
        if t.kind != "ident" or t.text in KEYWORDS:
            continue
        prev = toks[i - 1].text if i else None
        nxt = toks[i + 1].text if i + 1 < len(toks) else None
        if prev in {".", "?.", ".?"} or nxt in {"(", "=>"}:
            continue
        if nxt == ":" and prev in {None, "{", ",", "\n"}:
            continue  # an object key
        found.append(t)
    return found


def calls(expr: Expr) -> list[Token]:
    """Functions an expression calls without a namespace (e.g. `guid(...)`, not `az.guid(...)`)."""
    toks = expr.tokens
    return [t for i, t in enumerate(toks)
            if t.kind == "ident" and i + 1 < len(toks) and toks[i + 1].text == "("
            and not (i and toks[i - 1].text in {".", "?.", ".?"})]


def output_references(expr: Expr) -> list[tuple[str, str, int]]:
    """(module symbol, output name, line) for every `<symbol>.outputs.<name>` in an expression."""
    toks = expr.tokens
    found = []
    for i in range(len(toks) - 3):
        if (toks[i].kind == "ident" and toks[i + 1].text == "." and toks[i + 2].text == "outputs"
                and toks[i + 3].text == "." and i + 4 < len(toks)):
            found.append((toks[i].text, toks[i + 4].text, toks[i].line))
    return found


# -------------------------------------------------------------------------------------------------------------------
# Parser
# -------------------------------------------------------------------------------------------------------------------
class _Parser:
    def __init__(self, tokens: list[Token], path: Path):
        self.toks = tokens
        self.i = 0
        self.file = BicepFile(path)

    # -- helpers --
    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.toks[j] if j < len(self.toks) else None

    def next(self) -> Token:
        token = self.peek()
        if token is None:
            raise BicepSyntaxError(f"{self.file.path.name}: unexpected end of file")
        self.i += 1
        return token

    def expect(self, text: str) -> Token:
        token = self.next()
        if token.text != text:
            raise BicepSyntaxError(f"{self.file.path.name}:{token.line}: expected {text!r}, found {token.text!r}")
        return token

    def skip_newlines(self) -> None:
        while (t := self.peek()) is not None and t.kind == "newline":
            self.i += 1

    def balanced(self) -> list[Token]:
        """Tokens of a parenthesised group, without the outer parentheses."""
        self.expect("(")
        depth, out = 1, []
        while True:
            t = self.next()
            if t.text in _OPEN:
                depth += 1
            elif t.text in _CLOSE:
                depth -= 1
                if depth == 0:
                    return out
            out.append(t)

    def rest_of_line(self) -> list[Token]:
        depth, out = 0, []
        while (t := self.peek()) is not None and not (t.kind == "newline" and depth == 0):
            depth += (t.text in _OPEN) - (t.text in _CLOSE)
            out.append(self.next())
        return out

    # -- values --
    def value(self):
        self.skip_newlines()
        t = self.peek()
        if t.text == "{" and t.kind == "punct":
            return self.obj()
        if t.text == "[" and t.kind == "punct":
            j = self.i + 1
            while self.toks[j].kind == "newline":
                j += 1
            if self.toks[j].text == "for":
                return self.for_expr()
            return self.arr()
        if t.kind == "ident" and t.text == "if" and self.peek(1).text == "(":
            self.next()
            condition = Expr(self.balanced())
            return Cond(condition, self.value())
        return self.expr()

    def expr(self) -> Expr:
        depth, out = 0, []
        while (t := self.peek()) is not None:
            if depth == 0 and (t.kind == "newline" or t.text in {",", "}", "]", ")"}):
                break
            if t.kind == "punct" and t.text in _OPEN:
                depth += 1
            elif t.kind == "punct" and t.text in _CLOSE:
                depth -= 1
            out.append(self.next())
        if not out:
            raise BicepSyntaxError(f"{self.file.path.name}:{t.line if t else '?'}: expected a value")
        return Expr(out)

    def obj(self) -> Obj:
        self.expect("{")
        result = Obj({})
        while True:
            self.skip_newlines()
            t = self.next()
            if t.text == "}":
                return result
            if t.text == ",":
                continue
            if t.kind == "string":
                key = t.literal
            elif t.kind == "ident":
                key = t.text
            else:
                raise BicepSyntaxError(f"{self.file.path.name}:{t.line}: bad object key {t.text!r}")
            self.expect(":")
            if key in result.entries:
                raise BicepSyntaxError(f"{self.file.path.name}:{t.line}: duplicate key {key!r}")
            result.entries[key] = self.value()
            result.keys_lines[key] = t.line

    def arr(self) -> Arr:
        self.expect("[")
        items = []
        while True:
            self.skip_newlines()
            if self.peek().text == "]":
                self.next()
                return Arr(items)
            if self.peek().text == ",":
                self.next()
                continue
            items.append(self.value())

    def for_expr(self) -> For:
        self.expect("[")
        self.skip_newlines()
        self.expect("for")
        if self.peek().text == "(":
            variables = [t.text for t in self.balanced() if t.kind == "ident"]
        else:
            variables = [self.next().text]
        self.file.loop_variables.update(variables)
        self.expect("in")
        depth, iterable = 0, []
        while not (depth == 0 and self.peek().text == ":"):
            t = self.next()
            depth += (t.text in _OPEN) - (t.text in _CLOSE)
            iterable.append(t)
        self.expect(":")
        body = self.value()
        self.skip_newlines()
        self.expect("]")
        return For(variables, Expr(iterable), body)

    # -- declarations --
    def decorators(self) -> dict[str, Decorator]:
        found = {}
        while (t := self.peek()) is not None and t.text == "@":
            self.next()
            name = self.next().text
            while self.peek().text == ".":  # @sys.description(...)
                self.next()
                name = self.next().text
            found[name] = Decorator(name, self.balanced())
            self.skip_newlines()
        return found

    def parse(self) -> BicepFile:
        f = self.file
        while True:
            self.skip_newlines()
            if self.peek() is None:
                return f
            decorators = self.decorators()
            keyword = self.next()
            if keyword.text == "targetScope":
                self.expect("=")
                f.target_scope = self.expr().literal
            elif keyword.text == "param":
                name = self.next().text
                type_tokens = []
                while self.peek().text != "=" and self.peek().kind != "newline":
                    type_tokens.append(self.next().text)
                default = None
                if self.peek().text == "=":
                    self.next()
                    default = self.value()
                f.params[name] = Param(name, "".join(type_tokens), default, decorators, keyword.line)
            elif keyword.text == "var":
                name = self.next().text
                self.expect("=")
                f.vars[name] = self.value()
            elif keyword.text == "resource":
                symbol = self.next().text
                type_token = self.next()
                type_, _, api = (type_token.literal or "").partition("@")
                existing = self.peek().text == "existing"
                if existing:
                    self.next()
                self.expect("=")
                f.resources[symbol] = Resource(symbol, type_, api, self.value(), keyword.line, existing)
            elif keyword.text == "module":
                symbol = self.next().text
                path = self.next().literal
                self.expect("=")
                f.modules[symbol] = Module(symbol, path, self.value(), keyword.line)
            elif keyword.text == "output":
                name = self.next().text
                type_tokens = []
                while self.peek().text != "=":
                    type_tokens.append(self.next().text)
                self.expect("=")
                f.outputs[name] = Output(name, "".join(type_tokens), self.value(), keyword.line)
            elif keyword.text in {"metadata", "type", "func", "import"}:
                self.rest_of_line()
            else:
                raise BicepSyntaxError(f"{f.path.name}:{keyword.line}: unexpected {keyword.text!r}")


@functools.cache
def load(path: Path) -> BicepFile:
    path = Path(path).resolve()
    return _Parser(tokenize(path.read_text(encoding="utf-8")), path).parse()


def module_tree(main: Path) -> dict[Path, BicepFile]:
    """main.bicep and every module it reaches, by resolved path (registry modules `br:` are not followed)."""
    seen: dict[Path, BicepFile] = {}
    todo = [Path(main).resolve()]
    while todo:
        path = todo.pop()
        if path in seen or not path.exists():
            continue
        seen[path] = load(path)
        todo += [seen[path].module_file(m) for m in seen[path].modules.values() if not re.match(r"^\w+:", m.path)]
    return seen

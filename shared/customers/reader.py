"""Reading customers from files: canonical JSON, or CSV through a column mapping (`mappings/csv_default.yaml`).

CSV comes from SharePoint lists, Excel and CRM exports: UTF-8 with or without BOM, or Shift_JIS/CP932 (Excel in
Japan). Bad rows are reported with their CSV line, column and reason; good rows go on. A purchases/deals CSV links
rows to customers by customer id or email (as Zoho does for deals) and fills `purchases`, `products`,
`last_purchase_date`, `annual_spend` and `deals`.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from shared.crm.mapping import WON, StageTable, parse_stage_table, yaml_key_lines
from shared.customers.canonical import decode_customer, decode_customer_array
from shared.domain.addresses import address_problem
from shared.domain.errors import InvalidInput, Location
from shared.domain.model import CUSTOMER_FIELDS, Customer
from shared.domain.numbers import parse_number
from shared.settings import APP_ROOT

# The csv module refuses a cell over 128 KiB with an error that ends the whole file. Read longer cells, so the one
# row is rejected by the field checks (naming file, line and column) and every other row is still imported.
MAX_CSV_CELL_CHARS = 16 * 1024 * 1024
csv.field_size_limit(max(csv.field_size_limit(), MAX_CSV_CELL_CHARS))

DEFAULT_MAPPING = APP_ROOT / "mappings" / "csv_default.yaml"
ENCODINGS = ("utf-8-sig", "utf-8", "cp932", "shift_jis")


@dataclass(frozen=True)
class RowError:
    """One rejected input row."""

    file: str
    line: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        column = f", column {self.column!r}" if self.column else ""
        return f"{self.file}:{self.line}{column}: {self.reason}"


@dataclass
class ImportBatch:
    customers: list[Customer] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    warnings: list[RowError] = field(default_factory=list)


# Addresses checked at import. A bad one is a warning that keeps the row: the customer's rep notices, tasks and
# journeys need no customer address, and a mail to it is suppressed ("invalid recipient") when planned.
ADDRESS_FIELDS = ("email", "owner.email", "manager.email")


def address_warnings(customer: Customer, file: str, line: int, column: Callable[[str], str]) -> list[RowError]:
    """One warning per address of `customer` that no mail can be sent to, naming the column (never the value)."""
    found = []
    for name, value in (("email", customer.email), ("owner.email", customer.owner and customer.owner.email),
                        ("manager.email", customer.manager and customer.manager.email)):
        problem = address_problem(value) if value else None
        if problem:
            found.append(RowError(file, line, column(name), f"{problem}; row kept, no mail goes to it"))
    return found


# ---------------------------------------------------------------------------------------------------------------
# Encoding
# ---------------------------------------------------------------------------------------------------------------
def detect_encoding(path: Path, sample_size: int = 1 << 16) -> str:
    """utf-8-sig for a BOM, utf-8 when the sample decodes as UTF-8, else cp932 (Excel's Japanese CSV)."""
    with path.open("rb") as handle:
        sample = handle.read(sample_size)
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=len(sample) < sample_size)
        return "utf-8"
    except UnicodeDecodeError:
        return "cp932"


def _open_text(path: Path, encoding: str | None) -> tuple[io.TextIOBase, str]:
    chosen = encoding or detect_encoding(path)
    try:
        codecs.lookup(chosen)
    except LookupError:
        raise InvalidInput(f"unknown encoding {chosen!r} (try utf-8 or cp932)", Location(file=str(path))) from None
    return path.open("r", encoding=chosen, newline=""), chosen


# ---------------------------------------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------------------------------------
def _norm(header: str) -> str:
    text = unicodedata.normalize("NFKC", header).strip().lower()
    return re.sub(r"[\s_\-]+", "", text)


@dataclass(frozen=True)
class CsvMapping:
    customer_columns: Mapping[str, tuple[str, ...]]
    purchase_columns: Mapping[str, tuple[str, ...]]
    name_parts: tuple[Mapping[str, Any], ...]
    product_flag: re.Pattern[str] | None
    prefixes: Mapping[str, tuple[str, ...]]
    true_values: frozenset[str]
    false_values: frozenset[str]
    date_formats: tuple[str, ...]
    list_separators: tuple[str, ...]
    stages: StageTable = field(default_factory=lambda: StageTable({}))

    @property
    def accepted_dates(self) -> str:
        """The date forms a cell may take, for error messages: 'YYYY-MM-DD, YYYY/MM/DD, ..., Nov 24, 2026'."""
        shown = [describe_date_format(fmt) for fmt in ("%Y-%m-%d", "%Y/%m/%d", *self.date_formats)]
        return ", ".join(dict.fromkeys(shown))

    @classmethod
    def load(cls, path: Path | None = None) -> CsvMapping:
        path = path or DEFAULT_MAPPING
        try:
            text = path.read_text(encoding="utf-8")
            raw = yaml.safe_load(text)
        except (OSError, yaml.YAMLError) as exc:
            raise InvalidInput(f"cannot read mapping: {exc}", Location(file=str(path))) from None
        lines = yaml_key_lines(text)

        def fail(message: str, where: str) -> InvalidInput:
            return InvalidInput(message, Location(file=str(path), line=lines.get(where), field=where))

        def unknown(given: Any, allowed: Iterable[str], where: str) -> None:
            if not isinstance(given, Mapping):
                raise fail("must be a mapping", where)
            for key in given:
                if key not in allowed:
                    raise fail(f"unknown key {str(key)[:60]!r} (allowed: {', '.join(map(str, allowed))})",
                               f"{where}.{key}" if where else str(key))

        try:
            unknown(raw, CSV_FILE_KEYS, "")
            customers, purchases, values = raw["customers"], raw.get("purchases", {}), raw["values"]
            unknown(customers, CSV_CUSTOMER_KEYS, "customers")
            unknown(purchases, ("columns",), "purchases")
            unknown(purchases.get("columns", {}), PURCHASE_COLUMNS, "purchases.columns")
            unknown(values, (True, False, "date_formats", "list_separators"), "values")
            canonical = ("id", *CUSTOMER_FIELDS, *(f"{p}.{k}" for p in ("owner", "manager")
                                                  for k in ("name", "email", "aad_object_id")))
            unknown(customers["columns"], canonical, "customers.columns")
            pattern = customers.get("product_flag_pattern")
            return cls(
                customer_columns={k: tuple(map(str, v)) for k, v in customers["columns"].items()},
                purchase_columns={k: tuple(map(str, v)) for k, v in purchases.get("columns", {}).items()},
                name_parts=tuple(customers.get("name_parts", ())),
                product_flag=re.compile(pattern) if pattern else None,
                prefixes={k: tuple(v) for k, v in customers.get("prefixes", {}).items()},
                true_values=frozenset(_norm(str(v)) for v in values[True]),
                false_values=frozenset(_norm(str(v)) for v in values[False]),
                date_formats=tuple(values["date_formats"]),
                list_separators=tuple(values.get("list_separators", [";", ","])),
                stages=parse_stage_table(raw.get("stages"), fail),
            )
        except (KeyError, TypeError, AttributeError, re.error) as exc:
            raise InvalidInput(f"malformed mapping: {exc!r}", Location(file=str(path))) from None


CSV_FILE_KEYS = ("customers", "purchases", "values", "stages")
CSV_CUSTOMER_KEYS = ("columns", "name_parts", "product_flag_pattern", "prefixes")
PURCHASE_COLUMNS = ("customer_id", "customer_email", "product", "date", "amount", "deal_id", "deal_stage",
                    "deal_type", "campaign_id")


class _Columns:
    """Resolves a CSV header row against the mapping once; rows are then read by index."""

    def __init__(self, header: list[str], aliases: Mapping[str, tuple[str, ...]]):
        self.header = header
        index = {_norm(name): i for i, name in reversed(list(enumerate(header)))}
        self.fields: dict[str, int] = {}
        for canonical, names in aliases.items():
            for name in names:
                if _norm(name) in index:
                    self.fields[canonical] = index[_norm(name)]
                    break
        self.used = set(self.fields.values())

    def find(self, names: Iterable[str]) -> int | None:
        wanted = {_norm(n) for n in names}
        return next((i for i, h in enumerate(self.header) if _norm(h) in wanted), None)


class _CellError(Exception):
    def __init__(self, column: str, reason: str):
        self.column, self.reason = column, reason


class _Values:
    def __init__(self, mapping: CsvMapping):
        self.mapping = mapping

    def flag(self, text: str, column: str) -> bool | None:
        key = _norm(text)
        if key == "":
            return None
        if key in self.mapping.true_values:
            return True
        if key in self.mapping.false_values:
            return False
        raise _CellError(column, f"expected yes/no (はい/いいえ), got {text!r}")

    def day(self, text: str, column: str) -> str | None:
        text = text.strip()
        if not text:
            return None
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)  # full-width digits from Japanese Excel
        numeric = _YMD.match(text)
        if numeric:  # the common case (ISO or Y/M/D, optionally with a time), without strptime's cost
            try:
                return date(int(numeric[1]), int(numeric[2]), int(numeric[3])).isoformat()
            except ValueError:
                raise _CellError(column, f"not a date: {text!r} (no such day)") from None
        for fmt in self.mapping.date_formats:
            try:
                return datetime.strptime(text, fmt).date().isoformat()
            except ValueError:
                continue
        raise _CellError(column, f"not a date: {text!r} (accepted: {self.mapping.accepted_dates})")

    def number(self, text: str, column: str) -> float | int | None:
        try:
            return parse_number(text)
        except ValueError as exc:
            raise _CellError(column, str(exc)) from None

    def items(self, text: str) -> list[str]:
        parts = [text]
        for separator in self.mapping.list_separators:
            parts = [piece for part in parts for piece in part.split(separator)]
        return [p.strip() for p in parts if p.strip()]


_FORMAT_PARTS = {"%Y": "YYYY", "%y": "YY", "%m": "MM", "%d": "DD", "%b": "Mon", "%B": "Month", "%H": "hh",
                 "%M": "mm", "%S": "ss", "%%": "%"}


def describe_date_format(fmt: str) -> str:
    """A strptime format as people write it: %Y/%m/%d → YYYY/MM/DD, %b %d, %Y → Mon DD, YYYY (e.g. Nov 24, 2026)."""
    shown = re.sub(r"%.", lambda m: _FORMAT_PARTS.get(m[0], m[0]), fmt)
    if "%b" in fmt or "%B" in fmt:
        shown += f" (e.g. {date(2026, 11, 24).strftime(fmt)})"
    return shown


_YMD = re.compile(r"^(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[T ].*)?$")
_DATE_FIELDS = {"contract_start", "contract_end", "birthday", "last_purchase_date"}
_FLAG_FIELDS = {"email_opt_out", "requires_approval"}


class CustomerRowParser:
    """Turns CSV rows into canonical customer dicts using a mapping."""

    def __init__(self, header: list[str], mapping: CsvMapping):
        self.mapping = mapping
        self.values = _Values(mapping)
        self.columns = _Columns(header, mapping.customer_columns)
        self.header = header
        used = set(self.columns.used)
        self.name_parts: list[tuple[int, int, str, bool]] = []
        if "contact_name" not in self.columns.fields:
            for part in mapping.name_parts:
                family, given = self.columns.find(part["family"]), self.columns.find(part["given"])
                if family is not None and given is not None:
                    self.name_parts.append((family, given, part.get("separator", " "), part.get("given_first", False)))
                    used |= {family, given}
                    break
        self.product_flags: list[tuple[int, str]] = []
        self.prefixed: list[tuple[int, str, str]] = []
        for i, name in enumerate(header):
            if i in used:
                continue
            clean = unicodedata.normalize("NFKC", name).strip()
            match = mapping.product_flag.match(clean) if mapping.product_flag else None
            if match:
                self.product_flags.append((i, match["product"]))
                used.add(i)
                continue
            for target, prefixes in mapping.prefixes.items():
                prefix = next((p for p in prefixes if clean.lower().startswith(p.lower())), None)
                if prefix:
                    self.prefixed.append((i, target, clean[len(prefix):]))
                    used.add(i)
                    break
        self.extra = [(i, name.strip()) for i, name in enumerate(header) if i not in used and name.strip()]

    def parse(self, row: list[str]) -> dict:
        cells = row + [""] * (len(self.header) - len(row))
        data: dict[str, Any] = {}
        for canonical, index in self.columns.fields.items():
            text = cells[index].strip()
            column = self.header[index]
            if canonical in _DATE_FIELDS:
                value: Any = self.values.day(text, column)
            elif canonical in _FLAG_FIELDS:
                value = self.values.flag(text, column)
            elif canonical == "annual_spend":
                value = self.values.number(text, column)
            elif canonical == "products":
                value = self.values.items(text)
            else:
                value = text or None
            if value is None:
                continue
            if "." in canonical:
                parent, child = canonical.split(".", 1)
                data.setdefault(parent, {})[child] = value
            else:
                data[canonical] = value
        for family, given, separator, given_first in self.name_parts:
            parts = [cells[given].strip(), cells[family].strip()] if given_first else \
                [cells[family].strip(), cells[given].strip()]
            joined = separator.join(p for p in parts if p)
            if joined:
                data["contact_name"] = joined
        products = list(data.get("products", []))
        for index, product in self.product_flags:
            if self.values.flag(cells[index], self.header[index]) and product not in products:
                products.append(product)
        if products:
            data["products"] = products
        for index, target, key in self.prefixed:
            text = cells[index].strip()
            if text:
                number = _maybe_number(text)
                data.setdefault(target, {})[key] = number
        custom = data.setdefault("custom", {})
        for index, name in self.extra:
            if cells[index].strip():
                custom[name] = cells[index].strip()
        if not custom:
            del data["custom"]
        return data


def _maybe_number(text: str) -> Any:
    """A number where the text is one (usage counts), else the text itself."""
    try:
        return parse_number(text)
    except ValueError:
        return text


def _rows(handle: io.TextIOBase, file: str) -> Iterator[tuple[int, list[str]]]:
    """(first physical line, cells) of every non-blank row after the header; quoted newlines are one row."""
    reader = csv.reader(handle)
    line = 1
    try:
        for row in reader:
            start, line = line, reader.line_num + 1
            if row and any(cell.strip() for cell in row):
                yield start, row
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"cannot decode near line {line}: {exc.reason} (pass --encoding cp932 or utf-8)",
                           Location(file=file, line=line)) from None
    except csv.Error as exc:
        raise InvalidInput(f"malformed CSV: {exc}", Location(file=file, line=line)) from None


# ---------------------------------------------------------------------------------------------------------------
# Purchases
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class PurchaseIndex:
    """Purchase and deal rows grouped by the customer id or email they name."""

    by_id: dict[str, list[tuple[int, dict]]] = field(default_factory=lambda: defaultdict(list))
    by_email: dict[str, list[tuple[int, dict]]] = field(default_factory=lambda: defaultdict(list))
    errors: list[RowError] = field(default_factory=list)
    matched_lines: set[int] = field(default_factory=set)
    file: str = ""

    def take(self, customer: dict) -> list[dict]:
        rows = list(self.by_id.pop(str(customer.get("id")), []))
        email = (customer.get("email") or "").strip().lower()
        if email:
            rows += self.by_email.pop(email, [])
        self.matched_lines.update(line for line, _ in rows)
        return [row for _, row in rows]

    def unmatched(self) -> list[RowError]:
        left = [line for rows in (*self.by_id.values(), *self.by_email.values()) for line, _ in rows
                if line not in self.matched_lines]
        return [RowError(self.file, line, None, "no customer with this id or email") for line in sorted(set(left))]


def read_purchases(path: Path, mapping: CsvMapping, encoding: str | None = None) -> PurchaseIndex:
    handle, _ = _open_text(path, encoding)
    index = PurchaseIndex(file=str(path))
    values = _Values(mapping)
    with handle:
        rows = _rows(handle, str(path))
        header = next(rows, None)
        if header is None:
            return index
        columns = _Columns(header[1], mapping.purchase_columns)
        fields_ = columns.fields
        if "product" not in fields_ or not ({"customer_id", "customer_email"} & set(fields_)):
            raise InvalidInput("needs a product column and a customer id or customer email column",
                               Location(file=str(path), line=1))
        for line, row in rows:
            cells = row + [""] * (len(header[1]) - len(row))
            get = {name: cells[i].strip() for name, i in fields_.items()}
            try:
                if not get.get("product"):
                    raise _CellError(header[1][fields_["product"]], "product is empty")
                record = {
                    "product": get["product"],
                    "date": values.day(get.get("date", ""), header[1][fields_["date"]]) if "date" in fields_ else None,
                    "amount": values.number(get.get("amount", ""), header[1][fields_["amount"]])
                    if "amount" in fields_ else None,
                    "deal_id": get.get("deal_id") or None,
                    "deal_stage": mapping.stages.normalise(get.get("deal_stage")) or None,
                    "deal_type": get.get("deal_type") or None,
                    "campaign_id": get.get("campaign_id") or None,
                }
            except _CellError as exc:
                index.errors.append(RowError(str(path), line, exc.column, exc.reason))
                continue
            if get.get("customer_id"):
                index.by_id[get["customer_id"]].append((line, record))
            elif get.get("customer_email"):
                index.by_email[get["customer_email"].lower()].append((line, record))
            else:
                index.errors.append(RowError(str(path), line, None, "names no customer id or email"))
    return index


def attach_purchases(data: dict, rows: list[dict], today: date) -> dict:
    """Fill purchases, products, last_purchase_date, annual_spend (last 365 days) and deals from purchase rows.

    A row is a purchase when it has no deal stage (a plain purchases file) or its deal is won; a lost or open
    deal is kept as a deal only: it is not something the customer owns or paid for.
    """
    if not rows:
        return data
    purchases = list(data.get("purchases", []))
    products = list(data.get("products", []))
    deals = {d["id"]: d for d in data.get("deals", [])}
    for row in rows:
        stage = row["deal_stage"]
        if stage is None or stage == WON:
            purchases.append({"product": row["product"], "date": row["date"], "amount": row["amount"],
                              "deal_id": row["deal_id"]})
            if row["product"] not in products:
                products.append(row["product"])
        if row["deal_id"]:
            deal = {"id": row["deal_id"], "stage": stage or WON, "type": row["deal_type"], "amount": row["amount"],
                    "closed_on": row["date"], "product": row["product"]}
            if row.get("campaign_id"):
                deal["campaign_id"] = row["campaign_id"]
            deals.setdefault(row["deal_id"], deal)
    purchases.sort(key=lambda p: p["date"] or "")
    data = {**data, "purchases": purchases, "products": products, "deals": list(deals.values())}
    dated = [p["date"] for p in purchases if p["date"]]
    if dated and not data.get("last_purchase_date"):
        data["last_purchase_date"] = max(dated)
    if data.get("annual_spend") is None:
        since = (today - timedelta(days=365)).isoformat()
        data["annual_spend"] = sum(p["amount"] or 0 for p in purchases if p["date"] and p["date"] > since)
    return data


# ---------------------------------------------------------------------------------------------------------------
# Whole files
# ---------------------------------------------------------------------------------------------------------------
def iter_csv_customers(path: Path, *, mapping: CsvMapping | None = None, purchases: PurchaseIndex | None = None,
                       encoding: str | None = None, errors: list[RowError], today: date | None = None,
                       warnings: list[RowError] | None = None) -> Iterator[tuple[int, Customer]]:
    """Stream (line, customer) from a customers CSV; rejected rows are appended to `errors`, rows kept with a
    problem (an address no mail can go to) to `warnings`."""
    mapping = mapping or CsvMapping.load()
    today = today or date.today()
    handle, _ = _open_text(path, encoding)
    file = str(path)
    seen: dict[str, int] = {}
    with handle:
        rows = _rows(handle, file)
        first = next(rows, None)
        if first is None:
            return
        parser = CustomerRowParser(first[1], mapping)
        if "id" not in parser.columns.fields:
            raise InvalidInput("no customer id column (expected one of: "
                               + ", ".join(mapping.customer_columns["id"]) + ")", Location(file=file, line=1))
        for line, row in rows:
            try:
                data = parser.parse(row)
            except _CellError as exc:
                errors.append(RowError(file, line, exc.column, exc.reason))
                continue
            if purchases is not None:
                data = attach_purchases(data, purchases.take(data), today)
            try:
                customer = Customer.from_dict(data, Location(file=file, line=line))
            except InvalidInput as exc:
                errors.append(RowError(file, line, _column_for(parser, exc.location.field), exc.reason))
                continue
            if customer.id in seen:
                errors.append(RowError(file, line, parser.header[parser.columns.fields["id"]],
                                       f"duplicate id {customer.id!r} (first on line {seen[customer.id]})"))
                continue
            seen[customer.id] = line
            if warnings is not None and (customer.email or customer.owner or customer.manager):
                warnings.extend(address_warnings(customer, file, line, lambda name: _column_for(parser, name)))
            yield line, customer


def _column_for(parser: CustomerRowParser, field_name: str | None) -> str | None:
    if not field_name:
        return None
    index = parser.columns.fields.get(field_name.split("[")[0])
    return parser.header[index] if index is not None else field_name


def iter_json_customers(path: Path, errors: list[RowError], warnings: list[RowError] | None = None,
                        ) -> Iterator[tuple[int, Customer]]:
    """A JSON array of canonical customers, or JSON Lines (one object per line)."""
    for number, customer in _json_customers(path, errors):
        if warnings is not None and (customer.email or customer.owner or customer.manager):
            warnings.extend(address_warnings(customer, str(path), number, str))
        yield number, customer


def _json_customers(path: Path, errors: list[RowError]) -> Iterator[tuple[int, Customer]]:
    file = str(path)
    data = path.read_bytes().removeprefix(codecs.BOM_UTF8)
    if data.lstrip().startswith(b"["):
        for number, item in decode_customer_array(data, Location(file=file)):
            if isinstance(item, InvalidInput):
                errors.append(RowError(file, number, item.location.field, f"item {number}: {item.reason}"))
            else:
                yield number, item
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"not UTF-8: {exc.reason}", Location(file=file)) from None
    del data
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, decode_customer(line, Location(file=file, line=number))
        except InvalidInput as exc:
            errors.append(RowError(file, number, exc.location.field, exc.reason))


def read_customers_file(path: Path, *, mapping_path: Path | None = None, purchases_path: Path | None = None,
                        encoding: str | None = None, today: date | None = None) -> ImportBatch:
    """All customers of a .json/.jsonl/.csv file (plus an optional purchases CSV), with the rejected rows."""
    batch = ImportBatch()
    for _, customer in iter_customers(path, mapping_path=mapping_path, purchases_path=purchases_path,
                                      encoding=encoding, errors=batch.errors, today=today,
                                      warnings=batch.warnings):
        batch.customers.append(customer)
    return batch


def iter_customers(path: Path, *, mapping_path: Path | None = None, purchases_path: Path | None = None,
                   encoding: str | None = None, errors: list[RowError], today: date | None = None,
                   warnings: list[RowError] | None = None) -> Iterator[tuple[int, Customer]]:
    if not path.exists():
        raise InvalidInput("file not found", Location(file=str(path)))
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl", ".ndjson"):
        if purchases_path:
            raise InvalidInput("--purchases goes with a CSV customers file", Location(file=str(path)))
        yield from iter_json_customers(path, errors, warnings)
        return
    if suffix not in (".csv", ".txt", ".tsv"):
        raise InvalidInput("expected a .csv or .json file", Location(file=str(path)))
    mapping = CsvMapping.load(mapping_path)
    purchases = read_purchases(purchases_path, mapping, encoding) if purchases_path else None
    yield from iter_csv_customers(path, mapping=mapping, purchases=purchases, encoding=encoding, errors=errors,
                                  today=today, warnings=warnings)
    if purchases is not None:
        errors.extend(purchases.errors)
        errors.extend(purchases.unmatched())

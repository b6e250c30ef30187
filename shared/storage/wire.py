"""Entity group transactions and entity queries written and read here, sent through the SDK client's own pipeline.

Why not `TableClient.submit_transaction` / `query_entities`: on a sweep they were most of the CPU. The SDK builds
each `$batch` body as `email` MIME objects (one per operation, flattened by the `email` generator) and parses the
reply with the `email` parser, tags every string property `@odata.type: Edm.String` (doubling the JSON), and runs
query pages through its generic model deserialiser. The wire formats are small and documented (Table service REST:
"Performing entity group transactions", "Query Entities"), so this module writes the multipart body as text, reads
the reply's status lines and decodes query pages with msgspec (in C), a page at a time; everything else —
authentication (shared key or Entra ID), retries, the client's response hooks, error decoding, property typing
(`_add_entity_properties` for anything but plain strings, booleans and 32-bit ints) and entity conversion
(`_convert_to_entity`) — stays the SDK's, so entities look exactly as the SDK would write and return them.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import quote

import msgspec
from azure.core.rest import HttpRequest
from azure.data.tables import EntityProperty, TableClient, TableEntity
from azure.data.tables._deserialize import _ENTITY_TO_PYTHON_CONVERSIONS
from azure.data.tables._error import _decode_error
from azure.data.tables._serialize import _add_entity_properties, _parameter_filter_substitution

from shared.storage.backend import Op, Operation

_INT32 = range(-(2**31), 2**31)
_UPDATE_METHODS = {Op.UPSERT: "PUT", Op.UPSERT_MERGE: "PATCH", Op.REPLACE: "PUT", Op.MERGE: "PATCH",
                   Op.DELETE: "DELETE"}
_STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3})", re.MULTILINE)


class PartFailed(Exception):
    """One operation of a transaction was refused (the service rolled back the whole transaction)."""

    def __init__(self, status: int, code: str, message: str, index: int):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message, self.index = status, code, message, index


def entity_json(entity: Mapping[str, Any]) -> str:
    """The entity as the service's JSON: plain strings, booleans and 32-bit ints as themselves (the service's default
    types: no annotation needed), everything else typed by the SDK's own serialiser."""
    plain: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for name, value in entity.items():
        kind = type(value)
        if kind is str or kind is bool or (kind is int and value in _INT32):
            plain[name] = value
        elif value is not None:
            other[name] = value
    if other:
        plain.update(_add_entity_properties(other))
    # ASCII escapes as the SDK writes them: Azurite measures a string property by its UTF-8 bytes as sent (the
    # service by its UTF-16 length), so unescaped Japanese text would be refused below the documented 32K chars.
    return json.dumps(plain, separators=(",", ":"))


def _utf8(text: str) -> bytes:
    return text.encode("ascii")  # entity_json escapes everything else


def _key_path(entity: Mapping[str, Any]) -> str:
    keys = (quote(entity[name].replace("'", "''"), safe="") for name in ("PartitionKey", "RowKey"))
    return "(PartitionKey='{}',RowKey='{}')".format(*keys)


class TableWire:
    """Transactions and queries of one table, over `client`'s pipeline."""

    def __init__(self, client: TableClient):
        self.client = client
        self.pipeline = client._client._client  # the PipelineClient the SDK's own operations run through
        self.version = client._client._config.version
        self.base = f"{client.scheme}://{client._primary_hostname}"
        self.table_url = f"{self.base}/{quote(client.table_name, safe='')}"

    # --- transactions --------------------------------------------------------------------------------------
    def submit(self, operations: Sequence[Operation]) -> None:
        """One transaction (the caller checked the service's rules). Raises the SDK's HttpResponseError when the
        request as a whole was refused, PartFailed when one of its operations was, AzureError on transport errors."""
        changeset = f"changeset_{uuid.uuid4()}"
        batch = f"batch_{uuid.uuid4()}"
        parts = [f"--{batch}\r\nContent-Type: multipart/mixed; boundary={changeset}\r\n\r\n".encode()]
        for index, operation in enumerate(operations):
            parts.append(self._part(changeset, index, operation))
        parts.append(f"--{changeset}--\r\n--{batch}--\r\n".encode())
        request = HttpRequest("POST", f"{self.base}/$batch", content=b"".join(parts), headers={
            "x-ms-version": self.version, "DataServiceVersion": "3.0", "MaxDataServiceVersion": "3.0;NetFx",
            "Content-Type": f"multipart/mixed; boundary={batch}", "Accept": "application/json"})
        response = self.pipeline.send_request(request, stream=True)
        response.read()
        if response.status_code != 202:
            raise _decode_error(response)
        body = response.content
        for match in _STATUS_LINE.finditer(body):
            status = int(match.group(1))
            if not 200 <= status < 300:
                raise _part_failure(status, body[match.end():])

    def _part(self, changeset: str, index: int, operation: Operation) -> bytes:
        op, entity = operation.op, operation.entity
        headers = [f"--{changeset}", "Content-Type: application/http", "Content-Transfer-Encoding: binary",
                   f"Content-ID: {index}", ""]
        if op is Op.INSERT:
            headers.append(f"POST {self.table_url} HTTP/1.1")
            headers.append("Prefer: return-no-content")
        else:
            headers.append(f"{_UPDATE_METHODS[op]} {self.table_url}{_key_path(entity)} HTTP/1.1")
            if op not in (Op.UPSERT, Op.UPSERT_MERGE):  # an update or delete needs the entity to exist
                headers.append(f"If-Match: {operation.etag or '*'}")
        headers += ["Accept: application/json;odata=minimalmetadata", f"x-ms-version: {self.version}",
                    "DataServiceVersion: 3.0"]
        if op is Op.DELETE:
            return ("\r\n".join(headers) + "\r\n\r\n").encode()
        content = _utf8(entity_json(entity))
        headers += ["Content-Type: application/json", f"Content-Length: {len(content)}", "", ""]
        return "\r\n".join(headers).encode() + content + b"\r\n"

    # --- single entities -----------------------------------------------------------------------------------
    def _send(self, method: str, url: str, *, content: bytes | None = None, if_match: str | None = None,
              prefer: bool = False):
        headers = {"x-ms-version": self.version, "DataServiceVersion": "3.0",
                   "Accept": "application/json;odata=minimalmetadata"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        if if_match:
            headers["If-Match"] = if_match
        if prefer:
            headers["Prefer"] = "return-no-content"
        response = self.pipeline.send_request(HttpRequest(method, url, headers=headers, content=content),
                                              stream=True)
        response.read()
        if not 200 <= response.status_code < 300:
            raise _decode_error(response)
        return response

    def get(self, partition: str, row: str, select: Sequence[str] | None = None) -> TableEntity:
        """The entity (the SDK's ResourceNotFoundError when there is none)."""
        url = f"{self.table_url}{_key_path({'PartitionKey': partition, 'RowKey': row})}"
        if select:
            url += f"?$select={quote(','.join(select), safe='')}"
        return to_entity(json.loads(self._send("GET", url).content))

    def insert(self, entity: Mapping[str, Any]) -> str:
        """Insert-if-absent; returns the new ETag."""
        return self._send("POST", self.table_url, content=_utf8(entity_json(entity)), prefer=True).headers["ETag"]

    def write(self, op: Op, entity: Mapping[str, Any], etag: str | None = None) -> str:
        """Replace, merge (existing entity; `etag`: only if unchanged) or upsert; returns the new ETag."""
        if_match = None if op in (Op.UPSERT, Op.UPSERT_MERGE) else (etag or "*")
        return self._send(_UPDATE_METHODS[op], f"{self.table_url}{_key_path(entity)}",
                          content=_utf8(entity_json(entity)), if_match=if_match).headers["ETag"]

    def delete(self, partition: str, row: str, etag: str | None = None) -> None:
        self._send("DELETE", f"{self.table_url}{_key_path({'PartitionKey': partition, 'RowKey': row})}",
                   if_match=etag or "*")

    # --- queries -------------------------------------------------------------------------------------------
    def query(self, filter: str | None, parameters: Mapping[str, Any] | None, select: Sequence[str] | None,
              page_size: int) -> Iterator[list[TableEntity]]:
        """Entities matching `filter`, a page per request (continuation headers followed)."""
        query = {"$top": str(page_size)}
        if filter:
            query["$filter"] = _parameter_filter_substitution(dict(parameters or {}), filter)
        if select:
            query["$select"] = ",".join(select)
        headers = {"x-ms-version": self.version, "DataServiceVersion": "3.0",
                   "Accept": "application/json;odata=minimalmetadata"}
        fixed = "&".join(f"{name}={quote(value, safe='')}" for name, value in query.items())
        continuation = ""
        while True:
            request = HttpRequest("GET", f"{self.table_url}()?{fixed}{continuation}", headers=headers)
            response = self.pipeline.send_request(request, stream=True)
            response.read()
            if response.status_code != 200:
                raise _decode_error(response)
            yield [to_entity(row) for row in _decode_page(response.content).value]
            next_partition = response.headers.get("x-ms-continuation-NextPartitionKey")
            next_row = response.headers.get("x-ms-continuation-NextRowKey")
            if not (next_partition or next_row):
                return
            continuation = "".join(f"&{name}={quote(value, safe='')}" for name, value in
                                   (("NextPartitionKey", next_partition), ("NextRowKey", next_row)) if value)


class _Page(msgspec.Struct):
    """A query's answer: `{"odata.metadata": ..., "value": [entity, ...]}` (the rest is not read)."""

    value: list[dict[str, Any]] = []


_decode_page = msgspec.json.Decoder(_Page).decode  # in C: a page of 1,000 customers is ~2 MB of JSON


_AS_SENT = ("Edm.String", "Edm.Int32")


def to_entity(row: dict[str, Any]) -> TableEntity:
    """A returned entity as the SDK's `_convert_to_entity` makes it (typed properties converted, ETag in
    `metadata`). Property names are identifiers, so only annotations and `odata.` fields hold a dot: the row is
    copied whole and those few taken out again. The metadata's `timestamp` stays the service's text (nothing here
    reads it)."""
    entity = TableEntity(row)
    metadata: dict[str, Any] = {}
    types: list[tuple[str, str]] = []
    for name in [name for name in row if "." in name]:
        value = entity.pop(name)
        if name.startswith("odata."):
            metadata[name[6:]] = value
        elif name.endswith("@odata.type"):
            types.append((name[:-11], value))
    for name, edm in types:
        if edm in _AS_SENT or name not in entity:
            continue
        convert = _ENTITY_TO_PYTHON_CONVERSIONS.get(edm)
        entity[name] = convert(entity[name]) if convert else EntityProperty(entity[name], edm)
    timestamp = entity.pop("Timestamp", None)
    metadata.pop("metadata", None)
    if timestamp and not metadata.get("etag"):
        metadata["etag"] = "W/\"datetime'" + quote(timestamp) + "'\""
    metadata.setdefault("etag", None)
    metadata["timestamp"] = timestamp
    entity._metadata = metadata
    return entity


def _part_failure(status: int, rest: bytes) -> PartFailed:
    """The refused operation's error: `{"odata.error": {"code", "message": {"value": "<index>:<text>"}}}`."""
    _, _, content = rest.partition(b"\r\n\r\n")
    if not content:
        _, _, content = rest.partition(b"\n\n")
    code, message = "", ""
    try:
        error = json.loads(content.split(b"\r\n--")[0].split(b"\n--")[0])["odata.error"]
        code, message = str(error.get("code", "")), str(error.get("message", {}).get("value", ""))
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    prefix, _, text = message.partition(":")
    index = int(prefix) if prefix.isdigit() else 0
    return PartFailed(status, code, (text if prefix.isdigit() else message).strip(), index)

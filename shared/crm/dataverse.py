"""Dataverse (Dynamics 365): webhook parsing and a small Web API client (record re-query, task write-back).

Webhook: the body is a JSON RemoteExecutionContext (`MessageName`, `PrimaryEntityName`, `PrimaryEntityId`,
`InputParameters[Target]`, `PostEntityImages`, dates as `/Date(ms)/`). Identity is the Functions key Dataverse's
WebhookKey auth sends as `?code=` — the platform checks it before the function runs (route authLevel FUNCTION).
Over 256 KB Dataverse strips the context and sets `x-ms-dynamics-msg-size-exceeded`; the event is then queued with
`needs_refetch` and the `crm-events` consumer re-queries the record through `DataverseClient.fetch_record`.

Closing an opportunity does not send a `Target`: `Win` / `Lose` carry `InputParameters[OpportunityClose]` (the
opportunityclose activity: `opportunityid`, `actualrevenue`, `actualend`) and `Status` (the status reason), and
`SetState` / `SetStateDynamicEntity` carry `EntityMoniker` (the record), `State` and `Status`. They are read as the
changed columns `statecode` (Win → 1, Lose → 2), `statuscode`, `actualvalue` and `actualclosedate`.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import quote

import requests

from shared.crm.common import (
    WebhookRequest,
    check_record_id,
    decode_json,
    require,
    require_content_type,
    utc_from_millis,
)
from shared.crm.mapping import EntityMapping, VendorMapping
from shared.domain.errors import (
    ConfigError,
    InvalidInput,
    Location,
    NotFound,
    PermanentError,
    Throttled,
    TransientError,
    Unauthorized,
)
from shared.domain.events import CrmEvent

log = logging.getLogger(__name__)

SOURCE = "dataverse"
SIZE_EXCEEDED_HEADER = "x-ms-dynamics-msg-size-exceeded"
_OPERATIONS = {"create": "create", "update": "update", "delete": "delete", "assign": "update", "setstate": "update",
               "setstatedynamicentity": "update", "win": "update", "lose": "update"}
_ZERO_GUID = "00000000-0000-0000-0000-000000000000"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_MS_DATE = re.compile(r"^/Date\((-?\d{1,15})(?:[+-]\d{4})?\)/$")


# --- webhook -------------------------------------------------------------------------------------------------
def parse_webhook(request: WebhookRequest, mapping: VendorMapping, received_at: datetime) -> list[CrmEvent]:
    """One RemoteExecutionContext → one canonical event (InvalidInput naming the bad field otherwise)."""
    require_content_type(request, "application/json")
    context = decode_json(request.body)
    if not isinstance(context, Mapping):
        raise InvalidInput("a RemoteExecutionContext must be a JSON object")
    message = require(context, "MessageName", str)
    operation = _OPERATIONS.get(message.lower())
    if operation is None:
        raise InvalidInput(f"message {message[:40]!r} is not handled (register Create, Update, Delete)",
                           Location(field="MessageName"))
    entity = mapping.entity(require(context, "PrimaryEntityName", str), "PrimaryEntityName")
    record_id = check_record_id(require(context, "PrimaryEntityId", str), "PrimaryEntityId")
    if not _GUID.match(record_id):
        raise InvalidInput("must be a GUID", Location(field="PrimaryEntityId"))
    record_id = record_id.lower()
    occurred_at = _context_time(context.get("OperationCreatedOn"), "OperationCreatedOn")
    stripped = request.header(SIZE_EXCEEDED_HEADER) is not None

    target = _target_attributes(context, entity, message.lower()) if operation != "delete" and not stripped else {}
    image = {} if stripped else _image_attributes(context.get("PostEntityImages"), "PostEntityImages")
    if operation == "delete":
        image = _image_attributes(context.get("PreEntityImages"), "PreEntityImages")
    changed = mapping.map(entity, target)
    merged = mapping.map(entity, {**image, **target})
    record = mapping.canonical_record(entity, record_id, merged.record)

    needs_refetch = stripped and operation != "delete"
    if operation != "delete" and (merged.unresolved_owner or (entity.kind == "deal" and not record.get(
            "customer_id"))):
        needs_refetch = True  # learn the owner's email / the deal's customer from the Web API
    return [CrmEvent(
        source=SOURCE, entity=entity.kind, record_id=record_id, operation=operation,
        event_id=_event_id(context, record_id, message), occurred_at=merged.updated_at or occurred_at,
        changed_fields=changed.changed if operation == "update" else merged.changed,
        record=record, needs_refetch=needs_refetch, received_at=received_at,
        extra={"crm_entity": entity.name, "message": message},
    )]


def _event_id(context: Mapping, record_id: str, message: str) -> str:
    """OperationId (async steps); synchronous steps send a zero OperationId, so fall back to RequestId, then
    to CorrelationId + record + message + depth (stable across Dataverse's single retry)."""
    for key in ("OperationId", "RequestId"):
        value = context.get(key)
        if isinstance(value, str) and _GUID.match(value) and value != _ZERO_GUID:
            return value.lower()
    correlation = context.get("CorrelationId")
    if not isinstance(correlation, str) or not _GUID.match(correlation):
        raise InvalidInput("needs an OperationId, RequestId or CorrelationId GUID", Location(field="OperationId"))
    depth = context.get("Depth") if isinstance(context.get("Depth"), int) else 0
    return f"{correlation.lower()}:{record_id}:{message.lower()}:{depth}"


def _context_time(value: Any, where: str) -> datetime | None:
    if isinstance(value, str) and (match := _MS_DATE.match(value)):
        return utc_from_millis(match[1], where)  # InvalidInput (400) for a year out of range, never a 500
    return None


def _pairs(value: Any, where: str) -> dict[str, Any]:
    """Dataverse serialises dictionaries as [{"key": k, "value": v}, ...]."""
    if value is None:
        return {}
    if not isinstance(value, list):
        raise InvalidInput("must be a list of {key, value}", Location(field=where))
    pairs: dict[str, Any] = {}
    for index, item in enumerate(value):
        if not isinstance(item, Mapping) or not isinstance(item.get("key"), str):
            raise InvalidInput("must be {key, value}", Location(field=f"{where}[{index}]"))
        pairs[item["key"]] = item.get("value")
    return pairs


def _entity_attributes(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput("must be an Entity object", Location(field=where))
    return _pairs(value.get("Attributes"), f"{where}.Attributes")


_CLOSE_STATE = {"win": 1, "lose": 2}  # opportunity statecode: 1 Won, 2 Lost


def _target_attributes(context: Mapping, entity: EntityMapping, message: str = "update") -> dict[str, Any]:
    parameters = _pairs(context.get("InputParameters"), "InputParameters")
    if message in _CLOSE_STATE:
        return _close_attributes(parameters, message)
    if message in ("setstate", "setstatedynamicentity"):
        return _set_state_attributes(parameters)
    if "Target" not in parameters:
        raise InvalidInput("is required (InputParameters[Target])", Location(field="Target"))
    return _entity_attributes(parameters["Target"], "InputParameters.Target")


def _close_attributes(parameters: Mapping[str, Any], message: str) -> dict[str, Any]:
    """Win / Lose: the opportunityclose activity and the new status reason, as the opportunity's own columns."""
    if "OpportunityClose" not in parameters:
        raise InvalidInput("is required (InputParameters[OpportunityClose])", Location(field="OpportunityClose"))
    close = _entity_attributes(parameters["OpportunityClose"], "InputParameters.OpportunityClose")
    attributes: dict[str, Any] = {"statecode": {"Value": _CLOSE_STATE[message]}}
    if "Status" in parameters:
        attributes["statuscode"] = _option_value(parameters["Status"], "Status")
    if close.get("actualrevenue") is not None:
        attributes["actualvalue"] = close["actualrevenue"]
    if close.get("actualend") is not None:
        attributes["actualclosedate"] = close["actualend"]
    return attributes


def _set_state_attributes(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """SetState / SetStateDynamicEntity: `EntityMoniker` names the record, `State` and `Status` the new state."""
    moniker = parameters.get("EntityMoniker")
    if not isinstance(moniker, Mapping):
        raise InvalidInput("is required (InputParameters[EntityMoniker])", Location(field="EntityMoniker"))
    if "State" not in parameters:
        raise InvalidInput("is required (InputParameters[State])", Location(field="State"))
    attributes = {"statecode": _option_value(parameters["State"], "State")}
    if "Status" in parameters:
        attributes["statuscode"] = _option_value(parameters["Status"], "Status")
    return attributes


def _option_value(value: Any, where: str) -> dict[str, int]:
    """An OptionSetValue {"Value": n} or a bare number."""
    raw = value.get("Value") if isinstance(value, Mapping) else value
    if isinstance(raw, bool) or not isinstance(raw, int):
        raise InvalidInput("must be an OptionSetValue", Location(field=where))
    return {"Value": raw}


def _image_attributes(value: Any, where: str) -> dict[str, Any]:
    images = _pairs(value, where)
    merged: dict[str, Any] = {}
    for name, image in images.items():
        merged.update(_entity_attributes(image, f"{where}.{name}"))
    return merged


# --- Web API client ------------------------------------------------------------------------------------------
GetToken = Callable[[str], str]  # scope -> bearer token (msal, managed identity, or a test stand-in)

_ENTITY_SETS = {"contact": "contacts", "account": "accounts", "opportunity": "opportunities", "task": "tasks",
                "systemuser": "systemusers"}
_OWNER_SELECT = "internalemailaddress,fullname,azureactivedirectoryobjectid"
TASK_STAMP_PREFIX = "crmflow:"  # stamped in the task's `subcategory` column to find it again on redelivery


def msal_token_provider(tenant_id: str, client_id: str, client_secret: str | None, authority_host: str,
                        use_managed_identity: bool = False) -> GetToken:
    """A `get_token(scope)` backed by one msal client per process (msal caches tokens itself)."""
    import msal

    if use_managed_identity:
        identity = (msal.UserAssignedManagedIdentity(client_id=client_id) if client_id
                    else msal.SystemAssignedManagedIdentity())
        client = msal.ManagedIdentityClient(identity, http_client=requests.Session())

        def managed(scope: str) -> str:
            result = client.acquire_token_for_client(resource=scope.removesuffix("/.default"))
            return _token_of(result)

        return managed
    if not (tenant_id and client_id and client_secret):
        raise ConfigError("Dataverse needs GRAPH_TENANT_ID, GRAPH_CLIENT_ID and GRAPH_CLIENT_SECRET "
                          "(or GRAPH_USE_MANAGED_IDENTITY=true)")
    app = msal.ConfidentialClientApplication(client_id, client_credential=client_secret,
                                             authority=f"{authority_host}/{tenant_id}")

    def confidential(scope: str) -> str:
        return _token_of(app.acquire_token_for_client(scopes=[scope]))

    return confidential


def _token_of(result: Mapping[str, Any]) -> str:
    if "access_token" in result:
        return result["access_token"]
    error = str(result.get("error", "unknown"))
    if error in ("invalid_client", "unauthorized_client", "invalid_scope"):
        raise ConfigError(f"Dataverse token request refused: {error}")
    raise TransientError(f"Dataverse token request failed: {error}")


class DataverseClient:
    """Just the Web API calls crmflow needs. Tokens come from `get_token(<org>/.default)`; a 401 refreshes once."""

    def __init__(self, base_url: str, get_token: GetToken, mapping: VendorMapping,
                 session: requests.Session | None = None, timeout: float = 20.0):
        self.base_url = base_url.rstrip("/")
        self.api = f"{self.base_url}/api/data/v9.2"
        self.scope = f"{self.base_url}/.default"
        self.get_token = get_token
        self.mapping = mapping
        self.session = session or requests.Session()
        self.timeout = timeout
        self._token: str | None = None
        self._lock = threading.Lock()

    # --- reads -----------------------------------------------------------------------------------------------
    def fetch_record(self, entity: str, record_id: str) -> dict:
        """The record's mapped fields, in canonical form (what `apply_event(..., refetched=)` takes).

        `entity` is the Dataverse table (`contact`, `account`, `opportunity`: `event.extra["crm_entity"]`).
        The owner is expanded so the rep's email is known. NotFound when the record is gone.
        """
        mapped_entity = self.mapping.entity(entity)
        entity_set = _ENTITY_SETS.get(mapped_entity.name.lower(), f"{mapped_entity.name.lower()}s")
        record_id = check_record_id(record_id, "record_id").lower()
        url = f"{self.api}/{entity_set}({quote(record_id)})"
        expand = f"owninguser($select={_OWNER_SELECT})" if "ownerid" in mapped_entity.fields else None
        params = {"$expand": expand} if expand else {}
        body = self._call("GET", url, params=params,
                          headers={"Prefer": 'odata.include-annotations="*"'}).json()
        values = _web_api_values(body)
        mapped = self.mapping.map(mapped_entity, values)
        record = self.mapping.canonical_record(mapped_entity, record_id, mapped.record)
        owner = body.get("owninguser")
        if isinstance(owner, Mapping) and owner.get("internalemailaddress") and mapped_entity.kind == "customer":
            record["owner"] = {"name": owner.get("fullname"), "email": owner.get("internalemailaddress"),
                               "aad_object_id": owner.get("azureactivedirectoryobjectid")}
        if mapped.updated_at:
            record["updated_at"] = mapped.updated_at.isoformat()
        return record

    def fetch_event_record(self, event: CrmEvent) -> dict:
        """fetch_record for an event's own record (uses the Dataverse table name the event carries)."""
        return self.fetch_record(str(event.extra.get("crm_entity") or event.entity), event.record_id)

    def find_contact_id(self, email: str) -> str | None:
        body = self._call("GET", f"{self.api}/contacts", params={
            "$select": "contactid", "$filter": f"emailaddress1 eq '{_odata_text(email)}'", "$top": "1"}).json()
        rows = body.get("value") or []
        return rows[0]["contactid"] if rows else None

    def find_user_id(self, email: str) -> str | None:
        body = self._call("GET", f"{self.api}/systemusers", params={
            "$select": "systemuserid", "$filter": f"internalemailaddress eq '{_odata_text(email)}'",
            "$top": "1"}).json()
        rows = body.get("value") or []
        return rows[0]["systemuserid"] if rows else None

    def find_task_id(self, stamp: str) -> str | None:
        body = self._call("GET", f"{self.api}/tasks", params={
            "$select": "activityid", "$filter": f"subcategory eq '{_odata_text(stamp)}'", "$top": "1"}).json()
        rows = body.get("value") or []
        return rows[0]["activityid"] if rows else None

    def list_tasks(self, *, owner_id: str | None = None, customer_id: str | None = None,
                   top: int = 500) -> list[dict]:
        """Tasks crmflow wrote (stamped `crmflow:<dedupe key>`), optionally of one owner or one customer."""
        clauses = [f"startswith(subcategory,'{_odata_text(TASK_STAMP_PREFIX)}')"]
        if owner_id:
            clauses.append(f"_ownerid_value eq {owner_id}")
        if customer_id:  # dedupe keys are <rule>:<customer>:<period>; rule ids cannot hold ':'
            clauses.append(f"contains(subcategory,'{_odata_text(':' + customer_id + ':')}')")
        body = self._call("GET", f"{self.api}/tasks", params={
            "$select": "activityid,subject,description,scheduledend,subcategory,statecode,_ownerid_value,"
                       "_regardingobjectid_value,createdon",
            "$filter": " and ".join(clauses), "$top": str(top)}).json()
        return list(body.get("value") or [])

    # --- writes ----------------------------------------------------------------------------------------------
    def update_stage(self, record_id: str, stage: str) -> str | None:
        """Write the journey stage into the column mapped to `stage` (accounts first, then contacts).

        PATCH with `If-Match: *` updates an existing row and never creates one; an option column gets the option
        value the map gives the stage. Returns the table written, or None when no row has this id.
        """
        record_id = check_record_id(record_id, "record_id").lower()
        if not _GUID.match(record_id):
            return None  # not a Dataverse record (e.g. a customer the generic webhook created)
        for entity_name in ("account", "contact"):
            entity = self.mapping.entities.get(entity_name)
            rule = next((r for r in entity.fields.values() if r.target == "stage"), None) if entity else None
            if rule is None:
                continue
            value: object = stage
            if rule.type == "option":
                codes = [code for code, label in rule.options.items() if label == stage]
                if not codes:
                    raise PermanentError(f"mappings/dataverse.yaml has no {rule.column} option for stage {stage!r}")
                value = int(codes[0]) if codes[0].lstrip("-").isdigit() else codes[0]
            url = f"{self.api}/{_ENTITY_SETS[entity_name]}({quote(record_id)})"
            try:
                self._call("PATCH", url, json={rule.column: value}, headers={"If-Match": "*"})
            except NotFound:
                continue
            return entity_name
        return None

    def create_task_once(self, task_id: str, task: Mapping[str, Any]) -> bool:
        """Create the task with this id unless it exists (upsert with `If-None-Match: *`, Dataverse's "prevent
        update"): True when this call created it, False when it was there already (412). Atomic in Dataverse, so
        two workers racing on one id create one task."""
        response = self._call("PATCH", f"{self.api}/tasks({task_id})", json=dict(task),
                              headers={"If-None-Match": "*"}, allow=(412,))
        return response.status_code != 412

    def create_task(self, task: Mapping[str, Any]) -> str:
        """POST tasks; returns the new activityid (from OData-EntityId)."""
        response = self._call("POST", f"{self.api}/tasks", json=dict(task))
        entity_id = response.headers.get("OData-EntityId", "")
        match = re.search(r"\(([0-9a-fA-F-]{36})\)", entity_id)
        return match[1].lower() if match else ""

    # --- plumbing ---------------------------------------------------------------------------------------------
    def _bearer(self, refresh: bool = False) -> str:
        with self._lock:
            if self._token is None or refresh:
                self._token = self.get_token(self.scope)
            return self._token

    def _call(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = {"Accept": "application/json", "OData-MaxVersion": "4.0", "OData-Version": "4.0",
                   **kwargs.pop("headers", {})}
        allow = kwargs.pop("allow", ())
        for attempt in (0, 1):
            headers["Authorization"] = f"Bearer {self._bearer(refresh=attempt > 0)}"
            try:
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            except requests.RequestException as exc:
                raise TransientError(f"Dataverse {method} failed: {type(exc).__name__}") from None
            if response.status_code == 401 and attempt == 0:
                continue  # token expired or revoked: fetch a fresh one once
            if response.status_code in allow:
                return response
            return _check(response, method)
        raise Unauthorized("Dataverse refused the token twice")


def _check(response: requests.Response, method: str) -> requests.Response:
    status = response.status_code
    if status < 300:
        return response
    if status == 429:
        retry_after = response.headers.get("Retry-After", "")
        seconds = float(retry_after) if retry_after.replace(".", "", 1).isdigit() else 30.0
        raise Throttled("Dataverse throttled the request", seconds)
    if status == 404:
        raise NotFound(f"Dataverse {method}: record not found")
    if status >= 500 or status == 408:
        raise TransientError(f"Dataverse {method}: HTTP {status}")
    if status in (401, 403):
        raise Unauthorized(f"Dataverse {method}: HTTP {status} (check the application user's security role)")
    raise PermanentError(f"Dataverse {method}: HTTP {status}: {_error_message(response)}")


def _error_message(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", {}).get("message", ""))[:200]
    except ValueError:
        return ""


def _odata_text(value: str) -> str:
    return value.replace("'", "''")


def _web_api_values(body: Mapping[str, Any]) -> dict[str, Any]:
    """Web API JSON → the column shapes the webhook uses, so one map serves both.

    Lookups arrive as `_ownerid_value` (+ `@Microsoft.Dynamics.CRM.lookuplogicalname`); they become
    EntityReference-like objects under the column name (`ownerid`).
    """
    values: dict[str, Any] = {}
    for key, value in body.items():
        if "@" in key:
            continue
        if key.startswith("_") and key.endswith("_value"):
            column = key[1:-len("_value")]
            values[column] = {"Id": value, "Name": body.get(f"{key}@OData.Community.Display.V1.FormattedValue"),
                              "LogicalName": body.get(f"{key}@Microsoft.Dynamics.CRM.lookuplogicalname")} \
                if value else None
        else:
            values[key] = value
    return values


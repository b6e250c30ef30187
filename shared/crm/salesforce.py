"""Salesforce Outbound Messages: SOAP `notifications` → canonical events, answered with the SOAP Ack.

Salesforce signs nothing; the caller is identified by its organisation id, checked against SALESFORCE_ORG_IDS
(15- or 18-character ids both match). Up to 100 notifications per call; Salesforce retries for 24 hours until it
gets `<Ack>true</Ack>`, so each notification's Id is its event id (duplicates die in the broker).
Outbound messages fire on create and update alike and never on delete, so every event is an `update`.
A notification for an sObject type the mapping does not know is acknowledged and skipped (with a log line):
refusing it would only make Salesforce retry it for 24 hours.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import datetime

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from shared.crm.common import WebhookRequest, check_record_id, require_content_type
from shared.crm.mapping import VendorMapping
from shared.domain.errors import InvalidInput, Location, Unauthorized
from shared.domain.events import CrmEvent

log = logging.getLogger(__name__)
SOURCE = "salesforce"
MAX_NOTIFICATIONS = 100
SOAP_NS = "http://schemas.xmlsoap.org/soap/envelope/"
OUTBOUND_NS = "http://soap.sforce.com/2005/09/outbound"
SOBJECT_NS = "urn:sobject.enterprise.soap.sforce.com"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
_ORG_ID = re.compile(r"^[a-zA-Z0-9]{15}([a-zA-Z0-9]{3})?$")

ACK = (b'<?xml version="1.0" encoding="UTF-8"?>'
       b'<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body>'
       b'<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>'
       b'</notificationsResponse></soapenv:Body></soapenv:Envelope>')


def _parse_xml(body: bytes) -> ET.Element:
    """SOAP forbids DTDs: defusedxml refuses any DTD, entity declaration or external reference while parsing, in
    whatever encoding the body declares (a byte search for `<!DOCTYPE` misses UTF-16), so no entity is expanded."""
    try:
        return SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise InvalidInput("XML with a DTD or entity declarations is not accepted") from None
    except ET.ParseError as exc:
        raise InvalidInput(f"body is not well-formed XML: {exc}") from None


def parse_webhook(request: WebhookRequest, mapping: VendorMapping, allowed_orgs: Iterable[str],
                  received_at: datetime) -> list[CrmEvent]:
    require_content_type(request, "text/xml", "application/soap+xml")
    root = _parse_xml(request.body)
    if root.tag != f"{{{SOAP_NS}}}Envelope":
        raise InvalidInput("not a SOAP 1.1 Envelope", Location(field="Envelope"))
    notifications = root.find(f"{{{SOAP_NS}}}Body/{{{OUTBOUND_NS}}}notifications")
    if notifications is None:
        raise InvalidInput("no outbound-message notifications in the SOAP Body", Location(field="notifications"))

    org_id = (notifications.findtext(f"{{{OUTBOUND_NS}}}OrganizationId") or "").strip()
    if not _ORG_ID.match(org_id):
        raise Unauthorized("OrganizationId is missing or malformed")
    allowed = {org[:15] for org in allowed_orgs if org}
    if org_id[:15] not in allowed:
        raise Unauthorized("organisation is not in SALESFORCE_ORG_IDS")

    items = notifications.findall(f"{{{OUTBOUND_NS}}}Notification")
    if not items:
        raise InvalidInput("at least one Notification is required", Location(field="Notification"))
    if len(items) > MAX_NOTIFICATIONS:
        raise InvalidInput(f"at most {MAX_NOTIFICATIONS} notifications per message, got {len(items)}")
    events = [_event(item, index, mapping, org_id, received_at) for index, item in enumerate(items)]
    return [event for event in events if event is not None]


def _event(item: ET.Element, index: int, mapping: VendorMapping, org_id: str,
           received_at: datetime) -> CrmEvent | None:
    where = f"Notification[{index}]"
    notification_id = check_record_id(item.findtext(f"{{{OUTBOUND_NS}}}Id") or "", f"{where}.Id")
    sobject = item.find(f"{{{OUTBOUND_NS}}}sObject")
    if sobject is None:
        raise InvalidInput("is required", Location(field=f"{where}.sObject"))
    sobject_type = (sobject.get(f"{{{XSI_NS}}}type") or "").rpartition(":")[2]
    if not sobject_type:
        raise InvalidInput("names no sObject type (xsi:type)", Location(field=f"{where}.sObject"))
    entity = mapping.find(sobject_type)
    if entity is None:
        log.info("salesforce notification for sObject %s acknowledged and skipped: mappings/%s.yaml does not map it",
                 sobject_type[:60], mapping.vendor)
        return None

    values: dict[str, str | None] = {}
    for child in sobject:
        if len(child):
            continue  # related objects (e.g. sf:Account) are not fields of this record
        name = child.tag.rpartition("}")[2]
        nil = child.get(f"{{{XSI_NS}}}nil") == "true"
        values[name] = None if nil else (child.text or "")
    record_id = check_record_id(values.get("Id") or "", f"{where}.sObject.Id")
    mapped = mapping.map(entity, values)

    record = mapping.canonical_record(entity, record_id, mapped.record)
    return CrmEvent(
        source=SOURCE, entity=entity.kind, record_id=record_id, operation="update", event_id=notification_id,
        occurred_at=mapped.updated_at, changed_fields=mapped.changed, record=record, received_at=received_at,
        extra={"crm_entity": entity.name, "organization_id": org_id},
    )

"""CRM write-back: a `crm_task` action becomes a task in the local `Tasks` table or in Dataverse.

`write_task(message, writer)` is the one domain call of the `crm-tasks` consumer. Both writers are idempotent by
the message's dedupe key, so a redelivered message never creates a second task:
- `LocalTaskLedger`: `create_entity` keyed by the dedupe key is an atomic claim (an existing row → "exists").
- `DataverseTaskWriter`: the task's id is derived from the key (a name-based UUID) and created with an upsert that
  refuses to update (`If-None-Match: *`), so two workers racing on one message create one task; it is also stamped
  (`subcategory` = `crmflow:<key>`), and a task with that stamp (from before ids were derived) counts as existing.
  Regarding = the contact found by email; owner = the rep's systemuser.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from shared.crm.dataverse import TASK_STAMP_PREFIX, DataverseClient
from shared.domain.errors import InvalidInput, Location
from shared.domain.messages import ActionMessage
from shared.domain.names import TASKS
from shared.domain.vocabulary import Channel
from shared.storage.backend import AlreadyExists, Storage
from shared.storage.keys import readable_key

log = logging.getLogger(__name__)

STAGE_SYNC = "crm_stage"  # channel of a journey's stage write-back (shared.journeys.service publishes it)

SUBJECT_LIMIT = 200  # Dataverse task.subject max length
STAMP_LIMIT = 250  # task.subcategory max length
TASK_ID_NAMESPACE = uuid.UUID("3f0c6a52-58d4-4c1e-9b7e-5d0f2a9c8e41")  # crmflow's own: ids nobody else derives


@dataclass(frozen=True)
class CrmTask:
    """A validated crm_task action."""

    dedupe_key: str
    customer_id: str
    rule: str
    subject: str
    description: str
    due: date | None
    regarding_email: str | None
    owner_email: str | None

    @classmethod
    def from_message(cls, message: ActionMessage) -> CrmTask:
        if message.channel != Channel.CRM_TASK:
            raise InvalidInput(f"channel {message.channel!r} is not crm_task", Location(field="channel"))
        content = message.content if isinstance(message.content, Mapping) else {}
        due_text = content.get("due")
        try:
            due = date.fromisoformat(due_text) if due_text else None
        except (TypeError, ValueError):
            raise InvalidInput("must be YYYY-MM-DD", Location(field="content.due")) from None
        description = content.get("description") or ""
        if not isinstance(description, str):
            raise InvalidInput("must be text", Location(field="content.description"))
        return cls(
            dedupe_key=message.dedupe_key, customer_id=message.customer_id, rule=message.rule,
            subject=(message.subject or message.rule)[:SUBJECT_LIMIT], description=description, due=due,
            regarding_email=_email(content.get("regarding_email"), "content.regarding_email"),
            owner_email=_email(content.get("owner_email"), "content.owner_email"))


def _email(value: Any, where: str) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str) or "@" not in value:
        raise InvalidInput("must be an email address", Location(field=where))
    return value.strip()


@dataclass(frozen=True)
class TaskResult:
    status: str  # "created" | "exists"
    target: str  # "local" | "dataverse"
    task_id: str


class TaskWriter(ABC):
    target: str

    @abstractmethod
    def write(self, task: CrmTask) -> TaskResult: ...

    def write_stage(self, customer_id: str, stage: str) -> TaskResult:
        """Write a customer's journey stage to the CRM (the local target keeps it in `Customers` only)."""
        return TaskResult("skipped", self.target, customer_id)


def write_crm_message(message: ActionMessage, writer: TaskWriter,
                      current_stage: Callable[[str], str | None]) -> TaskResult:
    """The `crm-tasks` consumer's one call: a crm_task action, or a journey stage to write back.

    A stage message writes the customer's stage as it is *now* (`current_stage(customer_id)`), not the one it
    carries: messages of two quick transitions may arrive in either order, and the last write must be the latest.
    """
    if message.channel == STAGE_SYNC:
        stage = current_stage(message.customer_id)
        if not stage:
            return TaskResult("skipped", writer.target, message.customer_id)
        result = writer.write_stage(message.customer_id, stage)
        log.info("journey stage %s in %s", result.status, result.target)
        return result
    return write_task(message, writer)


def write_task(message: ActionMessage, writer: TaskWriter) -> TaskResult:
    """Record a crm_task action once (idempotent by dedupe key)."""
    result = writer.write(CrmTask.from_message(message))
    log.info("crm task %s in %s (%s)", result.status, result.target,
             hashlib.sha256(message.dedupe_key.encode()).hexdigest()[:12])
    return result


task_row_key = readable_key  # RowKey for a dedupe key: itself when Table Storage allows it, else a stable hash


class LocalTaskLedger(TaskWriter):
    """Tasks table: PartitionKey = customer id, RowKey = dedupe key (the dashboard lists them)."""

    target = "local"

    def __init__(self, storage: Storage, clock: Any = None):
        self.storage = storage
        self.clock = clock or (lambda: datetime.now(UTC))

    def write(self, task: CrmTask) -> TaskResult:
        row_key = task_row_key(task.dedupe_key)
        entity = {
            "PartitionKey": readable_key(task.customer_id), "RowKey": row_key, "dedupe_key": task.dedupe_key,
            "rule": task.rule, "subject": task.subject, "description": task.description,
            "due": task.due.isoformat() if task.due else None, "regarding_email": task.regarding_email,
            "owner_email": task.owner_email, "status": "open", "created_at": self.clock().isoformat(),
        }
        try:
            self.storage.table(TASKS).insert({k: v for k, v in entity.items() if v is not None})
        except AlreadyExists:
            return TaskResult("exists", self.target, f"{task.customer_id}/{row_key}")
        return TaskResult("created", self.target, f"{task.customer_id}/{row_key}")


class DataverseTaskWriter(TaskWriter):
    """Dataverse `tasks` through the Web API (the seeds' example 3)."""

    target = "dataverse"

    def __init__(self, client: DataverseClient):
        self.client = client

    @staticmethod
    def stamp(dedupe_key: str) -> str:
        stamp = f"{TASK_STAMP_PREFIX}{dedupe_key}"
        if len(stamp) <= STAMP_LIMIT:
            return stamp
        return f"{TASK_STAMP_PREFIX}{hashlib.sha256(dedupe_key.encode('utf-8')).hexdigest()}"

    def write_stage(self, customer_id: str, stage: str) -> TaskResult:
        written = self.client.update_stage(customer_id, stage)
        return TaskResult("updated" if written else "skipped", self.target, customer_id)

    def write(self, task: CrmTask) -> TaskResult:
        stamp = self.stamp(task.dedupe_key)
        existing = self.client.find_task_id(stamp)
        if existing:
            return TaskResult("exists", self.target, existing)
        body: dict[str, Any] = {"subject": task.subject, "description": task.description, "subcategory": stamp}
        if task.due:
            body["scheduledend"] = f"{task.due.isoformat()}T00:00:00Z"
        if task.regarding_email:
            contact_id = self.client.find_contact_id(task.regarding_email)
            if contact_id:
                body["regardingobjectid_contact@odata.bind"] = f"/contacts({contact_id})"
        if task.owner_email:
            user_id = self.client.find_user_id(task.owner_email)
            if user_id:
                body["ownerid@odata.bind"] = f"/systemusers({user_id})"
        task_id = self.task_id(task.dedupe_key)
        created = self.client.create_task_once(task_id, body)
        return TaskResult("created" if created else "exists", self.target, task_id)

    @staticmethod
    def task_id(dedupe_key: str) -> str:
        """The Dataverse activityid of a dedupe key's task: the same key always names the same record."""
        return str(uuid.uuid5(TASK_ID_NAMESPACE, dedupe_key))


@dataclass(frozen=True)
class WrittenTask:
    """A task as crmflow wrote it, read back for `crmflow tasks` (local Tasks table or Dataverse)."""

    target: str
    customer_id: str | None
    rule: str | None
    subject: str
    due: str | None
    owner: str | None
    status: str | None
    dedupe_key: str | None
    task_id: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def list_local_tasks(storage: Storage, *, customer_id: str | None = None,
                     owner_email: str | None = None, limit: int = 1000) -> list[WrittenTask]:
    """Rows of the local Tasks table (one customer's partition, or all), optionally of one owner, by due date."""
    filters = {"PartitionKey": readable_key(customer_id) if customer_id else None, "owner_email": owner_email}
    given = {name: value for name, value in filters.items() if value}
    rows = storage.table(TASKS).query(" and ".join(f"{name} eq @{name}" for name in given) or None, given)
    found = []
    for row in rows:
        found.append(WrittenTask(
            target="local", customer_id=row["PartitionKey"], rule=row.get("rule"), subject=row.get("subject", ""),
            due=row.get("due"), owner=row.get("owner_email"), status=row.get("status"),
            dedupe_key=row.get("dedupe_key"), task_id=f"{row['PartitionKey']}/{row['RowKey']}"))
        if len(found) >= limit:
            break
    return sorted(found, key=lambda t: (t.due or "9999", t.customer_id or "", t.task_id))


def list_dataverse_tasks(client: DataverseClient, *, customer_id: str | None = None,
                         owner_email: str | None = None, limit: int = 500) -> list[WrittenTask]:
    """Tasks crmflow wrote to Dataverse (found by their `crmflow:` stamp), optionally of one customer or owner."""
    owner_id = None
    if owner_email:
        owner_id = client.find_user_id(owner_email)
        if owner_id is None:
            return []  # no such user in Dataverse: no task can be theirs
    found = []
    for row in client.list_tasks(owner_id=owner_id, customer_id=customer_id, top=limit):
        key = str(row.get("subcategory") or "").removeprefix(TASK_STAMP_PREFIX)
        rule, _, rest = key.partition(":")
        due = row.get("scheduledend")
        found.append(WrittenTask(
            target="dataverse", customer_id=rest.partition(":")[0] or None, rule=rule or None,
            subject=row.get("subject") or "", due=str(due)[:10] if due else None,
            owner=owner_email or row.get("_ownerid_value"), status={0: "open", 1: "completed", 2: "canceled"}.get(
                row.get("statecode"), "open"), dedupe_key=key or None, task_id=str(row.get("activityid", ""))))
    return sorted(found, key=lambda t: (t.due or "9999", t.customer_id or "", t.task_id))

"""A durable local broker on SQLite with Service Bus semantics (see `shared.broker.port`).

One database file holds every queue; several threads and processes on one machine may share it. Each write runs in
a `BEGIN IMMEDIATE` transaction (SQLite's single-writer lock), so two workers receiving from one queue can never
both lock the same message. WAL mode lets readers proceed while a writer commits, and a crashed process loses no
committed message.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from shared.broker.limits import check_outgoing
from shared.broker.port import Broker, OutgoingMessage, ReceivedMessage
from shared.broker.replay import REPLAYS_PROPERTY, replayed_message_id
from shared.domain.errors import Conflict, TransientError

MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    body TEXT NOT NULL,
    subject TEXT,
    properties TEXT NOT NULL,
    enqueued_at REAL NOT NULL,
    visible_at REAL NOT NULL,
    delivery_count INTEGER NOT NULL DEFAULT 0,
    lock_token TEXT,
    locked_until REAL,
    dead INTEGER NOT NULL DEFAULT 0,
    dead_letter_reason TEXT,
    dead_letter_description TEXT
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, dead, visible_at, seq);
CREATE TABLE IF NOT EXISTS seen_ids (
    queue TEXT NOT NULL,
    message_id TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (queue, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS seen_ids_expiry ON seen_ids (expires_at);
"""


# Visible now: never settled, scheduled time reached, and not locked (a lock moves visible_at to its expiry).
_READY = ("SELECT seq, message_id, body, subject, properties, enqueued_at, delivery_count FROM messages"
          " WHERE queue = ? AND dead = 0 AND visible_at <= ? ORDER BY visible_at, seq")


class LocalBroker(Broker):
    """Service Bus semantics on a SQLite file: duplicate detection, scheduling, peek-lock, dead-lettering.

    `clock` returns epoch seconds; tests may pass a controllable one (every process sharing the file must agree).
    """

    def __init__(self, path: Path, *, duplicate_window: timedelta = timedelta(minutes=10),
                 lock_duration: timedelta = timedelta(seconds=60), max_delivery_count: int = 10,
                 clock: Callable[[], float] = time.time, poll_interval: float = 0.05):
        if max_delivery_count < 1:
            raise ValueError("max_delivery_count must be at least 1")
        self.path = Path(path)
        self.duplicate_window = duplicate_window.total_seconds()
        self.lock_duration = lock_duration.total_seconds()
        self.max_delivery_count = max_delivery_count
        self._clock = clock
        self._poll_interval = poll_interval
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        # Wakes receivers of this process early when a message becomes visible here; other processes poll.
        self._activity = threading.Condition()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection()  # creates the schema

    # --- connections -----------------------------------------------------------------------------------------
    def _connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash (what the fault-injection tests do), not a power cut.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            self._local.db = db
            with self._connections_lock:
                self._connections.append(db)
        return db

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise TransientError(f"local broker busy: {exc}") from exc
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        try:
            db.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise TransientError(f"local broker could not commit: {exc}") from exc

    def close(self) -> None:
        with self._connections_lock:
            for db in self._connections:
                with contextlib.suppress(sqlite3.Error):
                    db.close()
            self._connections.clear()
        self._local = threading.local()

    # --- publish ---------------------------------------------------------------------------------------------
    def publish(self, queue: str, messages: Sequence[OutgoingMessage]) -> None:
        for message in messages:
            check_outgoing(message)
        if not messages:
            return
        now = self._clock()
        with self._write() as db:
            db.execute("DELETE FROM seen_ids WHERE expires_at <= ?", (now,))
            for message in messages:
                if not self._remember_id(db, queue, message.message_id, now):
                    continue  # a duplicate within the window: dropped, like Service Bus
                visible_at = message.scheduled_at.timestamp() if message.scheduled_at else now
                db.execute(
                    "INSERT INTO messages (queue, message_id, body, subject, properties, enqueued_at, visible_at)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (queue, message.message_id, message.body, message.subject, json.dumps(dict(message.properties)),
                     max(now, visible_at), visible_at))
        self._notify()

    def _remember_id(self, db: sqlite3.Connection, queue: str, message_id: str, now: float) -> bool:
        """Record message_id for the duplicate window; False when it was already seen within it."""
        cursor = db.execute(
            "INSERT INTO seen_ids (queue, message_id, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT (queue, message_id) DO UPDATE SET expires_at = excluded.expires_at"
            " WHERE seen_ids.expires_at <= ?",
            (queue, message_id, now + self.duplicate_window, now))
        return cursor.rowcount == 1

    # --- receive and settle ----------------------------------------------------------------------------------
    def receive(self, queue: str, max_messages: int = 1, max_wait_seconds: float = 0.0) -> list[ReceivedMessage]:
        deadline = time.monotonic() + max_wait_seconds
        while True:
            received = self._receive_now(queue, max_messages)
            remaining = deadline - time.monotonic()
            if received or remaining <= 0:
                return received
            with self._activity:
                self._activity.wait(min(remaining, self._poll_interval))

    def _receive_now(self, queue: str, max_messages: int) -> list[ReceivedMessage]:
        now = self._clock()
        # A read first: idle polling never takes the write lock that publishers and other workers need.
        if self._connection().execute(_READY + " LIMIT 1", (queue, now)).fetchone() is None:
            return []
        received: list[ReceivedMessage] = []
        with self._write() as db:
            while len(received) < max_messages:
                rows = db.execute(_READY + " LIMIT ?", (queue, now, max_messages - len(received))).fetchall()
                if not rows:
                    break
                for seq, message_id, body, subject, properties, enqueued_at, delivery_count in rows:
                    if delivery_count >= self.max_delivery_count:
                        # Its last lock expired unsettled: a failed delivery past the limit.
                        self._dead_letter(db, seq, MAX_DELIVERY_COUNT_EXCEEDED, self._exceeded_description())
                        continue
                    token = f"{seq}:{uuid.uuid4().hex}"
                    # A locked message is visible again when its lock expires: one indexed column answers both.
                    db.execute("UPDATE messages SET delivery_count = ?, lock_token = ?, locked_until = ?,"
                               " visible_at = ? WHERE seq = ?",
                               (delivery_count + 1, token, now + self.lock_duration, now + self.lock_duration, seq))
                    received.append(ReceivedMessage(
                        queue=queue, body=body, message_id=message_id, delivery_count=delivery_count + 1,
                        enqueued_at=_utc(enqueued_at), lock_token=token, subject=subject,
                        properties=json.loads(properties)))
        return received

    def complete(self, message: ReceivedMessage) -> None:
        with self._write() as db:
            seq, _ = self._locked_row(db, message)
            db.execute("DELETE FROM messages WHERE seq = ?", (seq,))

    def abandon(self, message: ReceivedMessage) -> None:
        with self._write() as db:
            seq, delivery_count = self._locked_row(db, message)
            if delivery_count >= self.max_delivery_count:
                self._dead_letter(db, seq, MAX_DELIVERY_COUNT_EXCEEDED, self._exceeded_description())
            else:
                db.execute("UPDATE messages SET lock_token = NULL, locked_until = NULL, visible_at = ? WHERE seq = ?",
                           (self._clock(), seq))
        self._notify()

    def dead_letter(self, message: ReceivedMessage, reason: str, description: str = "") -> None:
        with self._write() as db:
            seq, _ = self._locked_row(db, message)
            self._dead_letter(db, seq, reason, description)

    def renew_lock(self, message: ReceivedMessage) -> None:
        """Extend the lock by another lock duration (the local host does it while a function runs)."""
        with self._write() as db:
            seq, _ = self._locked_row(db, message)
            until = self._clock() + self.lock_duration
            db.execute("UPDATE messages SET locked_until = ?, visible_at = ? WHERE seq = ?", (until, until, seq))

    def _locked_row(self, db: sqlite3.Connection, message: ReceivedMessage) -> tuple[int, int]:
        """(seq, delivery_count) while the caller still holds the lock; Conflict (lock lost) otherwise."""
        seq_text, _, _ = message.lock_token.partition(":")
        row = db.execute("SELECT seq, delivery_count FROM messages WHERE seq = ? AND lock_token = ?"
                         " AND locked_until > ?",
                         (int(seq_text) if seq_text.isdigit() else -1, message.lock_token, self._clock())).fetchone()
        if row is None:
            raise Conflict(f"lock lost on message {message.message_id} of queue {message.queue}: it expired or the "
                           "message was already settled")
        return row

    @staticmethod
    def _dead_letter(db: sqlite3.Connection, seq: int, reason: str, description: str) -> None:
        db.execute("UPDATE messages SET dead = 1, dead_letter_reason = ?, dead_letter_description = ?,"
                   " lock_token = NULL, locked_until = NULL WHERE seq = ?", (reason, description, seq))

    def _exceeded_description(self) -> str:
        return f"Message could not be consumed after {self.max_delivery_count} delivery attempts."

    def _notify(self) -> None:
        with self._activity:
            self._activity.notify_all()

    # --- dead letters ----------------------------------------------------------------------------------------
    def peek_dead_letters(self, queue: str, max_messages: int = 100) -> list[ReceivedMessage]:
        rows = self._connection().execute(
            "SELECT message_id, body, subject, properties, enqueued_at, delivery_count, dead_letter_reason,"
            " dead_letter_description FROM messages WHERE queue = ? AND dead = 1 ORDER BY seq LIMIT ?",
            (queue, max_messages)).fetchall()
        return [ReceivedMessage(queue=queue, body=body, message_id=message_id, delivery_count=delivery_count,
                                enqueued_at=_utc(enqueued_at), lock_token="", subject=subject,
                                properties=json.loads(properties), dead_letter_reason=reason,
                                dead_letter_description=description)
                for message_id, body, subject, properties, enqueued_at, delivery_count, reason, description in rows]

    def replay_dead_letters(self, queue: str, message_ids: Sequence[str] | None = None) -> int:
        """Requeue dead letters with a fresh delivery count under a new message id (see `replayed_message_id`)."""
        wanted = None if message_ids is None else set(message_ids)
        now = self._clock()
        moved = 0
        with self._write() as db:
            rows = db.execute("SELECT seq, message_id, properties FROM messages WHERE queue = ? AND dead = 1"
                              " ORDER BY seq", (queue,)).fetchall()
            for seq, message_id, properties in rows:
                if wanted is not None and message_id not in wanted:
                    continue
                props = json.loads(properties)
                replays = int(props.get(REPLAYS_PROPERTY, 0)) + 1
                props[REPLAYS_PROPERTY] = replays
                new_id = replayed_message_id(message_id, replays)
                self._remember_id(db, queue, new_id, now)
                db.execute(
                    "UPDATE messages SET dead = 0, dead_letter_reason = NULL, dead_letter_description = NULL,"
                    " delivery_count = 0, lock_token = NULL, locked_until = NULL, message_id = ?, properties = ?,"
                    " enqueued_at = ?, visible_at = ? WHERE seq = ?",
                    (new_id, json.dumps(props), now, now, seq))
                moved += 1
        self._notify()
        return moved

    # --- inspection (tests, the local host's status line) ------------------------------------------------------
    def count(self, queue: str) -> int:
        """Active (not dead-lettered) messages of a queue, scheduled and locked ones included."""
        (n,) = self._connection().execute(
            "SELECT COUNT(*) FROM messages WHERE queue = ? AND dead = 0", (queue,)).fetchone()
        return n


def _utc(epoch: float) -> datetime:
    return datetime.fromtimestamp(epoch, tz=UTC)

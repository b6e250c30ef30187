"""One error hierarchy for the whole app.

Every error is either *retryable* (a redelivery or a later run may succeed: throttling, timeouts, 5xx) or
*permanent* (retrying cannot help: bad input, bad configuration, a 4xx from a platform). Queue adapters use the flag
to choose between abandon (redeliver) and dead-letter; the HTTP layer maps classes to status codes in one place
(`functions/http.py`).
"""

from __future__ import annotations

from dataclasses import dataclass


class CrmflowError(Exception):
    """Base class. `retryable` tells adapters whether redelivery can help."""

    retryable: bool = False

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "message": self.message, "retryable": self.retryable}


class PermanentError(CrmflowError):
    retryable = False


class RetryableError(CrmflowError):
    retryable = True


class ConfigError(PermanentError):
    """A missing or malformed app setting, detected at cold start."""


@dataclass(frozen=True)
class Location:
    """Where bad input was found: a file, a line (1-based), a field or column, a rule id."""

    file: str | None = None
    line: int | None = None
    field: str | None = None
    rule: str | None = None

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line else ""))
        elif self.line:
            parts.append(f"line {self.line}")
        if self.rule:
            parts.append(f"rule {self.rule!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)


class InvalidInput(PermanentError):
    """Input that can never be processed (bad CSV cell, bad rule, bad webhook body). Names where it was found."""

    def __init__(self, message: str, location: Location | None = None):
        self.location = location or Location()
        where = str(self.location)
        super().__init__(f"{where}: {message}" if where else message)
        self.reason = message

    def to_dict(self) -> dict:
        data = super().to_dict()
        data.update({k: v for k, v in vars(self.location).items() if v is not None})
        return data


class Unauthorized(PermanentError):
    """A request whose identity or signature could not be verified."""


class Forbidden(PermanentError):
    """A verified caller who may not do this (e.g. a signed-in person who is not the approval's approver)."""


class NotFound(PermanentError):
    """A record that does not exist."""


class SourceNotEnabled(NotFound):
    """A CRM webhook whose credential setting is empty: callers learn only that the source is off (404), the
    operator's log names the setting."""

    def __init__(self, source: str, setting: str):
        super().__init__(f"CRM source {source} is not enabled: app setting {setting} is empty")
        self.source = source
        self.setting = setting

    def to_dict(self) -> dict:
        return {"error": "source not enabled"}


class Conflict(PermanentError):
    """A write lost an optimistic-concurrency race or violates a state transition."""


class PayloadTooLarge(PermanentError):
    """A body or entity over a platform or configured limit."""


class TransientError(RetryableError):
    """Timeouts, connection resets, 5xx: retry with backoff."""


class OutcomeUnknown(TransientError):
    """No answer (timeout, reset, gateway timeout): the request may have been carried out. Look before redoing it."""


class Throttled(RetryableError):
    """The platform (or our own rate limiter) asked us to come back later."""

    def __init__(self, message: str, retry_after_seconds: float):
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds

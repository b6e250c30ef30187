"""E-mail addresses: what a mail can be sent to, checked once here for import, planning and approvals."""

from __future__ import annotations

import re

MAX_LENGTH = 254  # RFC 5321 path limit
_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                      r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+")


def valid_address(address: str | None) -> bool:
    """True when a mail can be addressed to it (a dotted domain, no spaces, one @)."""
    return bool(address) and len(address) <= MAX_LENGTH and _ADDRESS.fullmatch(address) is not None


def address_problem(address: str) -> str | None:
    """Why no mail can be sent to `address`, in words that do not repeat it; None when it is valid."""
    if valid_address(address):
        return None
    ats = address.count("@")
    local, _, domain = address.rpartition("@")
    if ats == 0:
        return "not a valid e-mail address: it has no @"
    if ats > 1:
        return "not a valid e-mail address: it has more than one @"
    if len(address) > MAX_LENGTH:
        return f"not a valid e-mail address: longer than {MAX_LENGTH} characters"
    if not local:
        return "not a valid e-mail address: nothing before the @"
    if not domain:
        return "not a valid e-mail address: no domain after the @"
    if any(ch.isspace() for ch in address):
        return "not a valid e-mail address: it contains a space"
    if "." not in domain or domain.startswith(".") or domain.endswith(".") or ".." in domain:
        return "not a valid e-mail address: the domain after the @ needs a dot between names (example.com)"
    return "not a valid e-mail address: it has characters an address cannot have"

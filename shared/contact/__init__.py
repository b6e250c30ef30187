"""Respecting people's attention: contact caps for customers (`caps`), the contact policy file (`policy`)."""

from shared.contact.caps import ContactGuard, ContactLog, Decision
from shared.contact.policy import ContactPolicy, PolicyProblems, load_contact_policy

__all__ = ["ContactGuard", "ContactLog", "ContactPolicy", "Decision", "PolicyProblems", "load_contact_policy"]

"""What the dashboard routes do: read the snapshot, query the work list, render, record outcomes, refresh."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from shared.approvals.flow import ApprovalStore
from shared.broker import Broker
from shared.dashboard.report import _delivery
from shared.dashboard.snapshot import RefreshReport, SnapshotStore, refresh
from shared.dashboard.worklist import WorkList, due_date, owner_key
from shared.domain.errors import InvalidInput, Location
from shared.opportunities import outcomes
from shared.opportunities.ledger import IN_PROGRESS, LOST, NEEDS_APPROVAL, WON, Opportunity, OpportunityLedger
from shared.opportunities.queries import parse_status_change
from shared.rules.evaluator import DEFAULT_DUE_DAYS
from shared.settings import APP_ROOT, Settings
from shared.storage.backend import Storage
from shared.web import dashboard_page
from shared.web.dashboard_auth import Viewer, action_token

if TYPE_CHECKING:
    from shared.journeys.model import Journey
    from shared.rules import RuleSet

PARAMS = ("days", "format", "lang", "owner", "kind", "status", "cursor", "size", "code")
_OWNER = re.compile(r"^(o[0-9a-f]{16}|unassigned|all|me)$")
_KIND = re.compile(r"^[a-z_]{1,40}$")
# The page's buttons send the status they show; the rep's outcome path records the decision it stands for.
PAGE_DECISIONS = {IN_PROGRESS: outcomes.IN_PROGRESS, WON: outcomes.WON, LOST: outcomes.NOT_NOW}
# Teams shows tabs in frames of these hosts (web, desktop and the Microsoft 365 apps that run Teams apps).
FRAME_ANCESTORS = ("'self' https://teams.microsoft.com https://*.teams.microsoft.com https://*.teams.microsoft.us "
                   "https://*.cloud.microsoft https://*.office.com https://*.microsoft365.com https://*.skype.com")


TEAMS_JS = (APP_ROOT / "shared" / "web" / "static" / "MicrosoftTeams.min.js",
            APP_ROOT / "node_modules" / "@microsoft" / "teams-js" / "dist" / "umd" / "MicrosoftTeams.min.js")


def page_headers(nonce: str) -> dict[str, str]:
    """No caching, no referrer (the URL may carry a key), only our own scripts, framed only by Teams."""
    return {
        "Cache-Control": "no-store", "Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": f"default-src 'none'; script-src 'self' 'nonce-{nonce}'; "
                                   "style-src 'unsafe-inline'; "
                                   "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
                                   f"frame-ancestors {FRAME_ANCESTORS}",
    }


@dataclass(frozen=True)
class DashboardQuery:
    days: int | None = None
    format: str | None = None
    lang: str | None = None
    owner: str | None = None
    kind: str | None = None
    status: str | None = None
    cursor: str | None = None
    size: int = 25
    code: str | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DashboardQuery:
        unknown = sorted(set(params) - set(PARAMS))
        if unknown:
            raise InvalidInput(f"unknown query parameter(s) {unknown}; known: {', '.join(PARAMS)}",
                               Location(field=unknown[0]))
        days = params.get("days")
        if days is not None and (not days.isdigit() or not 1 <= int(days) <= 90):
            raise InvalidInput("days must be a whole number from 1 to 90", Location(field="days"))
        fmt = params.get("format") or None
        if fmt not in (None, "html", "json"):
            raise InvalidInput("format must be html or json", Location(field="format"))
        owner = params.get("owner") or None
        if owner is not None and not _OWNER.match(owner):
            raise InvalidInput("owner must be all, me, or an owner key from the page", Location(field="owner"))
        kind = params.get("kind") or None
        if kind is not None and not _KIND.match(kind):
            raise InvalidInput("kind must be a rule kind such as cross_sell", Location(field="kind"))
        size = params.get("size") or "25"
        if not size.isdigit() or not 1 <= int(size) <= 100:
            raise InvalidInput("size must be a whole number from 1 to 100", Location(field="size"))
        cursor = params.get("cursor") or None
        if cursor is not None and len(cursor) > 2000:
            raise InvalidInput("page cursor is too long", Location(field="cursor"))
        return cls(days=int(days) if days else None, format=fmt, lang=params.get("lang") or None, owner=owner,
                   kind=kind, status=params.get("status") or None, cursor=cursor, size=int(size),
                   code=params.get("code") or None)


class DashboardService:
    def __init__(self, settings: Settings, storage: Storage, ledger: OpportunityLedger,
                 approvals: ApprovalStore, broker: Broker, ruleset: Callable[[], RuleSet],
                 journey: Callable[[], Journey | None] = lambda: None):
        self.settings = settings
        self.storage = storage
        self.ledger = ledger
        self.approvals = approvals
        self.broker = broker
        self._ruleset = ruleset
        self._journey = journey
        self.snapshots = SnapshotStore(storage)
        self.work_list = WorkList(storage)
        self._due: dict[str, int | None] | None = None

    def due_days(self, rule_id: str) -> int | None:
        """Days from detection to the rep's due date: the rule's Teams / CRM-task `due_in_days` (default 7)."""
        if self._due is None:
            due: dict[str, int | None] = {}
            for rule in self._ruleset().rules:
                days = [a.due_in_days for a in rule.actions if a.channel != "email" and a.due_in_days is not None]
                due[rule.id] = days[0] if days else DEFAULT_DUE_DAYS
            self._due = due
        return self._due.get(rule_id, DEFAULT_DUE_DAYS)

    def refresh(self, now: datetime, days: int = 7, month_of: datetime | None = None) -> RefreshReport:
        return self._refresh(now, days, month_of)[1]

    def _refresh(self, now: datetime, days: int = 7,
                 month_of: datetime | None = None) -> tuple[dict[str, Any], RefreshReport]:
        return refresh(self.storage, self.ledger, self.approvals, self.broker, shards=self.settings.customer_shards,
                       timezone=self.settings.default_timezone, due_days=self.due_days, now=now, days=days,
                       store=self.snapshots, work_list=self.work_list, month_of=month_of, journey=self._journey(),
                       ruleset=self._ruleset())

    def snapshot(self, now: datetime) -> dict[str, Any]:
        """The stored snapshot (one point read); the first view after a deployment computes it."""
        return self._snapshot(now)[1]

    def _snapshot(self, now: datetime) -> tuple[str | None, dict[str, Any]]:
        version, data = self.snapshots.read_versioned()
        if data is None:
            data = self._refresh(now)[0]
            version = None
        return version, data

    def data(self, query: DashboardQuery, now: datetime) -> dict[str, Any]:
        return self._data(query, now)[1]

    def _data(self, query: DashboardQuery, now: datetime) -> tuple[str | None, dict[str, Any]]:
        version, data = self._snapshot(now)
        if query.days is not None and query.days != (data.get("delivery") or {}).get("days"):
            # Another delivery window than the snapshot's: only that part is read live (a few day partitions).
            data = {**data, "delivery": _delivery(self.storage, self.approvals, self.broker, now, query.days)}
            version = None  # live numbers: not drawn from the snapshot alone
        return version, data

    def page(self, query: DashboardQuery, viewer: Viewer, accept_language: str | None,
             now: datetime) -> tuple[str, str]:
        version, data = self._data(query, now)
        lang = dashboard_page.pick_language(query.lang, accept_language, self.settings.default_locale)
        choice, owner = self._owner(query.owner, viewer, data)
        work = self.work_list.page(owner=owner, kind=query.kind, status=query.status, size=query.size,
                                   cursor=query.cursor)
        tokens = {}
        for item in work.items:
            if item.status == NEEDS_APPROVAL:
                continue  # never offered yet: nothing a rep could answer (an approver decides it)
            token = action_token(self.settings, viewer, item.opportunity_id, now)
            if token:
                tokens[item.opportunity_id] = token
        filters = dashboard_page.Filters(owner=owner, owner_choice=choice, kind=query.kind, status=query.status,
                                         cursor=query.cursor, size=query.size, lang=lang, code=query.code)
        today = now.astimezone(ZoneInfo(self.settings.default_timezone)).date()
        return dashboard_page.render(dashboard_page.PageContext(data=data, work=work, filters=filters,
                                                                tokens=tokens, principal=viewer.principal,
                                                                today=today, version=version))

    @staticmethod
    def _owner(requested: str | None, viewer: Viewer, data: Mapping[str, Any]) -> tuple[str, str | None]:
        """(what the owner select shows, the owner key to query): a signed-in rep starts on their own list."""
        mine = owner_key(viewer.principal) if viewer.principal else None
        if requested == "all":
            return "all", None
        if requested == "me" or (requested is None and mine
                                 and any(o.get("key") == mine for o in data.get("owners") or [])):
            return ("me", mine) if mine else ("all", None)
        if requested:
            return requested, requested
        return "all", None

    def configure_page(self, lang: str | None, accept_language: str | None, now: datetime) -> tuple[str, str]:
        language = dashboard_page.pick_language(lang, accept_language, self.settings.default_locale)
        kinds = sorted(((self.snapshot(now).get("opportunities") or {}).get("by_kind") or {}).keys())
        return dashboard_page.render_configure(language, kinds)

    def tab(self, params: Mapping[str, str], accept_language: str | None) -> tuple[str | None, str, str | None]:
        """The Teams tabs' entry (`GET /api/teams/tab`): (HTML or None, the dashboard URL to open, CSP nonce).

        Only the filters travel on (validated like the page's), so the page can never be sent elsewhere."""
        filters = {name: params[name] for name in ("owner", "kind", "status", "lang") if params.get(name)}
        DashboardQuery.from_params(filters)
        target = "/api/dashboard" + (("?" + urlencode(filters)) if filters else "")
        if self.settings.dashboard_auth != "app_service":
            return None, target, None  # no sign-in to arrange: straight to the page
        lang = dashboard_page.pick_language(params.get("lang"), accept_language, self.settings.default_locale)
        login = "/.auth/login/aad?" + urlencode({"post_login_redirect_uri": "/api/teams/tab?done=1"})
        html, nonce = dashboard_page.render_tab(lang, target, login, done=params.get("done") == "1")
        return html, target, nonce

    @staticmethod
    def teams_js() -> bytes | None:
        """The Teams JavaScript SDK (npm @microsoft/teams-js), served by the app itself: no CDN."""
        for path in TEAMS_JS:
            if path.is_file():
                return path.read_bytes()
        return None

    def record_outcome(self, opportunity_id: str, body: bytes, viewer: Viewer, now: datetime) -> Opportunity:
        """An outcome button: `{"status": "in_progress" | "won" | "lost", "amount"?}` recorded through the rep's
        outcome path (`shared/opportunities/outcomes.py`: idempotent, CRM outcomes win), audited with the viewer as
        who decided (the signed-in user, or the key mode's holder), when, and `via` dashboard; the row shows it."""
        change = parse_status_change(body)
        decision = PAGE_DECISIONS.get(change.status)
        if decision is None:
            raise InvalidInput(f"status must be one of {', '.join(PAGE_DECISIONS)}", Location(field="status"))
        choice = outcomes.parse_decision(decision, change.amount)
        updated = outcomes.record(self.ledger, opportunity_id, choice, now, viewer.decider, via=outcomes.DASHBOARD)
        self.work_list.apply(updated, self._due_of(updated))
        return updated

    def _due_of(self, opportunity: Opportunity) -> str | None:
        partition, _, row = opportunity.id.partition("~")
        stored = self.ledger.table.get(partition, row, select=["local_date"]) or {}
        local_date = stored.get("local_date")
        return due_date(local_date, self.due_days(opportunity.rule))

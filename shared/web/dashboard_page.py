"""The dashboard page (`GET /api/dashboard` for browsers and the Teams tabs): KPI cards, charts, the work list.

Everything is drawn on the server: charts are inline SVG whose geometry is computed here and written out by the
autoescaped Jinja template `shared/web/templates/dashboard.html`, so the page needs no script library, no CDN and
works offline and inside Teams. Its one small inline script (CSP nonce) submits the filters and records outcomes.

The page reads what the snapshot JSON holds and draws a "no data" panel for a part that is absent, so parts other
components add to the report (per-campaign and per-rule revenue by month, journey transitions and SLA counts) appear
as soon as the report carries them. Customer names are shown; no e-mail address is ever put on the page (a rep
without a name shows masked).
"""

from __future__ import annotations

import math
import secrets
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from shared.dashboard.report import JOURNEY_STAGES
from shared.dashboard.worklist import FILTER_STATUSES, OPEN_STATUSES, WorkPage

TEMPLATES = Path(__file__).parent / "templates"
LANGUAGES = ("ja", "en")
PALETTE = ("#0f6cbd", "#c4314b", "#13a10e", "#ca5010", "#8764b8", "#038387", "#986f0b", "#5c2e91", "#69797e")
STATUS_COLOURS = {"detected": "#69797e", "queued": "#8a8886", "notified": "#0f6cbd", "in_progress": "#ca5010",
                  "won": "#13a10e", "lost": "#c4314b", "suppressed": "#c8c6c4", "needs_approval": "#8764b8",
                  "rejected": "#a4262c"}

TEXT: dict[str, dict[str, Any]] = {
    "ja": {
        "title": "営業機会ダッシュボード", "generated": "集計",
        "refresh_note": "スナップショットはスイープ後と定期的に更新されます",
        "kpi": {"this_month": "今月の検出", "open": "対応中の機会", "won": "成約", "revenue_won": "成約金額",
                "conversion_rate": "成約率"},
        "by_kind": "種類別", "by_owner": "担当者別", "by_status": "ステータス", "trend": "月別の推移",
        "journey": "カスタマージャーニー", "stuck": "SLA超過", "median_days": "滞留日数(中央値)",
        "transitions": "遷移(30日)", "campaigns": "キャンペーン別売上", "rules": "ルール別売上",
        "delivery": "配信の状況", "days": "過去{days}日",
        "segments": "RFMセグメント別の顧客数", "uplift": "効果測定（ホールドアウト比較、95%信頼区間）",
        "uplift_columns": ("ルール", "通知", "対照", "成約率", "差", "顧客あたり売上", "差"),
        "delivery_kpi": {"sent": "送信済み", "suppressed": "抑止", "failed": "失敗", "dead_letters": "デッドレター",
                         "approvals_pending": "承認待ち"},
        "work": "対応リスト", "no_data": "データがありません", "no_items": "該当する機会はありません",
        "cols": {"customer": "顧客", "proposal": "提案", "owner": "担当", "detected": "検出日", "due": "期限",
                 "status": "ステータス", "crm": "CRM", "actions": "結果"},
        "open_crm": "CRMで開く", "filter": {"owner": "担当者", "kind": "種類", "status": "ステータス",
                                          "all": "すべて", "me": "自分", "open": "対応中すべて", "apply": "絞り込む"},
        "next": "次のページ", "first": "最初のページ", "amount": "金額",
        "actions": {"in_progress": "対応中", "won": "成約", "lost": "見送り"},
        "saved": "保存しました", "failed": "保存できませんでした", "overdue": "期限切れ",
        "signed_in": "サインイン中", "name": "名称", "opportunities": "機会", "revenue": "売上",
        "won_lost": "成約/見送り", "no_actions": "結果の記録にはリンク署名キーが必要です",
        "kinds": {"cross_sell": "クロスセル", "upsell": "アップセル", "lifecycle": "ライフサイクル",
                  "journey": "ジャーニー", "campaign": "キャンペーン", "alert": "アラート"},
        "statuses": {"detected": "検出", "queued": "送信待ち", "notified": "通知済み", "in_progress": "対応中",
                     "won": "成約", "lost": "失注", "suppressed": "抑止", "needs_approval": "承認待ち",
                     "rejected": "却下"},
        "stages": {"contract": "契約", "implementation": "導入", "onboarding": "オンボーディング",
                   "utilization": "活用", "renewal": "更新", "(none)": "未設定"},
    },
    "en": {
        "title": "Opportunities dashboard", "generated": "As of",
        "refresh_note": "The snapshot is refreshed after each sweep and on a timer",
        "kpi": {"this_month": "Detected this month", "open": "Open", "won": "Won", "revenue_won": "Revenue won",
                "conversion_rate": "Conversion"},
        "by_kind": "By type", "by_owner": "By owner", "by_status": "Status", "trend": "Monthly trend",
        "journey": "Customer journey", "stuck": "past SLA", "median_days": "median days in stage",
        "transitions": "Transitions (30 days)", "campaigns": "Revenue by campaign", "rules": "Revenue by rule",
        "delivery": "Delivery health", "days": "last {days} days",
        "segments": "Customers per RFM label", "uplift": "Uplift (treated vs held out, 95% CI)",
        "uplift_columns": ("rule", "treated", "held out", "conversion", "uplift", "revenue / customer", "uplift"),
        "delivery_kpi": {"sent": "Sent", "suppressed": "Suppressed", "failed": "Failed",
                         "dead_letters": "Dead letters", "approvals_pending": "Approvals pending"},
        "work": "Work list", "no_data": "No data yet", "no_items": "No matching opportunities",
        "cols": {"customer": "Customer", "proposal": "Proposal", "owner": "Owner", "detected": "Detected",
                 "due": "Due", "status": "Status", "crm": "CRM", "actions": "Outcome"},
        "open_crm": "Open in CRM", "filter": {"owner": "Owner", "kind": "Type", "status": "Status", "all": "All",
                                             "me": "Me", "open": "All open", "apply": "Filter"},
        "next": "Next page", "first": "First page", "amount": "Amount",
        "actions": {"in_progress": "In progress", "won": "Won", "lost": "Not now"},
        "saved": "Saved", "failed": "Could not save", "overdue": "overdue",
        "signed_in": "Signed in as", "name": "Name", "opportunities": "Opps.", "revenue": "Revenue",
        "won_lost": "Won / lost", "no_actions": "Recording outcomes needs the link signing key",
        "kinds": {"cross_sell": "Cross-sell", "upsell": "Upsell", "lifecycle": "Lifecycle", "journey": "Journey",
                  "campaign": "Campaign", "alert": "Alert"},
        "statuses": {"detected": "Detected", "queued": "Queued", "notified": "Notified",
                     "in_progress": "In progress", "won": "Won", "lost": "Lost", "suppressed": "Suppressed",
                     "needs_approval": "Needs approval", "rejected": "Rejected"},
        "stages": {"contract": "Contract", "implementation": "Implementation", "onboarding": "Onboarding",
                   "utilization": "Utilization", "renewal": "Renewal", "(none)": "No stage"},
    },
}

_env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(default=True),
                   trim_blocks=True, lstrip_blocks=True)


def pick_language(requested: str | None, accept_language: str | None, default_locale: str) -> str:
    """`?lang=` first, then the browser's Accept-Language (by q-value), then the app's default locale."""
    if requested and requested[:2].lower() in LANGUAGES:
        return requested[:2].lower()
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((-q, index, tag.strip()[:2].lower()))
    for _, _, language in sorted(ranked):
        if language in LANGUAGES:
            return language
    return default_locale[:2].lower() if default_locale[:2].lower() in LANGUAGES else "en"


def mask(label: Any) -> str:
    """Never an address on the page: `hanako@contoso.com` → `h***@contoso.com`."""
    text = str(label)
    if "@" in text:
        local, _, domain = text.partition("@")
        return f"{local[:1]}***@{domain}"
    return text


# --- chart geometry (SVG user units; the template scales them to the panel width) ---------------------------
@dataclass(frozen=True)
class Bar:
    label: str
    value: float
    shown: str
    y: float
    width: float
    colour: str
    note: str = ""


@dataclass(frozen=True)
class BarChart:
    bars: tuple[Bar, ...]
    height: float
    label_width: float = 104
    row: float = 26

    @property
    def empty(self) -> bool:
        return not self.bars


def bar_chart(items: Sequence[tuple[str, float]], *, top: int = 8, other: str = "…", colours: Mapping | None = None,
              notes: Mapping[str, str] | None = None, number=None, zeros: bool = False) -> BarChart:
    """Horizontal bars in the given order; beyond `top` items the rest are summed into one bar."""
    items = [(label, value) for label, value in items if value or zeros]
    if len(items) > top:
        rest = sum(value for _, value in items[top - 1:])
        items = [*items[:top - 1], (other, rest)]
    peak = max((value for _, value in items), default=0) or 1
    fmt = number or _number
    row = 38 if notes else 26  # a note line under each bar needs room
    bars = tuple(Bar(label=label, value=value, shown=fmt(value), y=index * row + 4,
                     width=max(2.0, 150 * value / peak),
                     colour=(colours or {}).get(label, PALETTE[index % len(PALETTE)]),
                     note=(notes or {}).get(label, ""))
                 for index, (label, value) in enumerate(items))
    return BarChart(bars, height=len(bars) * row + 8, row=row)


@dataclass(frozen=True)
class Slice:
    label: str
    value: int
    share: str
    dash: str
    offset: float
    colour: str


def donut(items: Sequence[tuple[str, str, int]]) -> tuple[Slice, ...]:
    """(key, label, value) → circle segments drawn with stroke-dasharray on r=40 (circumference 2π·40)."""
    total = sum(value for _, _, value in items) or 1
    circumference = 2 * math.pi * 40
    slices, start = [], 0.0
    for key, label, value in items:
        if not value:
            continue
        length = circumference * value / total
        slices.append(Slice(label=label, value=value, share=f"{value / total:.0%}",
                            dash=f"{length:.2f} {circumference - length:.2f}", offset=round(-start, 2),
                            colour=STATUS_COLOURS.get(key, PALETTE[len(slices) % len(PALETTE)])))
        start += length
    return tuple(slices)


@dataclass(frozen=True)
class Column:
    label: str
    value: int
    x: float
    y: float
    height: float


def columns(series: Sequence[tuple[str, int]], *, last: int = 12) -> tuple[Column, ...]:
    """Vertical bars of the last `last` months in a 360×150 box (labels below, values above)."""
    series = [(m, v) for m, v in series if m != "(none)"][-last:]
    peak = max((v for _, v in series), default=0) or 1
    width = min(360 / max(len(series), 1), 60)
    return tuple(Column(label=month[2:] if len(month) == 7 else month, value=value, x=index * width + width * 0.15,
                        y=120 - 100 * value / peak, height=max(1.0, 100 * value / peak))
                 for index, (month, value) in enumerate(series))


# --- reading the report flexibly -----------------------------------------------------------------------------
def _path(data: Mapping, *keys: str) -> Any:
    for key in keys:
        if not isinstance(data, Mapping) or key not in data:
            return None
        data = data[key]
    return data


def _first_mapping(data: Mapping, *paths: tuple[str, ...]) -> Mapping | None:
    for path in paths:
        found = _path(data, *path)
        if isinstance(found, Mapping) and found:
            return found
    return None


def _number(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return str(value)


def _count(value: Any, *names: str) -> float:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float):
        return value
    if isinstance(value, Mapping):
        for name in names:
            if isinstance(value.get(name), int | float):
                return value[name]
    return 0


@dataclass(frozen=True)
class RevenueRow:
    name: str
    opportunities: int
    won: int
    lost: int
    revenue: float
    width: float
    months: tuple[tuple[str, float], ...] = ()


def revenue_rows(source: Mapping | None) -> tuple[RevenueRow, ...]:
    """{name: {opportunities, won, lost, revenue[, months|by_month: {YYYY-MM: {revenue}|number}]}} → rows."""
    if not source:
        return ()
    rows = []
    for name, entry in source.items():
        if not isinstance(entry, Mapping):
            continue
        months = _first_mapping(entry, ("months",), ("by_month",)) or {}
        rows.append((str(name), int(_count(entry, "opportunities")), int(_count(entry, "won")),
                     int(_count(entry, "lost")), float(_count(entry, "revenue", "revenue_won", "amount_won")),
                     tuple(sorted((str(m), float(_count(v, "revenue", "revenue_won", "amount_won")))
                                  for m, v in months.items()))))
    peak = max((r[4] for r in rows), default=0) or 1
    rows.sort(key=lambda r: (-r[4], -r[1], r[0]))
    return tuple(RevenueRow(name, opp, won, lost, revenue, 100 * revenue / peak, months)
                 for name, opp, won, lost, revenue, months in rows)


@dataclass(frozen=True)
class Journey:
    chart: BarChart
    stuck_total: int
    transitions: tuple[tuple[str, int], ...] = ()
    has_stuck: bool = False


def journey(data: Mapping, text: Mapping) -> Journey:
    """Stage counts as a funnel (in journey order), with SLA-stuck counts and transitions when the report has them."""
    part = data.get("journey") if isinstance(data.get("journey"), Mapping) else {}
    stages = part.get("stages") if isinstance(part.get("stages"), Mapping) else {
        k: v for k, v in part.items() if isinstance(v, int | float | Mapping) and k not in _JOURNEY_EXTRAS}
    stuck_source = _first_mapping(part, ("past_sla",), ("stuck",), ("sla_stuck",), ("over_sla",)) or {}
    median = _first_mapping(part, ("median_days",), ("median_days_in_stage",)) or {}
    order = [s for s in JOURNEY_STAGES if s in stages] + [s for s in stages if s not in JOURNEY_STAGES]
    names = text["stages"]
    items, notes = [], {}
    stuck_total = 0
    for stage in order:
        value = stages[stage]
        count = _count(value, "customers", "count")
        stuck = int(_count(stuck_source.get(stage), "customers", "count")
                    or (_count(value, "past_sla", "stuck") if isinstance(value, Mapping) else 0))
        days = median.get(stage) if stage in median else (value.get("median_days") if isinstance(value, Mapping)
                                                           else None)
        label = names.get(stage, stage)
        pieces = []
        if stuck:
            pieces.append(f"{stuck:,} {text['stuck']}")
            stuck_total += stuck
        if isinstance(days, int | float):
            pieces.append(f"{_number(days)} {text['median_days']}")
        items.append((label, count))
        if pieces:
            notes[label] = " · ".join(pieces)
    transitions = _first_mapping(part, ("transitions",), ("transitions_30d",), ("transitions_last_30_days",)) or {}
    edges = []
    for edge, value in transitions.items():
        if isinstance(value, Mapping) and "from" in value:
            edge = f"{value.get('from')}→{value.get('to')}"
        edges.append((str(edge), int(_count(value, "count", "transitions"))))
    chart = bar_chart(items, top=len(items) or 1, notes=notes, zeros=any(value for _, value in items))
    return Journey(chart, stuck_total, tuple(sorted(edges, key=lambda e: -e[1])[:8]),
                   has_stuck=bool(stuck_source) or any(isinstance(v, Mapping) for v in stages.values()))


_JOURNEY_EXTRAS = {"stages", "past_sla", "stuck", "sla_stuck", "over_sla", "median_days", "median_days_in_stage",
                   "transitions", "transitions_30d", "transitions_last_30_days"}


# --- the page -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Filters:
    owner: str | None = None  # an owner key, or None = everybody
    owner_choice: str = "all"  # what the owner select shows: all | me | <key>
    kind: str | None = None
    status: str | None = None
    cursor: str | None = None
    size: int = 25
    lang: str = "ja"
    code: str | None = None  # the function key a `key`-mode caller came with, kept in links

    def query(self, **changes: Any) -> str:
        values = {"owner": self.owner_choice, "kind": self.kind, "status": self.status, "lang": self.lang,
                  "size": self.size if self.size != 25 else None, "code": self.code, **changes}
        return "?" + urlencode({k: v for k, v in values.items() if v})


@dataclass(frozen=True)
class PageContext:
    data: Mapping[str, Any]
    work: WorkPage
    filters: Filters
    tokens: Mapping[str, str] = field(default_factory=dict)
    principal: str | None = None
    today: date | None = None
    version: str | None = None  # the snapshot's version: the report part is drawn once per version


def render(context: PageContext) -> tuple[str, str]:
    """(HTML, CSP nonce) of the page."""
    data, filters = context.data, context.filters
    text = TEXT[filters.lang]
    opp = data.get("opportunities") or {}
    nonce = secrets.token_urlsafe(16)
    html = _env.get_template("dashboard.html").render(
        t=text, lang=filters.lang, nonce=nonce, filters=filters, report=_report(context),
        generated=str(data.get("generated_at", ""))[:16].replace("T", " "),
        owner_options=owner_options(data.get("owners") or [], filters.owner_choice),
        kinds=sorted((opp.get("by_kind") or {}).keys()),
        statuses=FILTER_STATUSES, open_statuses=OPEN_STATUSES, work=context.work, tokens=context.tokens,
        principal=context.principal, today=(context.today or date.today()).isoformat(), number=_number,
        labels={"statuses": text["statuses"], "saved": text["saved"], "failed": text["failed"]})
    return html, nonce


def owner_options(owners: Sequence[Mapping[str, Any]], choice: str) -> Markup:
    """The owner filter's options, one per rep with open work (hundreds of reps: plain joins cost a tenth of a
    template loop); every value escaped."""
    return Markup("".join(  # noqa: S704 - each part escaped here
        f'<option value="{escape(owner.get("key"))}"{" selected" if owner.get("key") == choice else ""}>'
        f'{escape(owner.get("name") or "—")} ({escape(owner.get("open"))})</option>' for owner in owners))


_REPORTS: dict[tuple, Markup] = {}  # (snapshot version, language, delivery window) → the report part's HTML
_REPORTS_KEPT = 8
_REPORTS_LOCK = threading.Lock()


def _report(context: PageContext) -> Markup:
    """The KPI cards, charts and tables: they depend on the snapshot and the language only, so with a snapshot
    version they are drawn once per version (a new snapshot has a new version: nothing stale is shown)."""
    data, lang = context.data, context.filters.lang
    key = (context.version, lang, (data.get("delivery") or {}).get("days")) if context.version else None
    if key is not None and (cached := _REPORTS.get(key)) is not None:
        return cached
    text = TEXT[lang]
    opp = data.get("opportunities") or {}
    delivery = data.get("delivery") or {}
    kinds, statuses = text["kinds"], text["statuses"]
    totals: dict[str, int] = {}
    for counts in (delivery.get("outcomes") or {}).values():
        for status, n in (counts or {}).items():
            totals[status] = totals.get(status, 0) + int(n or 0)
    rule_revenue = _first_mapping(data, ("opportunities", "rules"), ("revenue", "by_rule"), ("revenue", "rules"),
                                  ("rules",))
    campaign_revenue = _first_mapping(data, ("revenue", "by_campaign"), ("revenue", "campaigns"),
                                      ("opportunities", "campaigns"))
    by_status = opp.get("by_status") or {}
    # An autoescaped template's output: already safe HTML.
    html = Markup(_env.get_template("_dashboard_report.html").render(  # noqa: S704
        t=text, lang=lang, data=data, kpi=data.get("kpi") or {},
        kind_chart=bar_chart([(kinds.get(k, k), v) for k, v in (opp.get("by_kind") or {}).items()]),
        owner_chart=bar_chart([(mask(k), v) for k, v in (opp.get("by_owner") or {}).items()], top=10),
        status_slices=donut([(s, statuses.get(s, s), int(v)) for s, v in by_status.items()]),
        status_total=sum(int(v) for v in by_status.values()),
        trend=(trend := columns(sorted((opp.get("by_month") or {}).items()))),
        trend_width=min(360 / max(len(trend), 1), 60),
        journey=journey(data, text),
        segment_chart=bar_chart(list(((data.get("segments") or {}).get("by_label") or {}).items())),
        uplift=[uplift_row(rule, result) for rule, result in (data.get("uplift") or {}).items()],
        campaigns=revenue_rows(campaign_revenue), rules=revenue_rows(rule_revenue),
        delivery_tiles=[("sent", totals.get("sent", 0)), ("suppressed", totals.get("suppressed", 0)),
                        ("failed", totals.get("failed", 0) + totals.get("dead_lettered", 0)),
                        ("dead_letters", sum((delivery.get("dead_letters") or {}).values())),
                        ("approvals_pending", delivery.get("approvals_pending", 0))],
        delivery_days=delivery.get("days", 7), number=_number))
    if key is not None:
        with _REPORTS_LOCK:
            while len(_REPORTS) >= _REPORTS_KEPT:
                _REPORTS.pop(next(iter(_REPORTS)))
            _REPORTS[key] = html
    return html


CONFIGURE_TEXT = {
    "ja": {"title": "crmflow ダッシュボードをタブに追加",
           "intro": "チームの対応リストとグラフをこのチャネルに表示します。必要なら種類で絞り込んでください。",
           "kind": "種類", "all": "すべて", "loading": "読み込み中…",
           "ready": "「保存」を押すとタブが追加されます。",
           "no_teams": "このページは Teams のタブ設定から開いてください。",
           "no_sdk": "Teams JavaScript SDK が配置されていません (make install)。", "tab_name": "営業機会"},
    "en": {"title": "Add the crmflow dashboard as a tab", "intro": "Shows the team's work list and charts in this "
                                                                  "channel. Narrow it to one type if you like.",
           "kind": "Type", "all": "All", "loading": "Loading…", "ready": "Select Save to add the tab.",
           "no_teams": "Open this page from a Teams tab's settings.",
           "no_sdk": "The Teams JavaScript SDK is not deployed (make install).", "tab_name": "Opportunities"},
}


def render_configure(lang: str, kinds: Sequence[str]) -> tuple[str, str]:
    """(HTML, CSP nonce) of the configurable tab's settings page (Teams calls it when the tab is added)."""
    nonce = secrets.token_urlsafe(16)
    names = TEXT[lang]["kinds"]
    html = _env.get_template("dashboard_configure.html").render(
        t=CONFIGURE_TEXT[lang], lang=lang, nonce=nonce, kinds=[(k, names.get(k, k)) for k in kinds])
    return html, nonce


TAB_TEXT = {
    "ja": {"title": "営業機会", "loading": "読み込み中…", "sign_in": "サインイン",
           "needed": "ダッシュボードを表示するにはサインインしてください。", "failed": "サインインできませんでした。"},
    "en": {"title": "Opportunities", "loading": "Loading…", "sign_in": "Sign in",
           "needed": "Sign in to see the dashboard.", "failed": "Sign-in did not complete."},
}


def render_tab(lang: str, next_url: str, login_url: str, done: bool) -> tuple[str, str]:
    """(HTML, CSP nonce) of the Teams tab's entry page: opens the dashboard once App Service Authentication has a
    session, else offers Teams' sign-in pop-up (Entra ID's sign-in page cannot be shown inside the tab's frame)."""
    nonce = secrets.token_urlsafe(16)
    text = TAB_TEXT[lang]
    config = {"next": next_url, "login": login_url, "done": done,
              "text": {"needed": text["needed"], "failed": text["failed"]}}
    html = _env.get_template("dashboard_tab.html").render(t=text, lang=lang, nonce=nonce, config=config)
    return html, nonce


def uplift_row(rule: str, uplift: dict[str, Any]) -> tuple:
    """One row of the uplift table: group sizes, conversion and revenue per customer, the differences with CIs."""
    treated, control = uplift["treatment"], uplift["control"]
    rates = " vs ".join("–" if arm["conversion_rate"] is None else f"{arm['conversion_rate']:.1%}"
                        for arm in (treated, control))
    revenue = " vs ".join("–" if arm["revenue_per_customer"] is None else f"{arm['revenue_per_customer']:,.0f}"
                          for arm in (treated, control))
    if uplift["status"] != "ok":
        return rule, treated["customers"], control["customers"], rates, uplift["status"], revenue, uplift["status"]
    conversion, money = uplift["conversion_uplift"], uplift["revenue_uplift_per_customer"]
    return (rule, treated["customers"], control["customers"], rates,
            f"{conversion['difference']:+.1%} [{conversion['ci95'][0]:+.1%}, {conversion['ci95'][1]:+.1%}]",
            revenue, f"{money['difference']:+,.0f} [{money['ci95'][0]:+,.0f}, {money['ci95'][1]:+,.0f}]")

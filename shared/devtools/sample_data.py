"""Deterministic sample customers covering every DESIGN scenario, as the CSVs sales ops actually have.

`python -m shared.devtools.sample_data` rewrites `samples/customers.csv` (SharePoint-list style Japanese headers) and
`samples/purchases.csv` (Zoho-style English headers), pinned to `DEMO_NOW` so the README's dry-run examples stay
reproducible: birthdays, anniversaries and renewal windows land on it in each customer's own time zone.
`crmflow demo` writes the same customers pinned to today's sweep instant instead (`sweep_instant`), so the links it
prints are fresh on the day it runs. Benchmarks call `customer_rows(n)` for larger sets.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from shared.settings import APP_ROOT

DEMO_NOW = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 09:00 Tuesday in Tokyo: the instant samples/ is pinned to
SAMPLES = APP_ROOT / "samples"

TANAKA = {"name": "田中 一郎", "email": "ichiro.tanaka@contoso.com"}
LEE = {"name": "Sarah Lee", "email": "sarah.lee@contoso.com"}
OWNERS = [
    ({"name": "佐藤 花子", "email": "hanako.sato@contoso.com"}, TANAKA),
    ({"name": "鈴木 健", "email": "ken.suzuki@contoso.com"}, TANAKA),
    ({"name": "高橋 美咲", "email": "misaki.takahashi@contoso.com"}, TANAKA),
    ({"name": "John Miller", "email": "john.miller@contoso.com"}, LEE),
    ({"name": "Emma Brown", "email": "emma.brown@contoso.com"}, LEE),
]
JA_FAMILY = ["山田", "佐々木", "伊藤", "渡辺", "中村", "小林", "加藤", "吉田", "山本", "松本", "井上", "木村"]
JA_GIVEN = ["太郎", "花子", "健一", "美穂", "大輔", "由美", "翔太", "彩", "直樹", "恵子"]
JA_COMPANY = ["商事", "工業", "システムズ", "製作所", "物産", "ホールディングス"]
EN_FAMILY = ["Smith", "Johnson", "Williams", "Davis", "Garcia", "Wilson", "Taylor", "Clark", "Lewis", "Walker"]
EN_GIVEN = ["Olivia", "Liam", "Ava", "Noah", "Mia", "Ethan", "Sophia", "Lucas", "Amelia", "James"]
EN_COMPANY = ["Holdings", "Industries", "Labs", "Partners", "Trading", "Systems"]
ZONES = [("Asia/Tokyo", "ja-JP")] * 7 + [("America/New_York", "en-US"), ("Europe/London", "en-US"),
                                          ("Asia/Singapore", "en-US")]
FLAG_PRODUCTS = ("A", "B", "C", "D", "X", "Y")
SCENARIOS = ("cross_sell_a_b", "cross_sell_ac_d", "option_x_y", "basic_renewal_upsell", "heavy_usage",
             "high_spend", "birthday", "anniversary", "renewal_window", "campaign_pc_40s", "opted_out",
             "approval_required", "nothing_to_do")

CUSTOMER_HEADER = ["顧客ID", "顧客名", "氏名", "顧客メールアドレス", "担当営業", "担当者メールアドレス", "上長",
                   "上長メールアドレス", "言語", "タイムゾーン", "誕生日", "契約プラン", "契約開始日", "契約終了日",
                   "契約ステータス", "ステージ", *(f"購入製品{p}" for p in FLAG_PRODUCTS), "利用_reports",
                   "自動メール停止フラグ", "手動承認必要フラグ", "CRMリンク", "シナリオ"]
PURCHASE_HEADER = ["Customer ID", "Customer Email", "Product", "Purchase Date", "Amount", "Deal ID", "Stage", "Type"]


def _yes(flag: bool) -> str:
    return "はい" if flag else "いいえ"


def sweep_instant(now: datetime) -> datetime:
    """The daily sweep's instant on `now`'s UTC day (00:00 UTC = 09:00 in Tokyo, as SWEEP_SCHEDULE's default)."""
    return now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def _on_day(birthday: date, day: date) -> date:
    """`birthday` moved to `day`'s month and day (a 29 Feb birthday moves to a leap year)."""
    try:
        return birthday.replace(month=day.month, day=day.day)
    except ValueError:
        return date(birthday.year - birthday.year % 4, day.month, day.day)


def _shift_year(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 Feb
        return day.replace(year=day.year + years, day=28)


def customer_rows(count: int, now: datetime = DEMO_NOW, seed: int = 7) -> tuple[list[list[str]], list[list[str]]]:
    """(customer rows, purchase rows) for `count` customers; scenario i % len(SCENARIOS), some fields missing."""
    rng = random.Random(seed)
    customers: list[list[str]] = []
    purchases: list[list[str]] = []
    deal_number = 0
    for i in range(count):
        scenario = SCENARIOS[i % len(SCENARIOS)]
        zone, locale = ZONES[rng.randrange(len(ZONES))]
        local_today = now.astimezone(ZoneInfo(zone)).date()
        owner, manager = OWNERS[rng.randrange(len(OWNERS))] if locale == "ja-JP" else OWNERS[3 + rng.randrange(2)]
        customer_id = f"C-{i + 1:06d}"
        if locale == "ja-JP":
            family, given = rng.choice(JA_FAMILY), rng.choice(JA_GIVEN)
            company, contact = f"株式会社{rng.choice(JA_FAMILY)}{rng.choice(JA_COMPANY)}", f"{family} {given}"
        else:
            family, given = rng.choice(EN_FAMILY), rng.choice(EN_GIVEN)
            company, contact = f"{rng.choice(EN_FAMILY)} {rng.choice(EN_COMPANY)}", f"{given} {family}"
        email = f"contact{i + 1:06d}@example.{'co.jp' if locale == 'ja-JP' else 'com'}"
        products: set[str] = set()
        plan = rng.choice(["Basic", "Standard", "Premium"])
        contract_start = local_today - timedelta(days=rng.randrange(200, 900))
        contract_end = local_today + timedelta(days=rng.randrange(120, 700))
        birthday = date(rng.randrange(1955, 2000), rng.randrange(1, 13), rng.randrange(1, 29))
        reports = rng.randrange(0, 60)
        opt_out = approval = False
        bought: list[tuple[str, date, int]] = []
        if scenario == "cross_sell_a_b":
            products |= {"A"}
        elif scenario == "cross_sell_ac_d":
            products |= {"A", "B", "C"}
        elif scenario == "option_x_y":
            products |= {"X"}
        elif scenario == "basic_renewal_upsell":
            plan, contract_end = "Basic", local_today + timedelta(days=rng.randrange(20, 85))
        elif scenario == "heavy_usage":
            plan, reports = "Standard", rng.randrange(150, 400)
        elif scenario == "high_spend":
            bought += [("C", local_today - timedelta(days=rng.randrange(10, 300)), rng.randrange(800, 1500) * 1000)
                       for _ in range(2)]
        elif scenario == "birthday":
            birthday = _on_day(birthday, local_today)
        elif scenario == "anniversary":
            bought.append(("A", _shift_year(local_today, -1), rng.randrange(100, 300) * 1000))
            products |= {"B"}
        elif scenario == "renewal_window":
            contract_end = local_today + timedelta(days=(90, 30, 7, 85)[(i // len(SCENARIOS)) % 4])
        elif scenario == "campaign_pc_40s":
            birthday = date(local_today.year - rng.randrange(40, 50), rng.randrange(1, 13), rng.randrange(1, 29))
            bought.append(("PC", local_today - timedelta(days=rng.randrange(30, 600)), rng.randrange(150, 300) * 1000))
        elif scenario == "opted_out":
            opt_out, products = True, {"A"}
            birthday = _on_day(birthday, local_today)
        elif scenario == "approval_required":
            approval, contract_end = True, local_today + timedelta(days=30)
        else:
            products |= {"A", "B", "C", "D"}
        # Everyone has some purchase history of what they own.
        for product in sorted(products):
            since = timedelta(days=rng.randrange(400, 900))
            bought.append((product, local_today - since, rng.randrange(50, 400) * 1000))
        missing = i % 7 == 3  # optional fields left empty: the model must treat them as null
        if i % 29 == 5:
            email = "not-an-email"  # suppressed at planning: invalid recipient
        row = [customer_id, company, contact, "" if missing and i % 2 else email, owner["name"],
               "" if missing and scenario == "nothing_to_do" else owner["email"], manager["name"], manager["email"],
               locale, "" if missing and zone == "Asia/Tokyo" else zone,
               "" if missing and scenario not in ("birthday", "opted_out", "campaign_pc_40s") else birthday.isoformat(),
               plan, contract_start.isoformat(), contract_end.isoformat(), "active",
               rng.choice(["onboarding", "utilization", "renewal"]),
               *(_yes(p in products) for p in FLAG_PRODUCTS), str(reports),
               _yes(opt_out), _yes(approval), f"https://crm.example/records/{customer_id}", scenario]
        customers.append(row)
        for product, day, amount in bought:
            deal_number += 1
            by_email = rng.random() < 0.3 and email != "not-an-email" and row[3]
            purchases.append(["" if by_email else customer_id, email if by_email else "", product,
                              day.strftime("%Y/%m/%d"), str(amount), f"D-{deal_number:06d}", "won",
                              "subscription_new" if product in ("A", "X") else "one_time"])
    return customers, purchases


def write_samples(count: int = 260, directory: Path = SAMPLES, now: datetime = DEMO_NOW) -> tuple[Path, Path]:
    """samples/customers.csv and purchases.csv (or the same files under `directory`, pinned to `now`)."""
    customers, purchases = customer_rows(count, now)
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "customers.csv", directory / "purchases.csv"
    for path, header, rows in ((paths[0], CUSTOMER_HEADER, customers), (paths[1], PURCHASE_HEADER, purchases)):
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
    return paths


if __name__ == "__main__":
    for written in write_samples():
        print(f"wrote {written}")

"""`crmflow dry-run` renders only the subjects it prints; `--full` renders everything, as a sweep does. Both must
print exactly the same, for the shipped catalog and for subjects that read the firing's own texts."""

import json
from pathlib import Path

import pytest

from shared.devtools.cli import main
from shared.devtools.commands._local import offline_settings
from shared.domain.model import Customer
from shared.rendering.engine import Renderer, one_line
from shared.rendering.subjects import SubjectRenderer
from shared.settings import APP_ROOT

FIXTURES = Path(__file__).parent.parent / "fixtures"
SUBJECTS = FIXTURES / "subjects"
NOW = "2026-11-24T00:00:00Z"
SAMPLES = ["--input", str(APP_ROOT / "samples" / "customers.csv"), "--purchases",
           str(APP_ROOT / "samples" / "purchases.csv")]
NAMES = ["A*B_C", "  ", "", None, "x\ny", "\\", "back\\*slash", "[link](https://evil.example)", "<b>#1 | 2</b>",
         "株式会社サンプル", "  padded  "]


@pytest.fixture(autouse=True)
def no_local_settings(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("shared.devtools.commands._local.LOCAL_SETTINGS", tmp_path / "absent.json")


def dry_run(capsys, *args: str) -> tuple[str, str]:
    code = main(["dry-run", *args])
    out, err = capsys.readouterr()
    assert code == 0, err
    return out, err


@pytest.mark.parametrize("key", [None, "k" * 32])
@pytest.mark.parametrize("form", ["json", "table"])
def test_the_catalog_prints_the_same_with_and_without_full(monkeypatch, capsys, key, form):
    if key:
        monkeypatch.setenv("UNSUBSCRIBE_SIGNING_KEY", key)
    else:
        monkeypatch.delenv("UNSUBSCRIBE_SIGNING_KEY", raising=False)
    args = [*SAMPLES, "--now", NOW, "--format", form]
    shown, full = dry_run(capsys, *args), dry_run(capsys, *args, "--full")
    assert shown == full
    if form == "json":
        firings = json.loads(shown[0])
        assert len(firings) > 50 and {a["channel"] for f in firings for a in f["actions"]} >= \
            {"teams", "email", "crm_task"}
        assert all(a["subject"] for f in firings for a in f["actions"] if a["status"] == "planned")


def test_journey_transitions_print_the_same(capsys):
    customers = SUBJECTS / "journey_customers.json"
    args = ["--input", str(customers), "--today", "2026-11-24", "--format", "json"]
    shown, full = dry_run(capsys, *args), dry_run(capsys, *args, "--full")
    assert shown == full and "(2 journey transitions)" in shown[1]
    assert [a["channel"] for f in json.loads(shown[0]) for a in f["actions"]].count("journey") == 2


def test_subjects_that_read_the_firings_texts_print_the_same(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("UNSUBSCRIBE_SIGNING_KEY", "k" * 32)
    customers = tmp_path / "customers.json"
    records = [{"id": f"C-{i}", "name": name, "email": f"c{i}@example.com", "products": ["A", "B"],
                "owner": {"name": "o", "email": "rep@contoso.com"}, "manager": {"email": "m@contoso.com"}}
               for i, name in enumerate(NAMES)]
    records.append(json.loads((FIXTURES / "rules" / "hostile.json").read_text(encoding="utf-8")))
    customers.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    args = ["--input", str(customers), "--rules", str(SUBJECTS / "rules"), "--templates",
            str(SUBJECTS / "templates"), "--journeys", str(tmp_path / "no-journeys"), "--now", NOW, "--format", "json"]
    shown, full = dry_run(capsys, *args), dry_run(capsys, *args, "--full")
    assert shown == full
    subjects = {a["subject"] for f in json.loads(shown[0]) for a in f["actions"]}
    assert "理由 A*B_C / 提案" in subjects and "A constant summary" in subjects and "reads-nothing" in subjects
    assert any("/api/opportunities/" in s for s in subjects)  # the card summary that shows its outcome link
    per_action = [a["subject"] for f in json.loads(shown[0]) if f["rule"] == "per-action-context"
                  for a in f["actions"]]
    assert per_action[0].startswith("一 normal 2026-11-27 no mail no link")
    assert per_action[2].startswith("送信後 high ") and "no mail" not in per_action[2]
    assert per_action[3].startswith("四 normal 2026-12-03 no mail no link")  # nothing left by the mail or card


def test_a_card_summary_is_the_full_cards_fallback_text():
    renderer = Renderer(SUBJECTS / "templates")
    subjects = SubjectRenderer(renderer)
    settings = offline_settings()
    from shared.rendering.engine import template_context

    for name in NAMES:
        customer = Customer(id="C-1", name=name, contact_name=name)
        context = template_context(customer=customer, rule_id="r", kind="alert", locale="ja-JP", today=None,
                                   reason="理由", recommendation=None, unsubscribe_url="https://x.example/u",
                                   outcome_url="https://x.example/o?t=1")
        for card in sorted(renderer.names["card"]):
            full = renderer.card(card, "ja-JP", context).get("fallbackText")
            assert one_line(subjects.card_summary(card, "ja-JP", context) or "r") == one_line(full or "r"), card
        assert subjects.email_subject("mail", "ja-JP", context) == renderer.email("mail", "ja-JP", context).subject
    assert settings  # offline settings load without a local.settings.json


def test_what_a_summary_reads_is_found():
    renderer = Renderer(SUBJECTS / "templates")
    subjects = SubjectRenderer(renderer)
    from shared.rules.loader import _sample_context

    sample = _sample_context(renderer)
    assert {"outcome_url", "reason"} <= subjects.card_reads("outcome", sample)
    assert "reason" not in subjects.card_reads("plain", sample) and subjects.card_reads("constant", sample) == set()
    assert subjects.card_reads("blocks", sample) is None  # rendered as the whole card
    assert "reason" in subjects.email_reads("mail", sample)


def test_full_is_in_the_readme():
    assert "--full" in (APP_ROOT / "README.md").read_text(encoding="utf-8")


def test_the_json_output_is_what_json_dumps_writes():
    import io
    from datetime import date

    from shared.devtools.commands.dry_run import write_json
    from shared.domain.vocabulary import ActionStatus
    from shared.rules.model import Firing, PlannedAction

    texts = ["a\u2028b", "\x00\x01\x1f\x7f", 'q"uo\\te', "😀 日本", "\t\n\r\b\f", "</script>", "\u0085", "\ufeff"]
    firings = [Firing(rule_id=f"r{i}", kind="alert", customer_id=text, owner_email=None, dedupe_key=f"k{i}",
                      recommendation=None, local_date=date(2026, 11, 24),
                      actions=(PlannedAction(dedupe_key="a", channel="teams", to=text, status=ActionStatus.PLANNED,
                                             reason=None, subject=text),))
               for i, text in enumerate(texts)]
    firings *= 500  # a few hundred KB: written in several chunks
    expected = "[\n" + ",\n".join(json.dumps(f.to_dry_run_dict(), ensure_ascii=False, separators=(",", ":"))
                                  for f in firings) + "\n]\n"
    out = io.StringIO()
    write_json(iter(firings), out)
    assert out.getvalue() == expected

    class Trickle(io.RawIOBase):
        """A byte stream that takes at most 1,000 bytes per write, as an unbuffered pipe may."""

        def __init__(self):
            self.data = bytearray()

        def writable(self):
            return True

        def write(self, data):
            taken = bytes(data[:1000])
            self.data += taken
            return len(taken)

    for raw in (io.BytesIO(), Trickle()):  # UTF-8 text streams: the bytes go straight to the byte stream
        text = io.TextIOWrapper(raw, encoding="utf-8", write_through=True)
        text.write("")
        write_json(iter(firings), text)
        text.flush()
        written = raw.getvalue() if isinstance(raw, io.BytesIO) else bytes(raw.data)
        assert written.decode("utf-8") == expected

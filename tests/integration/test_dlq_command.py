"""`crmflow dlq list|replay` on the local broker: ids and reasons, never bodies; replay by id or all."""

from __future__ import annotations

import argparse

import pytest

from shared.broker.local import LocalBroker
from shared.broker.port import OutgoingMessage
from shared.devtools.commands import dlq
from shared.domain import names


@pytest.fixture
def broker(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("BROKER", "local")
    monkeypatch.delenv("TABLES_CONNECTION_STRING", raising=False)
    made = LocalBroker(tmp_path / "broker.sqlite3")
    made.publish(names.EMAIL, [OutgoingMessage("taro@example.co.jp 様", "mail-1"),
                               OutgoingMessage("hanako@example.co.jp 様", "mail-2")])
    made.publish(names.TEAMS, [OutgoingMessage("card", "card-1")])
    for queue in (names.EMAIL, names.TEAMS):
        for m in made.receive(queue, max_messages=10):
            made.dead_letter(m, "InvalidRecipient", f"{m.message_id} bounced")
    yield made
    made.close()


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    dlq.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["dlq", *argv])
    return args.func(args)


def test_list_shows_ids_and_reasons_but_no_bodies(broker, capsys):
    assert cli("list") == 0
    out = capsys.readouterr().out
    for expected in ("mail-1", "mail-2", "card-1", "InvalidRecipient", "mail-1 bounced", "email", "teams"):
        assert expected in out
    assert "example.co.jp" not in out and "様" not in out
    assert "3 dead letter(s)" in out


def test_list_one_queue(broker, capsys):
    cli("list", "--queue", "teams")
    out = capsys.readouterr().out
    assert "card-1" in out and "mail-1" not in out


def test_replay_selected_ids_then_the_rest(broker, capsys):
    assert cli("replay", "--id", "mail-2") == 0
    assert "replayed 1 message(s)" in capsys.readouterr().out
    assert [m.message_id for m in broker.peek_dead_letters(names.EMAIL)] == ["mail-1"]
    [back] = broker.receive(names.EMAIL)
    assert back.message_id == "mail-2~replay1" and back.delivery_count == 1
    broker.complete(back)
    cli("replay")
    assert "replayed 2 message(s)" in capsys.readouterr().out
    assert broker.peek_dead_letters(names.EMAIL) == broker.peek_dead_letters(names.TEAMS) == []


def test_empty(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LOCAL_DIR", str(tmp_path))
    cli("list")
    assert "no dead letters" in capsys.readouterr().out

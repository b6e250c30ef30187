"""The chaos run's workers get settings whose catalog loads: a rule, template or journey problem would fail every
sweep shard at load, and the run would plan nothing (as it did when the shipped journey joined the catalog)."""

from __future__ import annotations

from bench.chaos import RULE_ID, ChaosConfig, run_env
from shared.container import Container
from shared.settings import Settings
from shared.storage.memory import MemoryStorage


def test_the_workers_settings_load_the_chaos_rule_and_no_journey(tmp_path):
    env = run_env(tmp_path, ChaosConfig(), tables="UseDevelopmentStorage=true", authority="https://127.0.0.1:1",
                  graph="https://127.0.0.1:2", bot="https://127.0.0.1:3")
    container = Container(Settings.from_env(env), storage=MemoryStorage())
    assert [rule.id for rule in container.ruleset.rules] == [RULE_ID]
    assert [action.channel for action in container.ruleset.rules[0].actions] == ["teams", "email", "crm_task"]
    assert container.journey is None
    assert container.settings.customer_shards == ChaosConfig().shards

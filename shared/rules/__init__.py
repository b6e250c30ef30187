"""The rules engine: YAML rules compiled once, evaluated per customer, planned into rendered actions.

    ruleset = load_ruleset(settings.rules_dir, settings.templates_dir)   # InvalidInput lists every problem
    evaluator = Evaluator(ruleset, settings)
    for firing in evaluator.evaluate(customer, now=now, trigger="sweep"):
        ...  # firing.dedupe_key is claimed once; firing.to_messages(now) gives the queue messages
"""

from shared.rules.evaluator import Evaluator
from shared.rules.loader import RuleProblems, load_ruleset
from shared.rules.model import Firing, PlannedAction, Rule, RuleSet

__all__ = ["Evaluator", "Firing", "PlannedAction", "Rule", "RuleProblems", "RuleSet", "load_ruleset"]

"""crmflow validate [--rules DIR] [--templates DIR] [--mappings DIR] [--journeys DIR] [--segments FILE]: check every
rule file, template, field mapping (CSV import and each CRM's webhook map), the journey and the RFM segments file;
list rules and transitions."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.contact import PolicyProblems, load_contact_policy
from shared.devtools.commands._local import offline_settings
from shared.domain.errors import CrmflowError
from shared.domain.vocabulary import TemplateKind
from shared.journeys.loader import load_journey
from shared.rules import RuleProblems, load_ruleset


def register(subparsers) -> None:
    parser = subparsers.add_parser("validate", help="check the rule files and templates", description=__doc__)
    parser.add_argument("--rules", type=Path, help="rules directory (default: RULES_DIR, rules/)")
    parser.add_argument("--templates", type=Path, help="templates directory (default: TEMPLATES_DIR, templates/)")
    parser.add_argument("--mappings", type=Path, help="mappings directory (default: MAPPINGS_DIR, mappings/)")
    parser.add_argument("--journeys", type=Path, help="journeys directory (default: JOURNEYS_DIR, journeys/)")
    parser.add_argument("--policy", type=Path,
                        help="contact policy file (default: CONTACT_POLICY_FILE, contact_policy.yaml)")
    parser.add_argument("--segments", type=Path, help="RFM segments file (default: SEGMENTS_FILE, segments.yaml)")
    parser.set_defaults(func=run)


def mapping_problems(mappings_dir: Path) -> list[str]:
    """Every mapping file that does not load, with the loader's reason (file, field)."""
    from shared.crm.mapping import load_mapping
    from shared.customers.reader import CsvMapping
    from shared.domain.events import SOURCES

    problems = []
    try:
        CsvMapping.load(mappings_dir / "csv_default.yaml")
    except CrmflowError as exc:
        problems.append(exc.message)
    for vendor in (source for source in SOURCES if source != "generic"):  # generic sends canonical JSON
        try:
            load_mapping(mappings_dir, vendor)
        except CrmflowError as exc:
            problems.append(exc.message)
    return problems


def run(args: argparse.Namespace) -> int:
    settings = offline_settings()
    rules_dir = args.rules or settings.rules_dir
    templates_dir = args.templates or settings.templates_dir
    problems = mapping_problems(args.mappings or settings.mappings_dir)
    try:
        policy = load_contact_policy(args.policy or settings.contact_policy_file)
    except PolicyProblems as exc:
        problems.append(exc.message)
        policy = None
    for problem in problems:
        print(problem, file=sys.stderr)
    try:
        ruleset = load_ruleset(rules_dir, templates_dir, default_locale=settings.default_locale,
                               segments=args.segments or settings.segments_file)
        journey = load_journey(args.journeys or settings.journeys_dir, ruleset.renderer, ruleset.segments)
    except RuleProblems as exc:
        print(exc.message, file=sys.stderr)
        return 1
    if problems:
        return 1
    for rule in ruleset.rules:
        period = f"windows {list(rule.windows.days_before)}" if rule.windows else \
            f"once per {rule.once_per.source}" if rule.once_per else f"once {rule.once}"
        channels = ", ".join(f"{a.channel}:{a.route}" + (f" ({a.template})" if a.template else "")
                             for a in rule.actions)
        print(f"  {rule.id:<32} {rule.kind:<11} on {'+'.join(sorted(rule.on)):<13} {period:<28} {channels}")
    if journey is not None:
        print(f"  journey {journey.id}: {' → '.join(journey.state_ids)}")
        for transition in journey.transitions:
            trigger = transition.trigger
            if trigger.kind == "date":
                detail = f"{trigger.cause_field}{f' {trigger.offset_days:+d} days' if trigger.offset_days else ''}"
            else:
                detail = ", ".join(sorted(trigger.stages or trigger.types))
                if trigger.stages and trigger.types:
                    detail += f" (type {', '.join(sorted(trigger.types))})"
            channels = ", ".join(f"{a.channel}:{a.route}" for a in transition.rule.actions)
            print(f"    {transition.id:<20} {transition.source or '(start)':>14} → {transition.target:<14} "
                  f"{trigger.kind} {detail}; {channels}")
    names = ruleset.renderer.names
    print(f"OK: {len(ruleset.rules)} rules in {len(ruleset.files)} files; "
          f"{len(names[TemplateKind.CARD])} card and {len(names[TemplateKind.EMAIL])} email templates in "
          f"{', '.join(ruleset.renderer.locales)}; CSV and CRM mappings load; "
          f"{len(ruleset.segments.labels)} RFM labels ({', '.join(ruleset.segments.labels)}); contact policy: "
          f"{len(policy.caps) if policy else 0} caps" + (f" ({policy.file})" if policy and policy.file else ""))
    return 0

"""Structural checks of the Bicep templates. Each returns a list of problems (empty = fine) so the tests can run them
on the real templates and on deliberately broken snippets (proving each check can fail)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.unit.bicep_outline import (
    BUILTIN_FUNCTIONS,
    NAMESPACES,
    BicepFile,
    Expr,
    Obj,
    calls,
    output_references,
    references,
)

ROLE_ASSIGNMENT = "Microsoft.Authorization/roleAssignments"
KEY_VAULT_REFERENCE = re.compile(r"^@Microsoft\.KeyVault\(VaultName=\$\{(\w+)\};SecretName=([a-z0-9-]+)\)$")
SECRET_LOOKING = re.compile(r"(secret|password|token|signingkey|apikey|webhooks?)$", re.IGNORECASE)


def module_problems(tree: dict[Path, BicepFile]) -> list[str]:
    """Module paths exist; params passed are declared; required params are passed; `m.outputs.x` exists."""
    problems = []
    for path, f in tree.items():
        for module in f.modules.values():
            target = f.module_file(module)
            where = f"{path.name}:{module.line} module {module.symbol}"
            if not target.exists():
                problems.append(f"{where}: {module.path} does not exist")
                continue
            child = tree.get(target)
            if child is None:
                continue
            passed = set(module.params)
            for name in sorted(passed - set(child.params)):
                problems.append(f"{where}: passes {name}, not a param of {module.path}")
            for name in sorted(p.name for p in child.params.values() if p.required and p.name not in passed):
                problems.append(f"{where}: required param {name} of {module.path} is not passed")
        for expr in f.expressions():
            for symbol, output, line in output_references(expr):
                module = f.modules.get(symbol)
                if module is None:
                    problems.append(f"{path.name}:{line}: {symbol}.outputs.{output}: {symbol} is not a module")
                    continue
                child = tree.get(f.module_file(module))
                if child is not None and output not in child.outputs:
                    problems.append(f"{path.name}:{line}: {module.path} has no output {output}")
    return problems


def identifier_problems(f: BicepFile) -> list[str]:
    """Every identifier used is declared in the file; every function called is a Bicep built-in."""
    problems = []
    declared = f.declared | NAMESPACES
    for expr in f.expressions():
        for token in references(expr):
            if token.text not in declared:
                problems.append(f"{f.path.name}:{token.line}: {token.text} is not declared")
        for token in calls(expr):
            if token.text not in BUILTIN_FUNCTIONS:
                problems.append(f"{f.path.name}:{token.line}: {token.text}() is not a Bicep function")
    return problems


def unused_params(f: BicepFile) -> list[str]:
    used = {token.text for expr in f.expressions() for token in references(expr)}
    return [f"{f.path.name}:{p.line}: param {p.name} is never used" for p in f.params.values() if p.name not in used]


def secret_param_problems(f: BicepFile) -> list[str]:
    """@secure() params have no default; secret-looking params are @secure(); no output exposes a secure param."""
    problems = []
    for p in f.params.values():
        if p.secure and p.default is not None:
            problems.append(f"{f.path.name}:{p.line}: secure param {p.name} has a default value")
        if SECRET_LOOKING.search(p.name) and not p.secure:
            problems.append(f"{f.path.name}:{p.line}: param {p.name} looks secret but is not @secure()")
    secure = {p.name for p in f.params.values() if p.secure}
    for o in f.outputs.values():
        for expr in _expressions_of(o.value):
            leaked = {t.text for t in references(expr)} & secure
            if leaked:
                problems.append(f"{f.path.name}:{o.line}: output {o.name} exposes {', '.join(sorted(leaked))}")
    return problems


def _expressions_of(node):
    holder = BicepFile(Path("x"))
    holder.vars["_"] = node
    return holder.expressions()


def role_id(f: BicepFile, expr: Expr) -> str | None:
    """Resolve a role-definition GUID written as a literal, a var, or `<var>.<key>` of an object var."""
    toks = [t for t in expr.tokens if t.kind != "newline"]
    if expr.is_literal():
        return expr.literal
    if len(toks) == 1 and isinstance(f.vars.get(toks[0].text), Expr):
        return f.vars[toks[0].text].literal
    if len(toks) == 3 and toks[1].text == "." and isinstance(f.vars.get(toks[0].text), Obj):
        return f.vars[toks[0].text].literal(toks[2].text)
    return None


def role_assignments(f: BicepFile) -> tuple[list[dict], list[str]]:
    """Role assignments of a file as dicts (role, scope_type, principal, conditional) and the problems found.

    Each must be named `guid(<scope>.id, <principal>, <role>)`, with `scope: <scope>`, the same principal in
    properties.principalId and the same role in properties.roleDefinitionId."""
    found, problems = [], []
    for r in f.resources_of_type(ROLE_ASSIGNMENT):
        where = f"{f.path.name}:{r.line} {r.symbol}"
        body = r.obj
        name = body.get("name")
        match = re.fullmatch(r"guid \( (\w+) \. id , (\w+) , (.+) \)", name.text) if isinstance(name, Expr) else None
        if match is None:
            problems.append(f"{where}: name is not guid(<scope>.id, <principal>, <role>)")
            continue
        scope_symbol, principal, _ = match.groups()
        scope = body.get("scope")
        if not isinstance(scope, Expr) or scope.reference != scope_symbol:
            problems.append(f"{where}: scope is not {scope_symbol}, the resource its name is derived from")
        principal_expr = body.get("properties", "principalId")
        if not isinstance(principal_expr, Expr) or principal_expr.reference != principal:
            problems.append(f"{where}: principalId is not {principal}, the principal its name is derived from")
        # guid ( <scope> . id , <principal> , <role...> )
        role_in_name = role_id(f, Expr(name.tokens[8:-1]))
        definition = body.get("properties", "roleDefinitionId")
        definition_pattern = r"subscriptionResourceId \( 'Microsoft.Authorization/roleDefinitions' , (.+) \)"
        definition_match = (re.fullmatch(definition_pattern, definition.text)
                            if isinstance(definition, Expr) else None)
        if definition_match is None:
            problems.append(f"{where}: roleDefinitionId is not subscriptionResourceId(roleDefinitions, <role>)")
            continue
        # subscriptionResourceId ( '...roleDefinitions' , <role...> )
        role_in_definition = role_id(f, Expr(definition.tokens[4:-1]))
        if role_in_name is None or role_in_name != role_in_definition:
            problems.append(
                f"{where}: role in name ({role_in_name}) differs from roleDefinitionId ({role_in_definition})")
        target = f.resources.get(scope_symbol)
        principal_type = body.get("properties", "principalType")
        found.append({
            "symbol": r.symbol,
            "role": role_in_definition,
            "scope_type": target.type if target else None,
            "principal": principal,
            "principal_type": principal_type.text if isinstance(principal_type, Expr) else None,
            "conditional": r.conditional,
        })
    return found, problems


def key_vault_reference(value) -> tuple[str, str] | None:
    """(vault expression, secret name) when an app-setting value is a Key Vault reference, else None."""
    token = value.string if isinstance(value, Expr) else None
    if token is None:
        return None
    rendered = "".join(p if isinstance(p, str) else "${" + " ".join(t.text for t in p) + "}" for p in token.parts)
    match = KEY_VAULT_REFERENCE.match(rendered)
    return (match[1], match[2]) if match else None


def secret_name(setting: str) -> str:
    """Key Vault secret name of an app setting: lower case, dashes (vault names allow no underscores)."""
    return setting.lower().replace("_", "-")


def settings_problems(app_settings: Obj, specs: list[dict], allowed_unset: dict[str, str],
                      platform_settings: set[str], secret_values: Obj | None) -> list[str]:
    """Every setting the code reads is provisioned (or explicitly allowed unset); secrets are Key Vault references
    to secrets the template creates; nothing unknown is set."""
    problems = []
    provisioned = app_settings.entries
    names = {s["name"] for s in specs}
    created = set(secret_values.entries) if secret_values else set()
    for name in sorted(set(allowed_unset) - names):
        problems.append(f"{name}: allowed unset in Azure but not a setting of shared/settings.py (stale entry)")
    for spec in specs:
        name = spec["name"]
        if name in allowed_unset:
            if name in provisioned:
                problems.append(f"{name}: allowed unset in Azure, yet the Bicep sets it")
            continue
        if name not in provisioned:
            problems.append(f"{name}: read by the code but not provisioned by the Bicep")
            continue
        reference = key_vault_reference(provisioned[name])
        if spec["secret"]:
            if reference is None:
                problems.append(f"{name}: secret, but its app setting is not a Key Vault reference")
            elif reference[1] != secret_name(name):
                problems.append(f"{name}: refers to secret {reference[1]}, expected {secret_name(name)}")
            elif reference[1] not in created:
                problems.append(f"{name}: secret {reference[1]} is not created in the vault")
    for name in sorted(set(provisioned) - names - platform_settings):
        problems.append(f"{name}: set by the Bicep but neither read by the code nor a known platform setting")
    used_secrets = {ref[1] for v in provisioned.values() if (ref := key_vault_reference(v))}
    for name in sorted(created - used_secrets):
        problems.append(f"secret {name}: created in the vault but no app setting refers to it")
    return problems

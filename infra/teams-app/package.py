"""Build the Teams app package of the crmflow rep-notification bot (docs/deploy.md, "Azure Bot and Teams app").

    python infra/teams-app/package.py --bot-app-id <BOT_APP_ID> \
        --app-hostname func-crmflow-xxxx.azurewebsites.net \
        --publisher-name "Contoso" --publisher-url https://www.contoso.com \
        [--privacy-url URL] [--terms-url URL] [--teams-app-id GUID] [--out crmflow-teams.zip]

It fills the `${{NAME}}` placeholders of manifest.json, validates the result (required fields, lengths, icon sizes,
bot and webApplicationInfo ids) and zips manifest.json, ja-jp.json and the two icons, ready for Teams admin center
upload. The Teams app id defaults to a UUID derived from the bot id, so re-packaging updates the same app.
"""

from __future__ import annotations

import argparse
import json
import re
import struct
import sys
import uuid
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLACEHOLDER = re.compile(r"\$\{\{([A-Z0-9_]+)\}\}")
GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
LIMITS = {("name", "short"): 30, ("name", "full"): 100, ("description", "short"): 80,
          ("description", "full"): 4000, ("developer", "name"): 32}
ICON_SIZES = {"color": 192, "outline": 32}


def fill(template: object, values: dict[str, str]) -> object:
    """The parsed manifest with `${{NAME}}` placeholders in its string values replaced; raise KeyError naming any
    without a value. Values are put into the parsed JSON, never pasted into its text, so quotes or backslashes in a
    publisher name stay text instead of breaking the JSON."""
    missing = sorted(set(_placeholders(template)) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return _substitute(template, values)


def _placeholders(node: object) -> list[str]:
    if isinstance(node, str):
        return PLACEHOLDER.findall(node)
    if isinstance(node, dict):
        return [name for key, value in node.items() for part in (key, value) for name in _placeholders(part)]
    if isinstance(node, list):
        return [name for item in node for name in _placeholders(item)]
    return []


def _substitute(node: object, values: dict[str, str]) -> object:
    if isinstance(node, str):
        return PLACEHOLDER.sub(lambda m: values[m[1]], node)
    if isinstance(node, dict):
        return {_substitute(key, values): _substitute(value, values) for key, value in node.items()}
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    return node


def png_info(data: bytes) -> tuple[int, int, int]:
    """(width, height, colour type) of a PNG, from its IHDR chunk."""
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height, _depth, colour_type = struct.unpack(">IIBB", data[16:26])
    return width, height, colour_type


def _guid_or_placeholder(value: object, resolved: bool) -> bool:
    text = str(value)
    return bool(GUID.match(text)) or (not resolved and bool(PLACEHOLDER.fullmatch(text)))


def validate_manifest(manifest: dict, base_dir: Path = HERE, *, resolved: bool = True) -> list[str]:
    """Problems with a Teams manifest (empty when valid). `resolved=False` accepts `${{NAME}}` placeholders."""
    problems = []
    for key in ("manifestVersion", "version", "id", "developer", "name", "description", "icons", "accentColor"):
        if key not in manifest:
            problems.append(f"missing {key}")
    if problems:
        return problems
    if not re.fullmatch(r"\d+\.\d+\.\d+", manifest["version"]):
        problems.append("version must be MAJOR.MINOR.PATCH")
    if not _guid_or_placeholder(manifest["id"], resolved):
        problems.append("id must be a GUID")
    for (section, key), limit in LIMITS.items():
        value = manifest.get(section, {}).get(key)
        if not value and (section, key) != ("name", "full"):  # name.full is the only optional one
            problems.append(f"missing {section}.{key}")
        elif value and len(value) > limit:
            problems.append(f"{section}.{key} is longer than {limit} characters")
    for key in ("websiteUrl", "privacyUrl", "termsOfUseUrl"):
        url = manifest["developer"].get(key, "")
        if not (url.startswith("https://") or (not resolved and PLACEHOLDER.fullmatch(url))):
            problems.append(f"developer.{key} must be an https URL")
    if not re.fullmatch(r"#[0-9A-Fa-f]{6}", manifest["accentColor"]):
        problems.append("accentColor must be #RRGGBB")
    for kind, size in ICON_SIZES.items():
        path = base_dir / manifest["icons"].get(kind, "")
        if not path.is_file():
            problems.append(f"icons.{kind}: {path.name} not found")
            continue
        width, height, colour_type = png_info(path.read_bytes())
        if (width, height) != (size, size):
            problems.append(f"icons.{kind} must be {size}x{size}, is {width}x{height}")
        if kind == "outline" and colour_type != 6:
            problems.append("icons.outline must be a PNG with transparency (white on transparent)")
    bots = manifest.get("bots", [])
    if len(bots) != 1:
        problems.append("exactly one bot expected")
    else:
        bot = bots[0]
        if not _guid_or_placeholder(bot.get("botId"), resolved):
            problems.append("bots[0].botId must be a GUID (the Azure Bot's Microsoft App ID)")
        if "personal" not in bot.get("scopes", []):
            problems.append("bots[0].scopes must include personal (1:1 messages to reps)")
        if bot.get("isNotificationOnly") is not True:
            problems.append("bots[0].isNotificationOnly must be true (crmflow does not answer messages)")
    info = manifest.get("webApplicationInfo")
    if not info:
        problems.append("missing webApplicationInfo")
    else:
        if bots and info.get("id") != bots[0].get("botId"):
            problems.append("webApplicationInfo.id must be the bot's app id")
        if not str(info.get("resource", "")).startswith("api://"):
            problems.append("webApplicationInfo.resource must be an api:// URI")
    problems += _tab_problems(manifest, resolved)
    for domain in manifest.get("validDomains", []):
        if "://" in domain or "/" in domain:
            problems.append(f"validDomains entry {domain!r} must be a host name without scheme or path")
    for language in manifest.get("localizationInfo", {}).get("additionalLanguages", []):
        path = base_dir / language["file"]
        if not path.is_file():
            problems.append(f"localization file {language['file']} not found")
            continue
        strings = json.loads(path.read_text(encoding="utf-8"))
        for (section, key), limit in LIMITS.items():
            value = strings.get(f"{section}.{key}")
            if value and len(value) > limit:
                problems.append(f"{language['file']}: {section}.{key} is longer than {limit} characters")
    if resolved and PLACEHOLDER.search(json.dumps(manifest)):
        problems.append("unfilled ${{...}} placeholders remain")
    return problems


def _tab_problems(manifest: dict, resolved: bool) -> list[str]:
    """The dashboard tabs: a personal static tab (the rep's own work list) and one configurable channel tab."""
    problems = []
    hosts = set(manifest.get("validDomains", []))
    urls = []
    static = manifest.get("staticTabs", [])
    if len(static) > 16:
        problems.append("at most 16 staticTabs")
    for index, tab in enumerate(static):
        if not tab.get("entityId") or len(tab["entityId"]) > 64:
            problems.append(f"staticTabs[{index}].entityId is required, at most 64 characters")
        if len(tab.get("name", "")) > 128:
            problems.append(f"staticTabs[{index}].name is longer than 128 characters")
        if not set(tab.get("scopes", [])) or not set(tab["scopes"]) <= {"personal", "team", "groupChat"}:
            problems.append(f"staticTabs[{index}].scopes must be personal, team or groupChat")
        urls += [(f"staticTabs[{index}].contentUrl", tab.get("contentUrl")),
                 (f"staticTabs[{index}].websiteUrl", tab.get("websiteUrl"))]
    configurable = manifest.get("configurableTabs", [])
    if len(configurable) > 1:
        problems.append("at most one configurableTabs entry")
    for index, tab in enumerate(configurable):
        scopes = set(tab.get("scopes", []))
        if not scopes or not scopes <= {"team", "groupChat"}:
            problems.append(f"configurableTabs[{index}].scopes must be team and/or groupChat")
        urls.append((f"configurableTabs[{index}].configurationUrl", tab.get("configurationUrl")))
    for name, url in urls:
        if url is None:
            continue
        if not str(url).startswith("https://"):
            problems.append(f"{name} must be an https URL")
            continue
        host = str(url)[len("https://"):].split("/", 1)[0]
        if resolved and host not in hosts:
            problems.append(f"{name}: host {host} is not in validDomains")
    return problems


def build(values: dict[str, str], out: Path, base_dir: Path = HERE) -> dict:
    """Fill, validate and zip the package; return the filled manifest. Raises ValueError when invalid."""
    manifest = fill(json.loads((base_dir / "manifest.json").read_text(encoding="utf-8")), values)
    problems = validate_manifest(manifest, base_dir)
    if problems:
        raise ValueError("invalid Teams manifest: " + "; ".join(problems))
    files = [manifest["icons"]["color"], manifest["icons"]["outline"]]
    files += [lang["file"] for lang in manifest.get("localizationInfo", {}).get("additionalLanguages", [])]
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
        for name in files:
            package.write(base_dir / name, name)
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bot-app-id", required=True, help="Microsoft App ID of the Azure Bot (BOT_APP_ID)")
    parser.add_argument("--app-hostname", required=True, help="host name of the Function App, no https://")
    parser.add_argument("--publisher-name", required=True)
    parser.add_argument("--publisher-url", required=True, help="https URL of the publishing company")
    parser.add_argument("--privacy-url", help="https URL of the privacy statement (default: publisher URL)")
    parser.add_argument("--terms-url", help="https URL of the terms of use (default: publisher URL)")
    parser.add_argument("--teams-app-id", help="GUID of the Teams app (default: derived from the bot id)")
    parser.add_argument("--out", type=Path, default=Path("crmflow-teams.zip"))
    args = parser.parse_args(argv)
    values = {
        "BOT_APP_ID": args.bot_app_id,
        "APP_HOSTNAME": args.app_hostname.removeprefix("https://").rstrip("/"),
        "PUBLISHER_NAME": args.publisher_name,
        "PUBLISHER_URL": args.publisher_url,
        "PRIVACY_URL": args.privacy_url or args.publisher_url,
        "TERMS_URL": args.terms_url or args.publisher_url,
        "TEAMS_APP_ID": args.teams_app_id or str(uuid.uuid5(uuid.NAMESPACE_URL, f"crmflow-teams:{args.bot_app_id}")),
    }
    try:
        build(values, args.out)
    except (KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} (Teams app id {values['TEAMS_APP_ID']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

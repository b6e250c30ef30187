"""The Teams app package of the rep-notification bot: required manifest fields, icons, ids, packaging."""

from __future__ import annotations

import importlib.util
import json
import uuid
import zipfile

import pytest

from shared.settings import APP_ROOT

TEAMS_APP = APP_ROOT / "infra" / "teams-app"
BOT_ID = "3f2504e0-4f89-11d3-9a0c-0305e82c3301"
VALUES = {"BOT_APP_ID": BOT_ID, "APP_HOSTNAME": "func-crmflow-abc.azurewebsites.net", "PUBLISHER_NAME": "Contoso",
          "PUBLISHER_URL": "https://www.contoso.com", "PRIVACY_URL": "https://www.contoso.com/privacy",
          "TERMS_URL": "https://www.contoso.com/terms", "TEAMS_APP_ID": str(uuid.uuid4())}


@pytest.fixture(scope="module")
def package():
    spec = importlib.util.spec_from_file_location("teams_package", TEAMS_APP / "package.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def template() -> dict:
    return json.loads((TEAMS_APP / "manifest.json").read_text(encoding="utf-8"))


def test_template_has_the_required_fields(package, template):
    assert package.validate_manifest(template, TEAMS_APP, resolved=False) == []
    for key in ("manifestVersion", "version", "id", "developer", "name", "description", "icons", "accentColor",
                "bots", "webApplicationInfo"):
        assert template[key], key
    assert set(template["developer"]) >= {"name", "websiteUrl", "privacyUrl", "termsOfUseUrl"}
    (bot,) = template["bots"]
    assert bot["botId"] == template["webApplicationInfo"]["id"] == "${{BOT_APP_ID}}"
    assert bot["scopes"] == ["personal"] and bot["isNotificationOnly"] is True


def test_icons_have_the_sizes_teams_requires(package):
    assert package.png_info((TEAMS_APP / "color.png").read_bytes())[:2] == (192, 192)
    width, height, colour_type = package.png_info((TEAMS_APP / "outline.png").read_bytes())
    assert (width, height, colour_type) == (32, 32, 6)


def test_build_fills_validates_and_zips(package, tmp_path):
    out = tmp_path / "crmflow-teams.zip"
    manifest = package.build(VALUES, out)
    assert manifest["bots"][0]["botId"] == BOT_ID
    assert manifest["webApplicationInfo"]["resource"] == f"api://func-crmflow-abc.azurewebsites.net/botid-{BOT_ID}"
    with zipfile.ZipFile(out) as zipped:
        assert sorted(zipped.namelist()) == ["color.png", "ja-jp.json", "manifest.json", "outline.png"]
        assert "${{" not in zipped.read("manifest.json").decode()


def test_cli_derives_a_stable_teams_app_id(package, tmp_path, capsys):
    args = ["--bot-app-id", BOT_ID, "--app-hostname", "https://func-crmflow-abc.azurewebsites.net/",
            "--publisher-name", "Contoso", "--publisher-url", "https://www.contoso.com"]
    assert package.main([*args, "--out", str(tmp_path / "a.zip")]) == 0
    assert package.main([*args, "--out", str(tmp_path / "b.zip")]) == 0
    ids = [json.loads(zipfile.ZipFile(tmp_path / n).read("manifest.json"))["id"] for n in ("a.zip", "b.zip")]
    assert ids[0] == ids[1] and uuid.UUID(ids[0])
    assert json.loads(zipfile.ZipFile(tmp_path / "a.zip").read("manifest.json"))["validDomains"] == [
        "func-crmflow-abc.azurewebsites.net"]


@pytest.mark.parametrize(("change", "problem"), [
    (lambda m: m.pop("webApplicationInfo"), "missing webApplicationInfo"),
    (lambda m: m["bots"][0].update(botId="not-a-guid"), "botId must be a GUID"),
    (lambda m: m["webApplicationInfo"].update(id=str(uuid.uuid4())), "webApplicationInfo.id must be the bot"),
    (lambda m: m["name"].update(short="x" * 31), "name.short is longer than 30"),
    (lambda m: m["developer"].update(privacyUrl="http://insecure"), "privacyUrl must be an https URL"),
    (lambda m: m["icons"].update(color="outline.png"), "icons.color must be 192x192"),
    (lambda m: m.update(accentColor="blue"), "accentColor must be #RRGGBB"),
    (lambda m: m["bots"][0].update(scopes=["team"]), "scopes must include personal"),
    (lambda m: m.update(validDomains=["https://x.example"]), "without scheme"),
    (lambda m: m["staticTabs"][0].update(contentUrl="http://x.example/"), "contentUrl must be an https URL"),
    (lambda m: m["staticTabs"][0].update(contentUrl="https://elsewhere.example/"), "not in validDomains"),
    (lambda m: m["configurableTabs"][0].update(scopes=["personal"]), "scopes must be team"),
    (lambda m: m["configurableTabs"].append(dict(m["configurableTabs"][0])), "at most one configurableTabs"),
])
def test_validation_catches_broken_manifests(package, change, problem):
    manifest = package.fill(json.loads((TEAMS_APP / "manifest.json").read_text(encoding="utf-8")), VALUES)
    assert package.validate_manifest(manifest, TEAMS_APP) == []
    change(manifest)
    assert any(problem in p for p in package.validate_manifest(manifest, TEAMS_APP))


def test_missing_values_are_named(package, tmp_path):
    with pytest.raises(KeyError, match="BOT_APP_ID"):
        package.build({k: v for k, v in VALUES.items() if k != "BOT_APP_ID"}, tmp_path / "x.zip")


@pytest.mark.parametrize("publisher", ['Contoso "EU"', "Contoso \\ Back\\slash", "Contoso\u2028EU {x}"])
def test_publisher_names_with_json_metacharacters_stay_text(package, tmp_path, publisher):
    out = tmp_path / "crmflow-teams.zip"
    args = ["--bot-app-id", BOT_ID, "--app-hostname", "func-crmflow-abc.azurewebsites.net",
            "--publisher-name", publisher, "--publisher-url", "https://www.contoso.com", "--out", str(out)]
    assert package.main(args) == 0
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert manifest["developer"]["name"] == publisher
    assert manifest["bots"][0]["botId"] == BOT_ID


def test_tabs_show_the_dashboard_personal_own_list_and_a_configurable_team_view(template):
    (personal,) = template["staticTabs"]
    assert personal["scopes"] == ["personal"]
    assert personal["contentUrl"].startswith("https://${{APP_HOSTNAME}}/api/teams/tab?")
    assert "owner=me" in personal["contentUrl"] and "{locale}" in personal["contentUrl"]
    (channel,) = template["configurableTabs"]
    assert channel["configurationUrl"].startswith("https://${{APP_HOSTNAME}}/api/dashboard/configure")
    assert set(channel["scopes"]) == {"team", "groupChat"} and channel["canUpdateConfiguration"] is True
    strings = json.loads((TEAMS_APP / "ja-jp.json").read_text(encoding="utf-8"))
    assert strings["staticTabs[0].name"]

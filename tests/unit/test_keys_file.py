"""Scoped keys: the keys file, key lookup by hash, and the settings that refuse weak access."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from serving.keys import (
    KeysFileInvalid,
    TeamScope,
    key_digest,
    read_keys_file,
    scope_of_key,
)
from serving.settings import SettingsInvalid, load_settings

EMEA_KEY = "emea-key-0123456789abcdef"
ALL_KEY = "all-teams-key-0123456789"
CLEAR_KEY = "clear-full-key-0123456789"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEALCAST_API_KEYS", "DEALCAST_AUTH", "DEALCAST_KEYS_FILE", "DEALCAST_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("DEALCAST_PAGE_SECRET", raising=False)


def _keys_file(folder: Path, text: str) -> Path:
    path = folder / "keys.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _two_keys(folder: Path) -> Path:
    return _keys_file(
        folder,
        f"""
[[keys]]
name = "crm-emea"
sha256 = "{key_digest(EMEA_KEY)}"
teams = ["EMEA 1", "EMEA 2"]

[[keys]]
sha256 = "{key_digest(ALL_KEY).upper()}"
teams = "*"
""",
    )


def test_a_keys_file_gives_each_key_its_teams(tmp_path: Path) -> None:
    keys = read_keys_file(_two_keys(tmp_path))
    assert [k.name for k in keys] == ["crm-emea", ""]
    emea = scope_of_key(EMEA_KEY, clear_keys=(), hashed_keys=keys)
    assert emea == TeamScope.of(["EMEA 1", "EMEA 2"])
    assert emea is not None and emea.allows("EMEA 1") and not emea.allows("NA 1")
    every = scope_of_key(ALL_KEY, clear_keys=(), hashed_keys=keys)  # upper-case hex is read too
    assert every is not None and every.unlimited and every.allows("anything")
    assert scope_of_key("emea-key-0123456789abcdeX", clear_keys=(), hashed_keys=keys) is None
    assert scope_of_key("", clear_keys=(), hashed_keys=keys) is None


def test_the_file_holds_no_key_in_clear(tmp_path: Path) -> None:
    text = _two_keys(tmp_path).read_text()
    assert EMEA_KEY not in text and ALL_KEY not in text


def test_clear_keys_see_every_team_and_scopes_of_one_key_add_up(tmp_path: Path) -> None:
    keys = read_keys_file(_two_keys(tmp_path))
    clear = (SecretStr(EMEA_KEY),)
    assert scope_of_key(EMEA_KEY, clear_keys=clear, hashed_keys=keys) == TeamScope.every_team()
    assert scope_of_key(CLEAR_KEY, clear_keys=clear, hashed_keys=keys) is None
    assert TeamScope.of(["A"]).union(TeamScope.of(["B"])) == TeamScope.of(["A", "B"])
    assert TeamScope.of(["A"]).union(TeamScope.every_team()).unlimited


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("keys = 3", "no [[keys]] entries"),
        ("[[keys]]\nsha256 = 'abc'\nteams = '*'", "64 hex digits"),
        (f"[[keys]]\nsha256 = '{'a' * 64}'", "teams must be"),
        (f"[[keys]]\nsha256 = '{'a' * 64}'\nteams = []", "teams must be"),
        (f"[[keys]]\nsha256 = '{'a' * 64}'\nteams = ['A', 3]", "teams must be"),
        (f"[[keys]]\nsha256 = '{'a' * 64}'\nteams = '*'\nkey = 'x'", "unknown fields ['key']"),
        (
            f"[[keys]]\nsha256 = '{'a' * 64}'\nteams = '*'\n"
            f"[[keys]]\nsha256 = '{'A' * 64}'\nteams = ['B']",
            "keys entry 2: the same sha256",
        ),
        ("[[keys]\n", "not valid TOML"),
    ],
)
def test_a_bad_keys_file_says_what_and_where(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(KeysFileInvalid, match=problem.replace("[", r"\[").replace("]", r"\]")):
        read_keys_file(_keys_file(tmp_path, text))


def test_settings_read_the_keys_file_or_name_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEALCAST_KEYS_FILE", str(_two_keys(tmp_path)))
    settings = load_settings()  # a keys file alone is enough keys
    assert [k.name for k in settings.hashed_keys] == ["crm-emea", ""]
    monkeypatch.setenv("DEALCAST_KEYS_FILE", str(tmp_path / "missing.toml"))
    with pytest.raises(SettingsInvalid, match=r"DEALCAST_KEYS_FILE: cannot read .*missing\.toml"):
        load_settings()


def test_a_short_key_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALCAST_API_KEYS", f"{CLEAR_KEY},k")
    with pytest.raises(SettingsInvalid, match=r"DEALCAST_API_KEYS: .*1 characters.*at least 16"):
        load_settings()
    monkeypatch.setenv("DEALCAST_API_KEYS", "0123456789abcdef")  # 16 is enough
    assert len(load_settings().api_keys) == 1


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_auth_off_is_accepted_on_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("DEALCAST_AUTH", "off")
    assert load_settings(host=host).auth == "off"


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "example.com"])
def test_auth_off_is_refused_beyond_loopback(monkeypatch: pytest.MonkeyPatch, host: str) -> None:
    monkeypatch.setenv("DEALCAST_AUTH", "off")
    monkeypatch.setenv("DEALCAST_HOST", host)
    with pytest.raises(SettingsInvalid, match=r"DEALCAST_AUTH=off .*loopback.*DEALCAST_HOST="):
        load_settings()


def test_a_short_page_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALCAST_API_KEYS", CLEAR_KEY)
    monkeypatch.setenv("DEALCAST_PAGE_SECRET", "short")
    with pytest.raises(SettingsInvalid, match=r"DEALCAST_PAGE_SECRET: .*32 characters"):
        load_settings()
    monkeypatch.setenv("DEALCAST_PAGE_SECRET", "s" * 32)
    settings = load_settings()
    assert settings.page_secret is not None and "s" * 32 not in repr(settings)

"""`dealcast page-link`: the link it prints carries the teams and lifetime asked for."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest

from dealcast.cli import main
from serving.sessions import LINK_AUDIENCE, read

SECRET = "cli-page-secret-0123456789abcdef-xyz"


@pytest.fixture(autouse=True)
def service_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEALCAST_AUTH", "DEALCAST_KEYS_FILE", "DEALCAST_PUBLIC_URL", "DEALCAST_HOST"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DEALCAST_API_KEYS", "cli-test-key-0123456789")
    monkeypatch.setenv("DEALCAST_PAGE_SECRET", SECRET)
    monkeypatch.setenv("DEALCAST_PORT", "8123")


def test_prints_a_signed_link(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["page-link", "--team", "EMEA 1", "--team", "EMEA 2", "--hours", "5"])
    out, err = capsys.readouterr()
    assert code == 0, err
    url = urlsplit(out.strip())
    assert (url.scheme, url.netloc, url.path) == ("http", "127.0.0.1:8123", "/v1/page-session")
    grant = read(parse_qs(url.query)["token"][0], secret=SECRET, audience=LINK_AUDIENCE)
    assert grant.teams == ("EMEA 1", "EMEA 2")
    assert grant.expires_at - grant.issued_at == 5 * 3600
    assert abs(grant.issued_at - time.time()) < 60
    assert "opens EMEA 1, EMEA 2 until" in err and SECRET not in out + err


def test_the_base_url_is_the_public_address(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DEALCAST_PUBLIC_URL", "https://forecast.example.com/dealcast")
    assert main(["page-link", "--team", "A"]) == 0
    assert capsys.readouterr().out.startswith(
        "https://forecast.example.com/dealcast/v1/page-session?token="
    )
    assert main(["page-link", "--team", "A", "--base-url", "https://other.example/"]) == 0
    assert capsys.readouterr().out.startswith("https://other.example/v1/page-session?token=")


def test_mistakes_are_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert main(["page-link", "--team", "A", "--hours", "0"]) == 2
    assert "lasts more than 0" in capsys.readouterr().err
    monkeypatch.delenv("DEALCAST_PAGE_SECRET")
    assert main(["page-link", "--team", "A"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("dealcast page-link: ") and "DEALCAST_PAGE_SECRET" in err

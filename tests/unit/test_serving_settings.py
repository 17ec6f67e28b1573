"""The service's settings: environment names, keys, and refusing to run open by accident."""

from __future__ import annotations

import pytest

from serving.settings import Settings, SettingsInvalid, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEALCAST_API_KEYS", "DEALCAST_AUTH", "DEALCAST_MODEL_URI", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)


def test_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALCAST_API_KEYS", " alpha-key-0123456789 , beta-key-0123456789,,")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////tmp/x.db")
    monkeypatch.setenv("DEALCAST_MAX_BATCH", "10")
    settings = load_settings()
    assert [key.get_secret_value() for key in settings.api_keys] == [
        "alpha-key-0123456789",
        "beta-key-0123456789",
    ]
    assert settings.mlflow_tracking_uri == "sqlite:////tmp/x.db"
    assert settings.max_batch == 10
    assert settings.model_uri == "models:/dealcast@champion"
    assert settings.alias_watched
    assert "alpha-key" not in repr(settings) and "beta-key" not in repr(settings)


def test_no_keys_refuses_to_start() -> None:
    with pytest.raises(SettingsInvalid, match=r"DEALCAST_API_KEYS.*DEALCAST_AUTH=off"):
        load_settings()


def test_auth_off_must_be_explicit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEALCAST_AUTH", "off")
    assert load_settings().auth == "off"
    monkeypatch.setenv("DEALCAST_AUTH", "no")
    with pytest.raises(SettingsInvalid, match="DEALCAST_AUTH"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [("DEALCAST_MAX_BATCH", "5000"), ("DEALCAST_PORT", "http"), ("DEALCAST_MAX_BODY_BYTES", "1")],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("DEALCAST_API_KEYS", "a-key-0123456789ab")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsInvalid, match=name):
        load_settings()


def test_default_tracking_uri_is_the_working_directory_store(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(tmp_path)  # type: ignore[arg-type]
    settings = Settings(api_keys="a-key-0123456789ab")  # type: ignore[arg-type]
    assert settings.mlflow_tracking_uri == f"sqlite:///{tmp_path}/mlflow.db"


def test_pinned_versions_are_not_watched() -> None:
    assert not Settings(api_keys="a-key-0123456789ab", model_uri="models:/dealcast/3").alias_watched  # type: ignore[arg-type]
    assert not Settings(api_keys="a-key-0123456789ab", model_uri="runs:/abc/model").alias_watched  # type: ignore[arg-type]

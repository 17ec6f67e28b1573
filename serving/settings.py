"""The service's configuration: one typed `Settings`, read from the environment.

Every variable is `DEALCAST_<FIELD>` (e.g. `DEALCAST_MODEL_URI`), except `MLFLOW_TRACKING_URI`,
which keeps MLflow's own name so that one variable points training and serving at the same
store. Unsafe configurations are refused at start, not discovered in production: running
without API keys needs `DEALCAST_AUTH=off`, said explicitly, and only on a loopback host; a key
shorter than 16 characters, a keys file that does not parse and a page secret shorter than 32
characters are refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AliasChoices,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from features.errors import DealcastError
from serving.keys import MIN_KEY_LENGTH, HashedKey, KeysFileInvalid, read_keys_file

DEFAULT_MODEL_URI = "models:/dealcast@champion"
# The hard batch limit of the API contract; a deployment may lower it, never raise it.
MAX_BATCH = 1000
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# HS256 wants a secret at least as long as its 256-bit hash (RFC 7518, 3.2).
MIN_PAGE_SECRET_LENGTH = 32


class SettingsInvalid(DealcastError):
    """The service's configuration is unusable; the message lists every problem."""


def default_tracking_uri() -> str:
    """MLflow's embedded SQLite store in the working directory, as `dealcast train` uses."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DEALCAST_", extra="ignore", frozen=True, populate_by_name=True
    )

    model_uri: str = Field(
        default=DEFAULT_MODEL_URI,
        min_length=1,
        description="the model to serve; an alias URI (models:/NAME@ALIAS) is watched",
    )
    # Comma-separated in the environment; SecretStr keeps them out of reprs and logs.
    api_keys: Annotated[tuple[SecretStr, ...], NoDecode] = ()
    # Scoped keys: a TOML file of key hashes and the teams each may see (serving.keys).
    keys_file: Path | None = None
    auth: Literal["on", "off"] = "on"
    # Signs the manager's page links and sessions (HS256); without it no link can be made.
    page_secret: SecretStr | None = None
    page_link_hours: float = Field(default=72.0, gt=0, le=24 * 31)
    # The address managers reach the service at, for the links it mints (else the request's).
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+(/[^?#\s]*)?$")
    # Whether X-Forwarded-Proto (set by a TLS-terminating proxy) may say the scheme is https.
    trust_forwarded_proto: bool = False
    max_body_bytes: int = Field(default=16 * 2**20, ge=1024)
    max_batch: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH)
    alias_poll_seconds: float = Field(default=30.0, gt=0)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    shutdown_timeout_seconds: int = Field(default=10, ge=0)
    # Threads that run the (CPU-bound, GIL-holding) scoring. More than the cores only adds
    # GIL hand-offs: with 40 (anyio's default) an open-loop load queues up in threads that
    # take turns every 5 ms, and the event loop waits behind them to read new requests.
    worker_threads: int = Field(default=2, ge=1, le=64)
    # What a request may cost before it is served (serving.limits): its body must arrive
    # within body_timeout_seconds (else 408), its request head within header_timeout_seconds
    # of the connection opening or of the previous response (also the keep-alive timeout);
    # at most max_connections connections are open (uvicorn answers 503 past it) and at most
    # max_queue /v1 requests are in the service (503 with Retry-After past it).
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    header_timeout_seconds: int = Field(default=5, ge=1)
    max_connections: int = Field(default=1000, ge=1)
    # 8 one-deal explained requests take ~50 ms on the loop, the wait a request admitted last
    # may add (the bound sees only requests the service has read: benchmarks/service_abuse.py).
    max_queue: int = Field(default=8, ge=1)
    # A model that fails to load is tried again after load_retry_seconds, doubling after
    # each failure up to load_retry_max_seconds (serving.model_store).
    load_retry_seconds: float = Field(default=1.0, gt=0)
    load_retry_max_seconds: float = Field(default=300.0, gt=0)
    # The folder of a CRM export, for the manager's page.
    data_dir: Path | None = None
    # Where every answered deal is appended (models.prediction_log); unset: nothing is logged.
    prediction_log: Path | None = None
    mlflow_tracking_uri: str = Field(
        default_factory=default_tracking_uri,
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
    )

    @field_validator("api_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(key.strip() for key in value.split(",") if key.strip())
        return value

    @field_validator("api_keys")
    @classmethod
    def _printable_keys(cls, keys: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in keys:
            if not key.get_secret_value().isprintable():
                raise ValueError("an API key contains non-printable characters")
            if len(key.get_secret_value()) < MIN_KEY_LENGTH:
                raise ValueError(
                    f"an API key has {len(key.get_secret_value())} characters; keys need at "
                    f"least {MIN_KEY_LENGTH}"
                )
        return keys

    @field_validator("page_secret")
    @classmethod
    def _long_page_secret(cls, secret: SecretStr | None) -> SecretStr | None:
        if secret is not None and len(secret.get_secret_value()) < MIN_PAGE_SECRET_LENGTH:
            raise ValueError(f"the page secret needs at least {MIN_PAGE_SECRET_LENGTH} characters")
        return secret

    _hashed_keys: tuple[HashedKey, ...] = PrivateAttr(default=())

    @model_validator(mode="after")
    def _keys_or_auth_off(self) -> Settings:
        """Refuse to run open by accident, or open beyond this machine at all."""
        if self.keys_file is not None:
            try:
                self._hashed_keys = read_keys_file(self.keys_file)
            except KeysFileInvalid as error:
                raise ValueError(f"DEALCAST_KEYS_FILE: {error}") from None
        if self.auth == "on" and not self.api_keys and not self._hashed_keys:
            raise ValueError(
                "no API keys: set DEALCAST_API_KEYS (comma-separated) or DEALCAST_KEYS_FILE, or "
                "DEALCAST_AUTH=off to run without authentication on purpose"
            )
        if self.auth == "off" and self.host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"DEALCAST_AUTH=off serves every caller, so it is accepted only on a loopback "
                f"host (127.0.0.1, ::1, localhost), not on DEALCAST_HOST={self.host}"
            )
        return self

    @property
    def hashed_keys(self) -> tuple[HashedKey, ...]:
        """The keys file's keys (empty without one)."""
        return self._hashed_keys

    @property
    def alias_watched(self) -> bool:
        return self.model_uri.startswith("models:/") and "@" in self.model_uri


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and `overrides`), checked; a bad value raises
    `SettingsInvalid` naming each variable, never a traceback of the validator."""
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(_problem(problem["loc"], problem["msg"]) for problem in error.errors())
        raise SettingsInvalid(f"invalid configuration: {problems}") from None
    return settings


def _problem(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    if not loc:
        return message
    name = str(loc[0])
    variable = (
        "MLFLOW_TRACKING_URI"
        if name.lower() == "mlflow_tracking_uri"
        else f"DEALCAST_{name.upper()}"
    )
    return f"{variable}: {message}"

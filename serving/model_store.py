"""The model being served, and swapping it for a new one without failing a request.

`ModelStore` holds the current `LoadedModel` behind one reference. A request reads the
reference once, at its start, and works with that model to its end: replacing the reference
never touches a model in use, so a swap cannot break an in-flight request, and Python's
attribute assignment makes the replacement atomic.

At start the store loads `DEALCAST_MODEL_URI`. An alias URI (`models:/NAME@ALIAS`) is resolved
to a concrete version first, so what is loaded is exactly the version reported. A watcher
thread then polls the alias every `poll_seconds`; when it points at a new version, that
version is loaded and warmed up (its bundle's golden deal must score as recorded, to 1e-9)
before the reference moves. A version that fails to load or to warm up is never served and
the old model keeps serving; the failure is remembered and the load tried again with backoff
(after `retry_seconds`, doubling after each failure up to `retry_max_seconds`), since a load
can fail for a passing reason (an unreachable artifact store, a file missing while a store is
restored). A bundle whose files do not match the digest recorded at registration is refused
before any of it is read (models.bundle.BundleRefused, naming the file) and reported like any
failed load. When the alias moves on, its new version is tried at once. Other URIs (a
version, a run, a path) are not watched; if the first load fails, the watcher retries it,
with the same backoff, until it succeeds. `/ready` reports the last
failure and when the next attempt is due (`load_failure`).
"""

from __future__ import annotations

import gc
import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import mlflow
from mlflow.tracking import MlflowClient

from features.errors import DealcastError
from models.bundle import DealcastModel, load_model
from models.prediction_log import ModelStamp
from models.scoring import Scorer
from serving.errors import ModelUnavailable

logger = logging.getLogger(__name__)

GOLDEN_TOLERANCE = 1e-9
_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")
_VERSION_URI = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")

Loader = Callable[[str], DealcastModel]


class WarmUpFailed(DealcastError):
    """A loaded model does not score its golden deal as recorded."""


@dataclass(frozen=True)
class LoadFailure:
    """The last failed load of one version (or of an unversioned URI) and the next try."""

    version: str | None
    reason: str
    attempts: int
    failed_at: datetime
    next_attempt_at: datetime
    next_attempt: float  # on the store's monotonic clock


@dataclass(frozen=True)
class LoadedModel:
    """One loaded, warmed-up model and where it came from."""

    model: DealcastModel
    uri: str  # the concrete URI loaded (an alias resolved to its version)
    name: str
    version: str | None
    alias: str | None
    run_id: str | None
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def scorer(self) -> Scorer:
        return self.model.scorer

    @property
    def stamp(self) -> ModelStamp:
        """The served model, as a prediction log row names it."""
        return ModelStamp(name=self.name, version=self.version, uri=self.uri)

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(self.model.bundle.plan.stages.all_stages)


def check_golden(model: DealcastModel, *, tolerance: float = GOLDEN_TOLERANCE) -> None:
    """Score the bundle's golden deal and compare with its recorded score."""
    golden = model.bundle.golden
    if not golden or "deal" not in golden or "expected" not in golden:
        raise WarmUpFailed("the bundle has no golden deal to check")
    score = model.scorer.score([golden["deal"]], as_of=[golden.get("as_of")], explain=False)[0]
    got = {
        "win_probability": score.win_probability,
        "win_in_period_probability": score.win_in_period_probability,
    }
    for name, value in got.items():
        expected = float(golden["expected"][name])
        if not (math.isfinite(value) and abs(value - expected) <= tolerance):
            raise WarmUpFailed(
                f"golden deal {score.opportunity_id}: {name} {value!r}, recorded {expected!r}"
            )


def warm_up(model: DealcastModel) -> None:
    """The golden check, then one explained score so that the first request pays nothing
    extra (caches of the explanation and action code are filled)."""
    check_golden(model)
    golden = model.bundle.golden
    model.scorer.score([golden["deal"]], as_of=[golden.get("as_of")], explain=True)


class ModelStore:
    def __init__(
        self,
        uri: str,
        *,
        tracking_uri: str | None = None,
        poll_seconds: float = 30.0,
        retry_seconds: float = 1.0,
        retry_max_seconds: float = 300.0,
        loader: Loader = load_model,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.uri = uri
        self.tracking_uri = tracking_uri
        self.poll_seconds = poll_seconds
        self.retry_seconds = retry_seconds
        self.retry_max_seconds = retry_max_seconds
        self._loader = loader
        self._clock = clock
        alias, version = _ALIAS_URI.match(uri), _VERSION_URI.match(uri)
        self._alias: str | None = alias["alias"] if alias else None
        named = alias or version
        self._name: str | None = named["name"] if named else None
        self._current: LoadedModel | None = None
        self._error: str | None = "the model is not loaded yet"
        self._failure: LoadFailure | None = None  # the last failed load, until one succeeds
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._client: MlflowClient | None = None

    # ------------------------------------------------------------------ reading

    @property
    def current(self) -> LoadedModel | None:
        return self._current

    @property
    def error(self) -> str | None:
        """Why no model is served (None when one is), or the last failed swap."""
        return self._error

    @property
    def load_failure(self) -> LoadFailure | None:
        """The last failed load and when it is tried again; None once a load succeeds."""
        return self._failure

    @property
    def watched(self) -> bool:
        return self._alias is not None

    def require(self) -> LoadedModel:
        loaded = self._current
        if loaded is None:
            raise ModelUnavailable(f"no model is loaded: {self._error}")
        return loaded

    # ------------------------------------------------------------------ lifecycle

    def start(self, *, watch: bool = True) -> None:
        """Load the model (errors are kept, not raised: the service runs and says why it is
        not ready), then start the watcher."""
        if self.tracking_uri:
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
        self.refresh()
        if watch and (self.watched or self._current is None):
            self._watcher = threading.Thread(
                target=self._watch, name="dealcast-model-watcher", daemon=True
            )
            self._watcher.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=30)
            self._watcher = None

    def _watch(self) -> None:
        while not self._stop.wait(self._next_wait()):
            if not self.watched and self._current is not None:
                return
            try:
                self.refresh()
            except Exception:  # the watcher must survive anything; the old model serves on
                logger.exception("model watcher: refresh failed")

    # ------------------------------------------------------------------ swapping

    def refresh(self) -> bool:
        """Load the model the URI names now, if it is not the one served; True on a swap."""
        with self._refresh_lock:
            target = self._target()
            if target is None:
                return False
            uri, version = target
            current = self._current
            if current is not None and (not self.watched or current.version == version):
                self._failure = None  # the alias is back on the version served
                return False
            failure = self._failure
            if (
                failure is not None
                and failure.version == version
                and self._clock() < failure.next_attempt
            ):
                return False  # backing off; a new version of the alias is tried at once
            try:
                loaded = self._load(uri, version)
            except Exception as error:  # any failure: the version is not served
                reason = f"{uri}: {type(error).__name__}: {error}"
                self._failure = self._failed(version, reason, failure)
                self._error = reason
                logger.error("model %s not loaded, %s", uri, self._serving_note())
                logger.error(
                    "reason: %s; attempt %d, next at %s",
                    reason,
                    self._failure.attempts,
                    self._failure.next_attempt_at.isoformat(timespec="seconds"),
                )
                return False
            previous = self._current
            self._current = loaded
            self._error = None
            self._failure = None
            _settle_heap()
            logger.info(
                "serving %s version %s (was %s)",
                loaded.name,
                loaded.version,
                previous.version if previous else "none",
            )
            return True

    def _failed(self, version: str | None, reason: str, last: LoadFailure | None) -> LoadFailure:
        attempts = last.attempts + 1 if last is not None and last.version == version else 1
        delay = min(self.retry_seconds * 2 ** (attempts - 1), self.retry_max_seconds)
        now = datetime.now(UTC)
        return LoadFailure(
            version=version,
            reason=reason,
            attempts=attempts,
            failed_at=now,
            next_attempt_at=now + timedelta(seconds=delay),
            next_attempt=self._clock() + delay,
        )

    def _next_wait(self) -> float:
        """Until the next poll of the alias, or the next try of a failed load if sooner."""
        failure = self._failure
        if failure is None:
            return self.poll_seconds
        due_in = failure.next_attempt - self._clock()
        # Past due means the last refresh did not try (the registry was unreachable): poll.
        return min(self.poll_seconds, due_in) if due_in > 0 else self.poll_seconds

    def _serving_note(self) -> str:
        current = self._current
        return f"still serving version {current.version}" if current else "no model is served"

    def _target(self) -> tuple[str, str | None] | None:
        """The concrete URI to load and its version: the alias resolved now."""
        if self._alias is None or self._name is None:
            version = _VERSION_URI.match(self.uri)
            return self.uri, version["version"] if version else None
        try:
            found = self._registry().get_model_version_by_alias(self._name, self._alias)
        except Exception as error:  # the registry is down or the alias missing: keep serving
            if self._current is None:
                self._error = f"cannot resolve {self.uri}: {type(error).__name__}: {error}"
            logger.warning("cannot resolve %s: %s", self.uri, error)
            return None
        return f"models:/{self._name}/{found.version}", str(found.version)

    def _registry(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri, self.tracking_uri)
        return self._client

    def _load(self, uri: str, version: str | None) -> LoadedModel:
        model = self._loader(uri)
        warm_up(model)
        run_id = None
        if version is not None and self._name is not None:
            run_id = self._registry().get_model_version(self._name, version).run_id
        elif uri.startswith("runs:/"):
            run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        name = self._name or str(model.bundle.metadata.get("name", "dealcast"))
        return LoadedModel(
            model=model,
            uri=uri,
            name=name,
            version=version,
            alias=self._alias,
            run_id=run_id,
        )


def _settle_heap() -> None:
    """Collect once, then exempt every object alive now (the model, the libraries) from
    later collections. Without this, a full collection walks the model's and MLflow's whole
    object graph: a measured 210 ms pause a few hundred requests after start, which was the
    service's p99. The previous model's objects are unfrozen first, so a swap frees them; a
    swap therefore costs one full collection (a pause of about 0.2 s), once."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()

"""Hot swap: the alias moves while a load generator hammers the real service; no request
fails, the served version changes, and versions that fail to load or to warm up are never
served. With one worker process and with two (`dealcast serve --workers 2`), each of which
watches the alias and swaps on its own."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient

from models.bundle import load_model, log_bundle
from tests.integration.conftest import API_KEY, Registry
from tests.integration.test_service_uvicorn import STARTUP_SECONDS, free_port, service_env

LOAD_THREADS = 4


def register_bundle_version(registry: Registry, *, tmp: Path, broken_golden: bool) -> str:
    """A new version of `dealcast`: the champion's bundle with other attainment settings
    (a different model to the registry and to attainment answers), or with a wrong golden
    score, which must fail the warm-up."""
    champion = load_model(f"models:/dealcast/{registry.version}").bundle
    if broken_golden:
        expected = dict(champion.golden["expected"])
        expected["win_probability"] = min(expected["win_probability"] + 0.05, 1.0) - 0.025
        golden = {**champion.golden, "expected": expected}
        bundle = dataclasses.replace(champion, golden=golden)
    else:
        bundle = dataclasses.replace(
            champion,
            dependence=champion.dependence + 0.1,
            metadata={**champion.metadata, "note": "re-registered for the hot-swap test"},
        )
    tmp.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(registry.tracking_uri)
    mlflow.set_registry_uri(registry.tracking_uri)
    mlflow.set_experiment("dealcast")
    with mlflow.start_run(run_name="swap-test"):
        info = log_bundle(bundle, workdir=tmp, registered_model_name="dealcast")
    return str(info.registered_model_version)


class Load:
    """Threads posting one-deal scores back to back; every outcome is recorded."""

    def __init__(self, base: str, deals: list[dict[str, Any]]) -> None:
        self.base = base
        self.deals = deals
        self.stop = threading.Event()
        self.failures: list[str] = []
        self.versions: list[list[str]] = [[] for _ in range(LOAD_THREADS)]
        self.threads = [
            threading.Thread(target=self._run, args=(k,), daemon=True) for k in range(LOAD_THREADS)
        ]

    def _run(self, k: int) -> None:
        headers = {"X-API-Key": API_KEY}
        with httpx.Client(base_url=self.base, timeout=30) as http:
            i = 0
            while not self.stop.is_set():
                deal = self.deals[(k + i) % len(self.deals)]
                i += 1
                try:
                    response = http.post(
                        "/v1/score", json={"deals": [deal], "explain": True}, headers=headers
                    )
                except httpx.HTTPError as error:
                    self.failures.append(f"{type(error).__name__}: {error}")
                    continue
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:300]}")
                    continue
                self.versions[k].append(response.json()["model"]["version"])

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def served(self) -> Counter[str]:
        return Counter(v for versions in self.versions for v in versions)

    def wait_for(self, version: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(versions and versions[-1] == version for versions in self.versions):
                return True
            time.sleep(0.05)
        return False


def versions_by_process(base: str, *, workers: int, timeout: float) -> dict[int, str | None]:
    """The version each worker process serves, from /ready on new connections (the kernel
    hands each to one of the processes) until every one of `workers` has answered."""
    seen: dict[int, str | None] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < workers and time.monotonic() < deadline:
        try:
            ready = httpx.get(f"{base}/ready", timeout=5)
        except httpx.TransportError:
            time.sleep(0.2)
            continue
        body = ready.json()
        seen[body["process"]] = (body["model"] or {}).get("version") if ready.is_success else None
    return seen


@pytest.fixture
def watched_server(
    registry: Registry, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[str, Path, int]]:
    workers: int = request.param
    port = free_port()
    log = tmp_path / "service.log"
    command = [sys.executable, "-m", "dealcast", "serve", "--port", str(port)]
    with log.open("w") as sink:
        process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=service_env(registry, DEALCAST_ALIAS_POLL_SECONDS="0.2"),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        served = versions_by_process(base, workers=workers, timeout=2)
        if len(served) == workers and None not in served.values():
            break
        time.sleep(0.2)
    try:
        yield base, log, workers
    finally:
        process.terminate()
        process.wait(timeout=60)


@pytest.mark.parametrize("watched_server", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_hot_swap_under_load(
    registry: Registry,
    watched_server: tuple[str, Path, int],
    open_deals: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    base, log_path, workers = watched_server
    client = MlflowClient(registry.tracking_uri, registry.tracking_uri)
    first = registry.version
    new = register_bundle_version(registry, tmp=tmp_path / "new", broken_golden=False)
    broken = register_bundle_version(registry, tmp=tmp_path / "broken", broken_golden=True)
    (tmp_path / "missing").mkdir()
    unloadable = client.create_model_version(
        "dealcast", source=str(tmp_path / "missing" / "model")
    ).version
    try:
        with Load(base, open_deals[:20]) as load:
            assert load.wait_for(first, timeout=30)
            time.sleep(0.5)
            client.set_registered_model_alias("dealcast", "champion", new)
            assert load.wait_for(new, timeout=30), load.failures[:3]
            time.sleep(0.5)
            for bad in (broken, unloadable):
                client.set_registered_model_alias("dealcast", "champion", bad)
                time.sleep(1.5)  # several polls of the watcher
            time.sleep(0.5)
            served_by = versions_by_process(base, workers=workers, timeout=30)
            assert served_by == dict.fromkeys(served_by, new), served_by
            assert len(served_by) == workers, served_by
        served = load.served()
        assert load.failures == [], load.failures[:5]
        assert set(served) == {first, new}, served
        for versions in load.versions:
            # Once a thread saw the new version it never saw the old one again.
            assert first not in versions[versions.index(new) :] if new in versions else True
            assert versions[-1] == new
        assert sum(served.values()) > 50
    finally:
        client.set_registered_model_alias("dealcast", "champion", first)
    log = log_path.read_text()
    # Each worker swapped on its own.
    assert log.count(f"serving dealcast version {new} (was {first})") == workers, log[-3000:]
    assert f"models:/dealcast/{broken} not loaded" in log
    assert f"models:/dealcast/{unloadable} not loaded" in log
    assert "golden deal" in log

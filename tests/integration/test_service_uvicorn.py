"""The real thing: `dealcast serve` as a process on a loopback port, over HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import API_KEY, Registry

STARTUP_SECONDS = 90
SERVE = [sys.executable, "-m", "dealcast", "serve"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def service_env(registry: Registry, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEALCAST_")}
    env.update(
        {
            "MLFLOW_TRACKING_URI": registry.tracking_uri,
            "DEALCAST_API_KEYS": API_KEY,
            "DEALCAST_MODEL_URI": "models:/dealcast@champion",
            "DEALCAST_SHUTDOWN_TIMEOUT_SECONDS": "20",
        }
    )
    env.update(extra)
    return env


def start_serve(registry: Registry, cwd: Path, **env: str) -> tuple[subprocess.Popen[str], str]:
    """`dealcast serve` as one process on a free loopback port (its output is the service's:
    several workers would outlive a kill of their supervisor and hold the pipe open),
    returned with its base URL once /ready answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [*SERVE, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        env=service_env(registry, **env),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                return process, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the service did not become ready:\n{process.communicate()[0]}")


@pytest.fixture
def server(registry: Registry, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    process, base = start_serve(registry, tmp_path)
    try:
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serves_over_loopback_and_stops_gracefully(
    server: tuple[subprocess.Popen[str], str], open_deals: list[dict[str, Any]]
) -> None:
    process, base = server
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=base, timeout=60) as http:
        assert http.get("/health").json() == {"status": "alive"}
        response = http.post("/v1/score", json={"deals": open_deals[:1]}, headers=headers)
        assert response.status_code == 200, response.text
        assert response.json()["scores"][0]["opportunity_id"] == open_deals[0]["opportunity_id"]
        assert http.post("/v1/score", json={"deals": open_deals[:1]}).status_code == 401
        assert http.get("/v1/model", headers=headers).json()["alias"] == "champion"

    # A request in flight when SIGTERM arrives is answered before the process exits.
    outcome: dict[str, Any] = {}

    def slow_request() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            # 240 deals: the open deals four times, under new ids (a repeated id is a 422).
            deals = [
                {**deal, "opportunity_id": f"{deal['opportunity_id']}-{copy}"}
                for copy in range(4)
                for deal in open_deals
            ]
            body = {"deals": deals, "explain": True}
            outcome["status"] = http.post("/v1/score", json=body, headers=headers).status_code

    worker = threading.Thread(target=slow_request)
    worker.start()
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    worker.join(timeout=60)
    # uvicorn re-raises the signal once it has shut down, so the exit status says SIGTERM.
    assert process.returncode in (0, -signal.SIGTERM), output
    assert outcome.get("status") == 200, output
    assert "Application shutdown complete" in output
    assert "Finished server process" in output
    assert API_KEY not in output


def test_refuses_to_start_without_keys(registry: Registry, tmp_path: Path) -> None:
    env = service_env(registry)
    del env["DEALCAST_API_KEYS"]
    result = subprocess.run(
        [sys.executable, "-m", "dealcast", "serve", "--port", str(free_port())],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "DEALCAST_API_KEYS" in result.stderr and "DEALCAST_AUTH=off" in result.stderr

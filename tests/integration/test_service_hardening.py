"""Issue 15's defects of the running service, each against a real `dealcast serve` process on
a loopback port: what a client without a key, a slow client or too many clients can hold; a
model load that fails and must be retried; /ready behind busy scoring threads; and client
input that must get a 4xx naming the field, never a 500.

Where the behaviour is a timeout, the service is started with a short one and the test only
says which came first (the refusal, or the end of what the client sends): no wall-clock
limit is asserted.
"""

from __future__ import annotations

import contextlib
import copy
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pytest
from mlflow.tracking import MlflowClient
from playwright.sync_api import sync_playwright

from tests.integration.conftest import API_KEY, Registry
from tests.integration.test_manager_page import CHROMIUM, CHROMIUM_FLAGS
from tests.integration.test_service_uvicorn import STARTUP_SECONDS, free_port, service_env

KEY = {"X-API-Key": API_KEY}
BIG_BODY = 15 * 2**20


class Service:
    """`dealcast serve` as a process; `base` is its address."""

    def __init__(
        self,
        registry: Registry,
        cwd: Path,
        *,
        workers: int = 1,
        wait_ready: bool = True,
        **env: str,
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        command = [sys.executable, "-m", "dealcast", "serve", "--port", str(self.port)]
        self.process = subprocess.Popen(
            [*command, "--workers", str(workers)],
            env=service_env(registry, **env),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if wait_ready:
            self.wait(lambda ready: ready.status_code == 200, what="ready")

    def wait(self, until: Any, *, what: str, seconds: float = STARTUP_SECONDS) -> dict[str, Any]:
        """Poll /ready until `until(response)` holds in every worker process; its last body."""
        deadline = time.monotonic() + seconds
        satisfied: dict[int, dict[str, Any]] = {}
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                response = httpx.get(f"{self.base}/ready", timeout=5)
                body = response.json()
                if until(response):
                    satisfied[body["process"]] = body
                    if len(satisfied) >= self.workers:
                        return body
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"the service was not {what}:\n{self.output}")

    def stop(self) -> None:
        """Kill the service and keep its output; again is a no-op."""
        if self.stopped:
            return
        if self.process.poll() is None:
            self.process.kill()
        self.output = self.process.communicate()[0]
        self.stopped = True

    output = ""
    stopped = False


@pytest.fixture(scope="module")
def service(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for the input tests, with the export folder for the page."""
    running = Service(
        registry, tmp_path_factory.mktemp("serve"), DEALCAST_DATA_DIR=str(registry.root / "world")
    )
    yield running
    running.stop()


def _connect(service: Service) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", service.port), timeout=30)
    return connection


def _head(path: str, *, length: int, key: str | None = None) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        "Content-Type: application/json",
        f"Content-Length: {length}",
    ]
    if key is not None:
        lines.append(f"X-API-Key: {key}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 response read off a raw socket (until the connection closes)."""
    data = b""
    while chunk := connection.recv(65536):
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), {k.lower(): v for k, v in headers.items()}, body


# --------------------------------------------------------------------------- item 1


@pytest.mark.parametrize("key", [None, "not-a-valid-key-0123"])
def test_a_body_without_a_valid_key_is_refused_before_it_is_read(
    service: Service, key: str | None
) -> None:
    """The head announces 15 MiB and not a byte of it is sent: the 401 comes anyway, and the
    connection is closed (before the fix the service waited for the body)."""
    with _connect(service) as connection:
        connection.sendall(_head("/v1/score", length=BIG_BODY, key=key))
        status, headers, body = _read_response(connection)
    assert status == 401
    assert headers["connection"] == "close"
    assert headers["www-authenticate"].startswith("Bearer")
    assert httpx.Response(401, content=body).json()["error"] == "unauthorized"


def _refusal(connection: socket.socket) -> int | str:
    """The status a refused client reads, or "reset": a connection closed while its body is
    still arriving may be reset by the kernel (the unread bytes) before the 401 is read."""
    try:
        return _read_response(connection)[0]
    except ConnectionResetError:
        return "reset"


def test_keyless_clients_holding_big_bodies_hold_nothing(service: Service) -> None:
    """20 keyless clients start 15 MiB bodies; each is refused (401) and cut off, while a
    client with a key is served."""
    connections = [_connect(service) for _ in range(20)]
    try:
        for connection in connections:
            connection.sendall(_head("/v1/attainment", length=BIG_BODY) + b"{" * 65536)
        statuses = [_refusal(connection) for connection in connections]
    finally:
        for connection in connections:
            connection.close()
    assert set(statuses) <= {401, "reset"}, statuses
    # Without body bytes in flight nothing is reset: the refusal itself is a 401.
    with _connect(service) as connection:
        connection.sendall(_head("/v1/attainment", length=BIG_BODY))
        assert _read_response(connection)[0] == 401
    assert httpx.get(f"{service.base}/v1/model", headers=KEY, timeout=30).status_code == 200


def test_a_slow_body_is_cut_off_with_408(registry: Registry, tmp_path: Path) -> None:
    """A byte every half second: the service answers 408 after its body timeout, while the
    client still has most of its body to send."""
    running = Service(registry, tmp_path, DEALCAST_BODY_TIMEOUT_SECONDS="2")
    try:
        length = 200
        with _connect(running) as connection:
            connection.sendall(_head("/v1/score", length=length, key=API_KEY))
            connection.settimeout(0.5)
            sent, answer = 0, b""
            while sent < length and not answer:
                connection.sendall(b" ")
                sent += 1
                with contextlib.suppress(TimeoutError):
                    answer = connection.recv(65536)
            connection.settimeout(30)
            while chunk := connection.recv(65536):
                answer += chunk
        assert sent < length, "the whole body was sent before any answer"
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert b'"error":"body_timeout"' in answer
        assert httpx.get(f"{running.base}/health", timeout=30).status_code == 200
    finally:
        running.stop()


def test_a_slow_request_head_is_closed(registry: Registry, tmp_path: Path) -> None:
    """A request head sent a byte every half second is closed after the header timeout,
    before it is complete (uvicorn on its own waited for it forever)."""
    running = Service(registry, tmp_path, DEALCAST_HEADER_TIMEOUT_SECONDS="2")
    try:
        head = _head("/v1/score", length=10, key=API_KEY)
        with _connect(running) as connection:
            connection.settimeout(0.5)
            sent, closed = 0, False
            while sent < len(head) and not closed:
                try:
                    connection.sendall(head[sent : sent + 1])
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                sent += 1
                try:
                    closed = connection.recv(1) == b""
                except TimeoutError:
                    pass
                except ConnectionResetError:
                    closed = True
        assert closed and sent < len(head), f"{sent} of {len(head)} bytes sent, closed={closed}"
        # An idle connection that never sends a byte is closed too.
        with _connect(running) as idle:
            idle.settimeout(30)
            assert idle.recv(1) == b""
    finally:
        running.stop()


def test_connections_past_the_cap_get_503(registry: Registry, tmp_path: Path) -> None:
    running = Service(
        registry, tmp_path, DEALCAST_MAX_CONNECTIONS="3", DEALCAST_HEADER_TIMEOUT_SECONDS="60"
    )
    try:
        held = [_connect(running) for _ in range(2)]
        time.sleep(0.5)  # the server has accepted both
        try:
            crowded = httpx.get(f"{running.base}/health", timeout=30)
        finally:
            for connection in held:
                connection.close()
        assert crowded.status_code == 503
        time.sleep(0.5)
        assert httpx.get(f"{running.base}/health", timeout=30).status_code == 200
    finally:
        running.stop()


# --------------------------------------------------------------------------- item 9


def test_past_max_queue_the_excess_gets_503_with_retry_after(
    registry: Registry, tmp_path: Path, open_deals: list[dict[str, Any]]
) -> None:
    """With DEALCAST_MAX_QUEUE=1 and one request in the service (its body still arriving),
    the next /v1 request is refused at once; /health is not counted; once the first is
    done, requests are served again."""
    running = Service(registry, tmp_path, DEALCAST_MAX_QUEUE="1")
    try:
        with _connect(running) as holder:
            holder.sendall(_head("/v1/score", length=1000, key=API_KEY) + b'{"deals": [')
            time.sleep(0.5)  # the held request is in the service
            refused = httpx.post(
                f"{running.base}/v1/score", json={"deals": open_deals[:1]}, headers=KEY, timeout=30
            )
            health = httpx.get(f"{running.base}/health", timeout=30)
        assert refused.status_code == 503, refused.text
        assert refused.headers["retry-after"] == "1"
        assert refused.json()["error"] == "overloaded"
        assert health.status_code == 200
        deadline = time.monotonic() + 30
        served = refused
        while served.status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
            served = httpx.post(
                f"{running.base}/v1/score", json={"deals": open_deals[:1]}, headers=KEY, timeout=30
            )
        assert served.status_code == 200, served.text
    finally:
        running.stop()


# --------------------------------------------------------------------------- item 2


def test_a_failed_model_load_is_retried_and_reported(registry: Registry, tmp_path: Path) -> None:
    """A load that fails is retried with backoff and reported: a file of the version's bundle
    goes missing from the store (a partial copy, a store being restored), so every load is
    refused naming it; /ready says why and when the next try is, the loads are retried, and
    once the file is back the service becomes ready without a restart. (Loads read a
    downloaded copy of the files, so a read-only artifact store no longer fails them:
    MLflow's `registered_model_meta` is written into the copy.)"""
    mlflow.set_tracking_uri(registry.tracking_uri)
    source = MlflowClient(registry.tracking_uri).get_model_version("dealcast", registry.version)
    folder = Path(mlflow.artifacts.download_artifacts(f"models:/dealcast/{registry.version}"))
    assert (folder / "MLmodel").exists(), source.source
    arrays = folder / "artifacts" / "bundle" / "arrays.npz"
    kept = tmp_path / "arrays.npz"
    shutil.move(arrays, kept)
    try:
        running = Service(
            registry,
            tmp_path,
            wait_ready=False,
            DEALCAST_MODEL_URI=f"models:/dealcast/{registry.version}",
            DEALCAST_LOAD_RETRY_SECONDS="0.5",
            DEALCAST_LOAD_RETRY_MAX_SECONDS="1",
        )
        try:
            failing = running.wait(
                lambda ready: (
                    ready.status_code == 503
                    and (ready.json()["last_load_failure"] or {}).get("attempts", 0) >= 3
                ),
                what="retrying the failed load",
            )
            failure = failing["last_load_failure"]
            assert "BundleRefused" in failure["reason"], failure
            assert "file arrays.npz of the manifest is missing" in failure["reason"], failure
            assert failure["next_attempt_at"] > failure["failed_at"]
            assert failing["reason"] == failure["reason"]
            shutil.move(kept, arrays)
            ready = running.wait(lambda ready: ready.status_code == 200, what="ready after the fix")
            assert ready["last_load_failure"] is None
            assert ready["model"]["version"] == registry.version
        finally:
            running.stop()
    finally:
        if kept.exists():
            shutil.move(kept, arrays)


# --------------------------------------------------------------------------- item 8


def test_ready_and_health_do_not_wait_for_the_scoring_threads(
    service: Service, registry: Registry
) -> None:
    """Four large explained batches: two occupy both scoring threads, two wait for one.
    /ready and /health, sent once the batches are in, are answered before the batches that
    wait for a thread are (before the fix /ready queued for a scoring thread behind them).
    A running batch may finish first: the probes share the GIL with both scoring threads."""
    deals = registry.deals(1000)  # every open deal of the test world (about 350)
    finished: list[str] = []
    lock = threading.Lock()

    def post_batch(name: str) -> None:
        response = httpx.post(
            f"{service.base}/v1/score",
            json={"deals": deals, "explain": True},
            headers=KEY,
            timeout=300,
        )
        with lock:
            finished.append(f"{name}:{response.status_code}")

    batches = [threading.Thread(target=post_batch, args=(f"batch{i}",)) for i in range(4)]
    for batch in batches:
        batch.start()
    time.sleep(0.5)  # the bodies are in; scoring one batch takes over a second
    for probe in ("/ready", "/health"):
        answer = httpx.get(f"{service.base}{probe}", timeout=300)
        with lock:
            finished.append(f"{probe}:{answer.status_code}")
    for batch in batches:
        batch.join(timeout=300)
    probes = [i for i, entry in enumerate(finished) if entry.startswith("/")]
    assert [finished[i] for i in probes] == ["/ready:200", "/health:200"], finished
    assert probes[-1] < 4, finished  # at least two batches were still to finish
    assert sorted(e for e in finished if e.startswith("batch")) == [
        f"batch{i}:200" for i in range(4)
    ], finished


# --------------------------------------------------------------------------- items 3, 5, 11


def _problems(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid_request"
    return {problem["path"]: problem["message"] for problem in body["problems"]}


def _attainment(deals: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "period": "2026-Q4",
        "quota": 100000.0,
        "won_to_date": 0.0,
        "owner_id": deals[0]["owner_id"] if deals else "REP-001",
        "deals": deals,
        **extra,
    }


@pytest.mark.parametrize("as_of", ["0001-01-01T00:00:00+01:00", "9999-12-31T00:00:00"])
def test_times_outside_the_calendar_are_422_naming_the_field(
    service: Service, open_deals: list[dict[str, Any]], as_of: str
) -> None:
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        score = http.post("/v1/score", json={"deals": open_deals[:1], "as_of": as_of})
        attainment = http.post("/v1/attainment", json=_attainment(open_deals[:1], as_of=as_of))
        team = open_deals[0]["owner"]["team"]
        page = http.get(f"/v1/teams/{team}/page", params={"as_of": as_of})
        # Each answer kept the connection open: a 500 closed it.
        assert http.get("/v1/model").status_code == 200
    assert "as_of" in _problems(score)
    assert "as_of" in _problems(attainment)
    assert "as_of" in _problems(page)


def test_a_deal_sent_twice_is_422_naming_the_repeats(
    service: Service, open_deals: list[dict[str, Any]]
) -> None:
    deals = [open_deals[0], open_deals[1], open_deals[0], open_deals[0]]
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        score = _problems(http.post("/v1/score", json={"deals": deals}))
        owner_deals = [open_deals[0], open_deals[0]]
        attainment = _problems(http.post("/v1/attainment", json=_attainment(owner_deals)))
    assert set(score) == {"deals[2].opportunity_id", "deals[3].opportunity_id"}
    assert "deals[0]" in score["deals[2].opportunity_id"]
    assert set(attainment) == {"deals[1].opportunity_id"}


def test_numbers_and_booleans_are_not_coerced(
    service: Service, open_deals: list[dict[str, Any]]
) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["history"][0]["amount"] = "100"
    deal["history"][-1]["amount"] = True
    body = {"deals": [deal], "explain": "yes", "top_k": "3"}
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        problems = _problems(http.post("/v1/score", json=body))
        attainment = _problems(
            http.post("/v1/attainment", json=_attainment(open_deals[:1], quota="5", explain=1))
        )
    last = len(deal["history"]) - 1
    assert {
        "deals[0].history[0].amount",
        f"deals[0].history[{last}].amount",
        "explain",
        "top_k",
    } <= set(problems)
    assert {"quota", "explain"} <= set(attainment)


def test_activities_before_the_deal_was_created_are_422(
    service: Service, open_deals: list[dict[str, Any]]
) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["activities"] = [{"occurred_at": "2000-01-01T00:00:00Z", "type": "call"}]
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        problems = _problems(http.post("/v1/score", json={"deals": [deal]}))
    assert problems == {"deals[0].activities[0].occurred_at": "before the deal's created_at"}


def test_long_input_is_cut_in_error_messages(
    service: Service, open_deals: list[dict[str, Any]]
) -> None:
    deal = copy.deepcopy(open_deals[0])
    deal["history"][0]["stage"] = "s" * 1000
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        problems = _problems(http.post("/v1/score", json={"deals": [deal]}))
    message = problems["deals[0].history[0].stage"]
    assert "'" + "s" * 80 + "...'" in message
    assert "s" * 81 not in message
    assert len(message) < 400


def test_a_trailing_slash_is_not_redirected_to_the_host_header(service: Service) -> None:
    response = httpx.get(
        f"{service.base}/v1/model/", headers={**KEY, "Host": "attacker.example"}, timeout=30
    )
    assert response.status_code == 404
    assert "location" not in response.headers
    assert "attacker.example" not in response.text


def test_the_docs_load_without_a_cdn(service: Service) -> None:
    """Swagger UI renders in Chromium with every request outside the service refused, and
    makes none; /redoc, whose bundle fetches its vendor's logo from a CDN, is not served."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Chromium is not installed (apt-get install chromium); CI runs this")
    outside: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS
        )
        try:
            page = browser.new_page()

            def route(route: Any) -> None:
                if route.request.url.startswith(service.base):
                    route.continue_()
                else:
                    outside.append(route.request.url)
                    route.abort()

            page.route("**/*", route)
            page.goto(f"{service.base}/docs", wait_until="networkidle")
            page.get_by_text("/v1/score", exact=True).first.wait_for(timeout=60_000)
        finally:
            browser.close()
    assert outside == []
    assert httpx.get(f"{service.base}/redoc", timeout=30).status_code == 404


# --------------------------------------------------------------------------- item 7


@pytest.mark.parametrize("currency", ["ZZZ", "JPY"])
def test_a_currency_the_model_has_no_rate_for_is_422(
    service: Service, open_deals: list[dict[str, Any]], currency: str
) -> None:
    """The test world is in USD without exchange rates: the model converts nothing else, so
    a deal in ZZZ or JPY is refused, each row named (it scored like the USD deal before)."""
    deal = copy.deepcopy(open_deals[0])
    for row in deal["history"]:
        row["currency"] = currency
    rows = {f"deals[0].history[{j}].currency" for j in range(len(deal["history"]))}
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        score = _problems(http.post("/v1/score", json={"deals": [deal]}))
        attainment = _problems(http.post("/v1/attainment", json=_attainment([deal])))
    assert set(score) == rows
    assert "USD" in score["deals[0].history[0].currency"]
    assert set(attainment) == rows


def test_amounts_in_the_models_currency_score_as_without_one(
    service: Service, registry: Registry, open_deals: list[dict[str, Any]]
) -> None:
    in_usd = copy.deepcopy(open_deals[0])
    bare = copy.deepcopy(open_deals[0])
    for usd, plain in zip(in_usd["history"], bare["history"], strict=True):
        usd["currency"] = "USD"
        plain.pop("currency", None)
    as_of = registry.end.isoformat()
    with httpx.Client(base_url=service.base, headers=KEY, timeout=60) as http:
        scores = [
            http.post("/v1/score", json={"deals": [deal], "as_of": as_of, "explain": False})
            for deal in (in_usd, bare)
        ]
    assert [response.status_code for response in scores] == [200, 200], scores[0].text
    first, second = (response.json()["scores"][0] for response in scores)
    assert first["win_probability"] == second["win_probability"]

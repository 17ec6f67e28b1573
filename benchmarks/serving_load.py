"""The scoring service under open-loop load, over loopback, as a client sees it.

Targets (issue 6), on a 2-core machine: one deal with explanations p50 <= 10 ms and p99 <=
30 ms at 50 requests per second; >= 200 requests per second sustained with p99 < 100 ms; a
1,000-deal batch without explanations in <= 300 ms.

Method. The real service (`dealcast serve`: uvicorn, one process) runs as a subprocess on
127.0.0.1, on a model trained into a temporary MLflow store (or the store given by
`--store`). The load generator is open-loop: request i is due at start + i / rate whatever
happened to earlier requests, and its latency runs from that due time to the last byte of
the answer, so a slow answer delays no later send and queueing is counted (no coordinated
omission). It is a small HTTP/1.1 keep-alive client on asyncio streams (a pool of
connections, a new one opened when all are busy), so that the generator, which shares the two
cores with the service, costs as little CPU as possible. Each rate runs a warm-up of 3 s
first, not counted. The batch is timed closed-loop, one request at a time, 7 times, and the
median reported. Requests are deals open at the end of a synthetic world, built with
`features.payload.deals_as_payloads`; the 1,000-deal batch repeats the open deals under new
ids when the world has fewer.

    python benchmarks/serving_load.py [--store DIR] [--seconds 20] [--rates 200,300,400]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from features.payload import deals_as_payloads
from features.synthetic import generate_world, write_world

API_KEY = "benchmark-key-0123456789"  # keys need 16 characters or more
WORLD_SEED = 7
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- the model


def train_store(root: Path, opportunities: int, *, seed: int = WORLD_SEED) -> None:
    """Train and register a model into an MLflow store under `root` (as the tests do), on a
    generated world written to `root/world`."""
    from training.backtest import BacktestConfig
    from training.train import TrainConfig, train

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{root / 'mlflow.db'}"
    cwd = Path.cwd()
    os.chdir(root)
    try:
        world = generate_world(n_opportunities=opportunities, seed=seed)
        write_world(world, root / "world")
        train(root / "world", config=TrainConfig(backtest=BacktestConfig(step="quarter", folds=2)))
    finally:
        os.chdir(cwd)


def open_deals(opportunities: int, count: int) -> list[dict[str, Any]]:
    """`count` open deals of the world as request payloads (repeated under new ids if
    the world has fewer)."""
    world = generate_world(n_opportunities=opportunities, seed=WORLD_SEED)
    tables = world.tables
    closed = set(world.stages.won_stages) | set(world.stages.lost_stages)
    history = tables["opportunity_history"].sort_values("changed_at")
    last = history.groupby("opportunity_id").tail(1)
    ids = sorted(last.loc[~last["stage"].isin(closed), "opportunity_id"].astype(str))
    deals = deals_as_payloads(tables, ids[:count])
    out = []
    for k in range(count):
        deal = dict(deals[k % len(deals)])
        if k >= len(deals):
            deal["opportunity_id"] = f"{deal['opportunity_id']}-copy{k // len(deals)}"
        out.append(deal)
    return out


# --------------------------------------------------------------------------- the service


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_service(
    store: Path,
    port: int,
    *,
    model_uri: str = "models:/dealcast@champion",
    data_dir: Path | None = None,
    ready_within: float = 120.0,
    workers: int = 1,
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """`dealcast serve` on the store's model, returned once `/ready` answers 200.
    `data_dir`: the export the page and the team forecast read (DEALCAST_DATA_DIR);
    `workers`: its worker processes; `settings`: more DEALCAST_* variables."""
    env = dict(os.environ)
    env.update(
        {
            "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
            "DEALCAST_API_KEYS": API_KEY,
            "DEALCAST_MODEL_URI": model_uri,
            **(settings or {}),
        }
    )
    if data_dir is not None:
        env["DEALCAST_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "dealcast", "serve", "--host", HOST, "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        env=env,
        cwd=store,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + ready_within
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{HOST}:{port}/ready", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"the service did not become ready in {ready_within:.0f} s")


# --------------------------------------------------------------------------- the client


def http_request(path: str, body: bytes, port: int) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nX-API-Key: {API_KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, request: bytes) -> int:
        """Send one request, read the whole answer; the status code."""
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:  # the server closed an idle keep-alive connection
            raise ConnectionResetError("connection closed")
        status = int(status_line.split()[1])
        length = 0
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


@dataclass
class RunResult:
    rate: float
    seconds: float
    sent: int
    latencies_ms: np.ndarray
    errors: int
    connections: int
    # (status, ms from due time to answer) of every measured request that got an answer
    answers: list[tuple[int, float]] = field(default_factory=list)
    # ms from due time to the request's first byte written: the generator's own lag (the
    # machine's cores are shared), which the latencies include
    send_lags_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "rate_rps": self.rate,
            "seconds": self.seconds,
            "requests": self.sent,
            "errors": self.errors,
            "achieved_rps": round(len(lat) / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 2),
            "p90_ms": round(float(np.percentile(lat, 90)), 2),
            "p99_ms": round(float(np.percentile(lat, 99)), 2),
            "max_ms": round(float(lat.max()), 2),
            "connections_used": self.connections,
            "send_lag_p99_ms": round(float(np.percentile(self.send_lags_ms, 99)), 2)
            if self.send_lags_ms
            else None,
        }


async def open_loop(
    port: int, requests: Sequence[bytes], *, rate: float, seconds: float, warmup: float = 3.0
) -> RunResult:
    """Send at `rate` per second for warmup + seconds; latencies of the measured part, from
    each request's due time."""
    idle: list[Connection] = []
    opened = 0
    latencies: list[float] = []
    answers: list[tuple[int, float]] = []
    send_lags: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.05
    total = int((warmup + seconds) * rate)
    first_counted = int(warmup * rate)
    tasks: list[asyncio.Task[None]] = []

    async def one(i: int, due: float) -> None:
        nonlocal opened, errors
        request = requests[i % len(requests)]
        connection = idle.pop() if idle else None
        try:
            if connection is not None:
                try:
                    lag = loop.time() - due
                    status = await connection.exchange(request)
                except ConnectionResetError:
                    connection.writer.close()
                    connection = None
            if connection is None:
                opened += 1
                connection = Connection(*await asyncio.open_connection(HOST, port))
                lag = loop.time() - due
                status = await connection.exchange(request)
        except (OSError, ValueError, IndexError, asyncio.IncompleteReadError):
            errors += i >= first_counted
            if connection is not None:
                connection.writer.close()
            return
        done = loop.time()
        idle.append(connection)
        if i >= first_counted:
            send_lags.append(lag * 1000)
            answers.append((status, (done - due) * 1000))
            if status == 200:
                latencies.append((done - due) * 1000)
            else:
                errors += 1

    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
    await asyncio.gather(*tasks)
    for connection in idle:
        connection.writer.close()
    return RunResult(
        rate=rate,
        seconds=seconds,
        sent=total - first_counted,
        latencies_ms=np.array(latencies),
        errors=errors,
        connections=opened,
        answers=answers,
        send_lags_ms=send_lags,
    )


def timed_batches(port: int, body: bytes, repeats: int) -> list[float]:
    times = []
    headers = {"X-API-Key": API_KEY, "Content-Type": "application/json"}
    with httpx.Client(base_url=f"http://{HOST}:{port}", timeout=60) as http:
        http.post("/v1/score", content=body, headers=headers)  # warm
        for _ in range(repeats):
            start = time.perf_counter()
            response = http.post("/v1/score", content=body, headers=headers)
            times.append((time.perf_counter() - start) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"batch failed: {response.status_code} {response.text[:300]}")
    return times


# --------------------------------------------------------------------------- in process


def breakdown(store: Path, deals: list[dict[str, Any]], *, explain: bool, repeats: int) -> dict:
    """Median ms of each step of a /v1/score request, in process (no HTTP, no thread hop):
    where the time goes, to compare with the end-to-end figures."""
    from models.bundle import load_model
    from serving.checks import check_deals
    from serving.model_store import LoadedModel
    from serving.present import score_response
    from serving.schemas import ScoreRequest

    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    model = load_model("models:/dealcast@champion")
    loaded = LoadedModel(
        model=model, uri="", name="dealcast", version=None, alias=None, run_id=None
    )
    body = json.dumps({"deals": deals, "explain": explain}).encode()
    steps: dict[str, list[float]] = {}

    def timed(name: str, work: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = work(*args, **kwargs)
        steps.setdefault(name, []).append((time.perf_counter() - start) * 1000)
        return out

    def dicts(request: ScoreRequest) -> list[dict[str, Any]]:
        return [deal.model_dump() for deal in request.deals]

    for _ in range(repeats + 1):
        raw = timed("json_parse", json.loads, body)
        request = timed("validate_schema", ScoreRequest.model_validate, raw)
        timed("check_rules", check_deals, request.deals, loaded.stages)
        payloads = timed("payload_dicts", dicts, request)
        scores = timed(
            "scorer_score (models/, features/)",
            loaded.scorer.score,
            payloads,
            as_of=None,
            explain=explain,
        )
        response = timed("present", score_response, scores, loaded)
        timed("serialize", response.model_dump_json)
    return {name: round(statistics.median(times[1:]), 2) for name, times in steps.items()}


# --------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="existing MLflow store folder (mlflow.db)")
    parser.add_argument("--opportunities", type=int, default=4000, help="world size")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per rate")
    parser.add_argument("--rates", default="200,250,300,400", help="rates to try for (b)")
    parser.add_argument("--batch-repeats", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp)
        if not (store / "mlflow.db").exists():
            train_store(store, args.opportunities)
        deals = open_deals(args.opportunities, 1000)
        port = free_port()
        load_before = os.getloadavg()
        process = start_service(store, port)
        try:
            explained = [
                http_request("/v1/score", json.dumps({"deals": [d]}).encode(), port)
                for d in deals[:200]
            ]
            plain = [
                http_request(
                    "/v1/score", json.dumps({"deals": [d], "explain": False}).encode(), port
                )
                for d in deals[:200]
            ]
            one_deal = asyncio.run(open_loop(port, explained, rate=50, seconds=args.seconds))
            print("one deal, explained, 50 rps:", one_deal.summary(), flush=True)
            sustained: dict[str, list[dict[str, Any]]] = {"explain_false": [], "explain_true": []}
            for name, requests in (("explain_false", plain), ("explain_true", explained)):
                for rate in (float(r) for r in args.rates.split(",")):
                    run = asyncio.run(open_loop(port, requests, rate=rate, seconds=args.seconds))
                    sustained[name].append(run.summary())
                    print(f"{name} {rate:.0f} rps:", run.summary(), flush=True)
                    if run.errors or float(np.percentile(run.latencies_ms, 99)) >= 100:
                        break
            batch_body = json.dumps({"deals": deals, "explain": False}).encode()
            batch = timed_batches(port, batch_body, args.batch_repeats)
            print("1,000-deal batch (ms):", [round(t, 1) for t in batch], flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
        load_after = os.getloadavg()
        steps = {
            "one_deal_explained": breakdown(store, deals[:1], explain=True, repeats=200),
            "batch_1000_no_explain": breakdown(store, deals, explain=False, repeats=5),
        }
        print("in-process breakdown (median ms):", steps, flush=True)

    def best_rate(runs: list[dict[str, Any]]) -> float | None:
        ok = [r["rate_rps"] for r in runs if r["errors"] == 0 and r["p99_ms"] < 100]
        return max(ok) if ok else None

    one = one_deal.summary()
    save(
        "serving_load",
        {
            "method": (
                "real service (dealcast serve, uvicorn, 1 process) on 127.0.0.1; open-loop "
                "constant-rate load from an asyncio HTTP/1.1 keep-alive client on the same "
                "machine; latency from each request's scheduled send time to the end of its "
                "answer (no coordinated omission); 3 s warm-up per rate, not counted; batch "
                "timed closed-loop, median of repeats"
            ),
            "model": f"trained on a {args.opportunities}-deal synthetic world (seed {WORLD_SEED})",
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "one_deal_explained_50rps": one,
            "sustained": sustained,
            "max_sustained_rps_p99_under_100ms": {
                name: best_rate(runs) for name, runs in sustained.items()
            },
            "in_process_breakdown_median_ms": steps,
            "batch_1000_no_explain_ms": {
                "median": round(statistics.median(batch), 1),
                "min": round(min(batch), 1),
                "max": round(max(batch), 1),
                "repeats": len(batch),
                "body_bytes": len(batch_body),
            },
            "targets": {
                "one_deal_p50_ms<=10": one["p50_ms"] <= 10,
                "one_deal_p99_ms<=30": one["p99_ms"] <= 30,
                "sustained>=200rps_p99<100ms": (best_rate(sustained["explain_false"]) or 0) >= 200,
                "batch_1000_median_ms<=300": statistics.median(batch) <= 300,
            },
        },
    )


if __name__ == "__main__":
    main()

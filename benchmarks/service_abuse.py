"""The service under abuse (issue 15): keyless clients with big bodies, and load past capacity.

Targets, on a 2-core machine: (a) with 20 keyless clients holding 15 MiB bodies, a client
with a key sending one explained deal at 50 requests per second keeps its p99 under 30 ms;
(b) at twice the sustainable rate, the excess is answered 503 quickly and the p99 of the
answered requests stays under 100 ms.

Method. The real service (`dealcast serve`, one worker process, default settings: the
DEALCAST_MAX_QUEUE bound among them) runs on 127.0.0.1 on a model trained into a temporary
MLflow store (or `--store`), started and loaded by `benchmarks.serving_load`, whose open-loop
generator (latency from each request's due time, no coordinated omission) sends the
legitimate load. (a) 20 attacker threads each open a connection, announce a 15 MiB body
without a key and send it in 64 KiB chunks for as long as the service reads, then open the
next connection 0.1 s after the service closes theirs; the service's resident memory is
sampled meanwhile. (b) The sustainable rate of one explained deal per request is the highest
of `--rates` with no error and p99 under 100 ms (each is tried: on a shared machine a rate
may fail between two that pass); then the load runs at twice that, and the
answers are split into served (200) and refused (503 with Retry-After).

    python benchmarks/service_abuse.py [--store DIR] [--seconds 20] [--rates 60,90,120,150]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.record import save
from benchmarks.serving_load import (
    HOST,
    RunResult,
    free_port,
    http_request,
    open_deals,
    open_loop,
    start_service,
    train_store,
)

BIG_BODY = 15 * 2**20
CHUNK = b"[" * 65536
ATTACKERS = 20


class Attackers:
    """Keyless clients that keep trying to hand the service a 15 MiB body."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.attempts = Counter[str]()
        self.sent_bytes = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _run(self) -> None:
        head = (
            f"POST /v1/score HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {BIG_BODY}\r\n\r\n"
        ).encode("ascii")
        while not self.stop.is_set():
            outcome, sent = "closed", 0
            try:
                with socket.create_connection((HOST, self.port), timeout=10) as connection:
                    connection.sendall(head)
                    connection.setblocking(False)
                    while sent < BIG_BODY and not self.stop.is_set():
                        try:
                            answer = connection.recv(256)
                            outcome = answer.split(b" ", 2)[1].decode() if answer else "closed"
                            break
                        except BlockingIOError:
                            pass
                        try:
                            sent += connection.send(CHUNK)
                        except BlockingIOError:
                            time.sleep(0.001)
                    else:
                        outcome = "held whole body"
            except OSError as error:
                outcome = type(error).__name__
            with self.lock:
                self.attempts[outcome] += 1
                self.sent_bytes += sent
            self.stop.wait(0.1)

    def __enter__(self) -> Attackers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=30)


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (the uvicorn worker), in MiB."""
    total = 0.0
    for candidate in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{candidate}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
    return total


def _children(pid: int) -> list[int]:
    try:
        return [
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ]
    except OSError:
        return []


def percentile(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if len(values) else None


def split(run: RunResult) -> dict[str, Any]:
    """The answers of a run: served (200) and refused (503), with their latencies."""
    served = [ms for status, ms in run.answers if status == 200]
    refused = [ms for status, ms in run.answers if status == 503]
    return {
        "rate_rps": run.rate,
        "seconds": run.seconds,
        "requests": run.sent,
        "served": len(served),
        "refused_503": len(refused),
        "other_statuses": dict(
            Counter(str(status) for status, _ in run.answers if status not in (200, 503))
        ),
        "no_answer": run.sent - len(run.answers),
        "served_p50_ms": percentile(served, 50),
        "served_p99_ms": percentile(served, 99),
        "refused_p50_ms": percentile(refused, 50),
        "refused_p99_ms": percentile(refused, 99),
        "send_lag_p99_ms": percentile(run.send_lags_ms, 99),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, help="existing MLflow store folder (mlflow.db)")
    parser.add_argument("--opportunities", type=int, default=4000, help="world size")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds per run")
    parser.add_argument("--rates", default="60,90,120,150,180", help="rates tried for (b)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        store = args.store or Path(tmp)
        if not (store / "mlflow.db").exists():
            train_store(store, args.opportunities)
        deals = open_deals(args.opportunities, 200)
        port = free_port()
        explained = [
            http_request("/v1/score", json.dumps({"deals": [deal]}).encode(), port)
            for deal in deals
        ]
        load_before = os.getloadavg()
        process = start_service(store, port)
        try:
            quiet = asyncio.run(open_loop(port, explained, rate=50, seconds=args.seconds))
            print("50 rps, no attackers:", quiet.summary(), flush=True)
            rss_before = rss_mib(process.pid)
            samples: list[float] = []
            with Attackers(port, ATTACKERS) as attackers:
                sampling = threading.Event()

                def sample() -> None:
                    while not sampling.wait(0.5):
                        samples.append(rss_mib(process.pid))

                sampler = threading.Thread(target=sample, daemon=True)
                sampler.start()
                attacked = asyncio.run(open_loop(port, explained, rate=50, seconds=args.seconds))
                sampling.set()
                sampler.join()
            print("50 rps, 20 keyless 15 MiB clients:", attacked.summary(), flush=True)
            print("attackers:", dict(attackers.attempts), flush=True)

            ramp: list[dict[str, Any]] = []
            sustainable = None
            for rate in (float(r) for r in args.rates.split(",")):
                run = asyncio.run(open_loop(port, explained, rate=rate, seconds=args.seconds / 2))
                ramp.append(split(run))
                print(f"{rate:.0f} rps:", ramp[-1], flush=True)
                served_p99 = ramp[-1]["served_p99_ms"]
                if not run.errors and served_p99 is not None and served_p99 < 100:
                    sustainable = rate  # the highest that passed (a noisy rate may fail between)
            if sustainable is None:
                raise RuntimeError(f"no rate of {args.rates} was sustainable")
            overload = split(
                asyncio.run(open_loop(port, explained, rate=2 * sustainable, seconds=args.seconds))
            )
            print(f"2 x {sustainable:.0f} rps:", overload, flush=True)
        finally:
            process.terminate()
            process.wait(timeout=60)
        load_after = os.getloadavg()

    attacked_summary = attacked.summary()
    save(
        "service_abuse",
        {
            "method": (
                "real service (dealcast serve, 1 worker process, default limits) on 127.0.0.1; "
                "open-loop one-deal explained /v1/score load from benchmarks.serving_load's "
                "generator (latency from the due time, 3 s warm-up per run not counted); "
                f"(a) {ATTACKERS} keyless clients each announcing a 15 MiB body and sending it "
                "in 64 KiB chunks as long as the service reads, reconnecting 0.1 s after "
                "being closed; (b) the highest sustainable rate of --rates (no error, p99 < "
                "100 ms), then twice that rate"
            ),
            "contention": (
                "the machine's 2 cores are shared with the load generator, the attackers "
                "and other work; load average before/after given"
            ),
            "load_average_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
            "keyless_big_bodies": {
                "quiet_50rps": quiet.summary(),
                "attacked_50rps": attacked_summary,
                "attacker_attempts_by_outcome": dict(attackers.attempts),
                "attacker_bytes_sent_mib": round(attackers.sent_bytes / 2**20, 1),
                "service_rss_mib_before": round(rss_before, 1),
                "service_rss_mib_max_during": round(max(samples), 1) if samples else None,
            },
            "overload": {"ramp": ramp, "sustainable_rps": sustainable, "twice": overload},
            "targets": {
                "attacked_p99_ms<30": attacked_summary["p99_ms"] < 30,
                "twice_rate_served_p99_ms<100": (overload["served_p99_ms"] or 1e9) < 100,
                "twice_rate_excess_refused": overload["refused_503"] > 0,
            },
        },
    )


if __name__ == "__main__":
    main()

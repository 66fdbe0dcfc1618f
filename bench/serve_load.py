"""Load test of ``rnnkit serve``, against 127.0.0.1 only, bounded in count and time.

1. ``--requests`` (2,000) requests from ``--clients`` (32) concurrent clients: none lost,
   none malformed, no 5xx; throughput and p50 / p90 / p99 latency; the server's RSS
   after the first tenth of the requests and after all of them (within 10 %).
2. ``--max-queue 8`` and 64 clients: every request answered 200 or 503 (none hangs or
   is dropped) and ``/health`` answers 200 all along.
3. ``--compare``: throughput at ``--clients`` with dynamic batching against the same
   server with ``--max-batch 1``, greedy and beam 5.

Usage: python bench/serve_load.py CHECKPOINT [--requests 2000] [--clients 32] [--compare]
Every server it starts runs one torch thread and is stopped (SIGTERM) when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from rnnkit.cli.commands import positive_int
from rnnkit.serve.launch import started

TEXTS = [
    "9th of May, 2018", "5/9/18", "sun, 25 dec 2005", "March 3 1999", "12.07.2011",
    "tuesday, 4 june 1985", "1 jan 2000", "the 22nd of october 1976", "7/30/01", "aug 9, 2024",
]  # fmt: skip


@dataclass
class Stats:
    """What one load run saw."""

    codes: Counter = field(default_factory=Counter)  # status code (or "lost" / "malformed")
    latencies: list[float] = field(default_factory=list)  # seconds, answered requests
    seconds: float = 0.0

    @property
    def n(self) -> int:
        return sum(self.codes.values())

    def quantile(self, q: float) -> float:
        xs = sorted(self.latencies)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")

    def line(self) -> str:
        outcomes = dict(sorted(self.codes.items(), key=str))
        return (
            f"{self.n} requests in {self.seconds:.1f} s: {self.n / self.seconds:.1f} req/s; "
            f"latency p50 {1000 * self.quantile(0.5):.1f} ms, p90 {1000 * self.quantile(0.9):.1f} "
            f"ms, p99 {1000 * self.quantile(0.99):.1f} ms; outcomes {outcomes}"
        )


def rss_mib(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


class Connection:
    """A bare keep-alive HTTP/1.1 client: a load generator that costs the shared CPUs
    far less than a full client, so the server is what is measured."""

    def __init__(self, url: str) -> None:
        m = re.match(r"http://([^:/]+):(\d+)/", url)
        assert m is not None, url
        self.host, self.port = m.group(1), int(m.group(2))
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json"
            f"\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:  # the server closed the connection
            raise ConnectionResetError("connection closed before a response")
        status = int(status_line.split()[1])
        headers = {}
        while (line := await reader.readline()) not in (b"\r\n", b""):
            k, v = line.decode("latin-1").split(":", 1)
            headers[k.strip().lower()] = v.strip()
        data = await reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, headers, data

    def close(self) -> None:
        if self.streams is not None:
            self.streams[1].close()
            self.streams = None


def _check(status: int, data: bytes, n_texts: int) -> str:
    if status != 200:
        return str(status)
    try:
        t = json.loads(data)["translations"]
        ok = len(t) == n_texts and all(isinstance(x["text"], str) for x in t)
    except (ValueError, KeyError, TypeError):
        ok = False
    return "200" if ok else "malformed"


async def load(
    url: str, requests: int, clients: int, beam: int = 1, time_limit: float = 300.0
) -> Stats:
    """``requests`` POST /translate from ``clients`` concurrent clients, one text each;
    a request unanswered within 60 s counts as lost."""
    stats, counter = Stats(), iter(range(requests))
    deadline = time.monotonic() + time_limit

    async def client() -> None:
        conn = Connection(url)
        for i in counter:
            if time.monotonic() > deadline:
                stats.codes["not sent (time limit)"] += 1
                continue
            body = json.dumps({"text": TEXTS[i % len(TEXTS)], "beam": beam}).encode()
            start = time.perf_counter()
            try:
                status, _, data = await asyncio.wait_for(conn.post("/translate", body), 60)
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError) as e:
                stats.codes[f"lost ({type(e).__name__})"] += 1
                conn.close()
                continue
            stats.latencies.append(time.perf_counter() - start)
            stats.codes[_check(status, data, 1)] += 1
        conn.close()

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    stats.seconds = time.perf_counter() - start
    return stats


async def overload(url: str, requests: int, clients: int) -> tuple[Stats, Counter]:
    """:func:`load` while ``/health`` is polled every 50 ms; returns both outcomes."""
    health: Counter = Counter()
    done = asyncio.Event()

    async def poll() -> None:
        async with httpx.AsyncClient(timeout=10) as http:
            while not done.is_set():
                try:
                    health[(await http.get(url + "health")).status_code] += 1
                except httpx.HTTPError as e:
                    health[type(e).__name__] += 1
                await asyncio.sleep(0.05)

    poller = asyncio.create_task(poll())
    stats = await load(url, requests, clients)
    done.set()
    await poller
    return stats, health


def steady(checkpoint: str, requests: int, clients: int) -> dict:
    """Phase 1: no loss, no 5xx, no malformed answer; RSS after 1/10 and after all."""
    with started(checkpoint) as (url, proc):
        first = asyncio.run(load(url, requests // 10, clients))
        rss_first = rss_mib(proc.pid)
        rest = asyncio.run(load(url, requests - requests // 10, clients))
        rss_all = rss_mib(proc.pid)
    stats = Stats(first.codes + rest.codes, first.latencies + rest.latencies)
    stats.seconds = first.seconds + rest.seconds
    return {"stats": stats, "rss_first": rss_first, "rss_all": rss_all}


def saturated(checkpoint: str, requests: int, clients: int = 64) -> tuple[Stats, Counter]:
    """Phase 2: --max-queue 8 and 64 clients: 200 or 503 only, /health always 200."""
    with started(checkpoint, "--max-queue", "8") as (url, _):
        return asyncio.run(overload(url, requests, clients))


def compare(checkpoint: str, requests: int, clients: int, beam: int) -> tuple[Stats, Stats]:
    """Phase 3: dynamic batching against --max-batch 1 at the same load."""
    out = []
    for extra in ((), ("--max-batch", "1")):
        with started(checkpoint, *extra) as (url, _):
            asyncio.run(load(url, 2 * clients, clients, beam))  # warm-up
            out.append(asyncio.run(load(url, requests, clients, beam)))
    return out[0], out[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint")
    p.add_argument("--requests", type=positive_int, default=2000)
    p.add_argument("--clients", type=positive_int, default=32)
    p.add_argument("--compare", action="store_true", help="also batching vs --max-batch 1")
    p.add_argument("--compare-requests", type=positive_int, default=1000)
    args = p.parse_args(argv)
    ok = True
    s = steady(args.checkpoint, args.requests, args.clients)
    st = s["stats"]
    bad = st.n - st.codes["200"]
    growth = s["rss_all"] / s["rss_first"] - 1
    print(f"steady, {args.clients} clients: {st.line()}")
    print(f"  RSS after {args.requests // 10}: {s['rss_first']:.1f} MiB, after {args.requests}: "
          f"{s['rss_all']:.1f} MiB ({100 * growth:+.1f} %)")  # fmt: skip
    ok &= bad == 0 and abs(growth) <= 0.10
    sat, health = saturated(args.checkpoint, args.requests // 2)
    print(f"--max-queue 8, 64 clients: {sat.line()}; /health {dict(health)}")
    ok &= set(sat.codes) <= {"200", "503"} and set(health) == {200}
    if args.compare:
        for beam in (1, 5):
            batched, single = compare(args.checkpoint, args.compare_requests, args.clients, beam)
            ratio = (batched.n / batched.seconds) / (single.n / single.seconds)
            print(f"beam {beam}, {args.clients} clients: dynamic batching "
                  f"{batched.n / batched.seconds:.1f} req/s, --max-batch 1 "
                  f"{single.n / single.seconds:.1f} req/s: {ratio:.2f}x")  # fmt: skip
            print(f"  batched: {batched.line()}\n  max-batch 1: {single.line()}")
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

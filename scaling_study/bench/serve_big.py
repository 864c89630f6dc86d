"""The big-study case of `scaling-study bench serve`: one run whose records.csv is about
`--big-mb` MB (50 by default: some 80,000 evaluations), served beside the synthetic root.

On a fresh start of the service it measures over HTTP:

- the run's detail (`GET /api/studies/ID`): the first request (cold: the file is read and the
  curve decimated), then repeats (warm), and how many points its curve carries;
- `--big-clients` clients, each asking for that detail every `CLIENT_PACE_S` (a page reloaded
  twice a second: far more than a page asks, which reads the detail once and then holds its event
  stream), while one page polls the studies list: the list's latency meanwhile (median and p95)
  and the service's peak memory.
"""
from __future__ import annotations

import random
import statistics
import threading
import time
from pathlib import Path
from urllib.parse import quote

from scaling_study import layout
from scaling_study.bench import positive_int
from scaling_study.bench import serve_kit as serve

TARGETS = {"detail": 1.0, "list": 0.1, "rss_mib": 1024.0}
"""Seconds for the big run's detail and the studies list meanwhile; the service's peak memory (MiB)."""
RUN_NAME = "big_run"
CLIENT_PACE_S = 0.5


def add_arguments(p) -> None:
    p.add_argument("--big-mb", type=float, default=50.0, metavar="MB",
                   help="size of the big run's records.csv; 0 skips the big-study case (default: %(default)s)")
    p.add_argument("--big-clients", type=positive_int, default=20,
                   help="clients asking for the big run's detail at once (default: %(default)s)")


def write_big_run(root: Path, mb: float) -> Path:
    """A run folder under `root` whose records.csv holds about `mb` MB of evaluations, written in
    chunks (the rows of one trial of the bench's synthetic sweeps, continued)."""
    folder = root / RUN_NAME
    folder.mkdir(parents=True, exist_ok=True)
    sweep = serve.Sweep(0, 1, 0)
    rng = random.Random(0)
    path = folder / layout.RECORDS
    with open(path, "w") as fh:
        fh.write(serve.records_text([]))  # the header
        e = 0
        while fh.tell() < mb * 1e6:
            chunk = [serve.trial_row(sweep, 0, e + k, rng) for k in range(1000)]
            fh.write(serve.records_text(chunk).split("\n", 1)[1])
            e += len(chunk)
    return folder


def _client(server: serve.Server, url: str, stop: threading.Event, seen: list) -> None:
    """Ask for `url` every `CLIENT_PACE_S` until `stop`; the answer is read whole, not parsed (the
    bench's own threads share the machine with the service)."""
    conn = server.connection()
    try:
        while not stop.wait(CLIENT_PACE_S):
            t0 = time.perf_counter()
            conn.request("GET", quote(url, safe="/:?=&"))
            reply = conn.getresponse()
            reply.read()
            if reply.status == 200:
                seen.append(time.perf_counter() - t0)
    finally:
        conn.close()


def measure(server: serve.Server, sid: str, clients: int, repeats: int) -> dict:
    """The big run's detail cold and warm, then the studies list and the service's memory while
    `clients` clients ask for that detail."""
    url = f"/api/studies/{sid}"
    conn = server.connection()
    cold, detail = serve.get(conn, url)
    points = max((len(rows) for rows in detail.get("evaluations", {}).values()), default=0)
    warm = [serve.get(conn, url)[0] for _ in range(repeats)]
    stop, details = threading.Event(), []
    threads = [threading.Thread(target=_client, args=(server, url, stop, details), daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    listing, rss = [], [server.rss_mib()]
    try:
        for _ in range(repeats):
            time.sleep(0.1)
            listing.append(serve.get(conn, "/api/studies")[0])
            rss.append(server.rss_mib())
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        conn.close()
    return {"cold": cold, "warm": warm, "points": points, "n_evals": detail["trials"][0]["n_evals"],
            "list": listing, "rss": max(rss), "loaded": details}


def figures(result: dict, clients: int) -> list[tuple[str, float, float | None]]:
    """(figure, seconds, target) lines for `serve.table`."""
    lst = result["list"]
    return [
        (f"big run detail, cold ({result['points']} of {result['n_evals']:,} points)", result["cold"], TARGETS["detail"]),
        (f"big run detail, warm median of {len(result['warm'])}", statistics.median(result["warm"]), TARGETS["detail"]),
        (f"studies list, {clients} clients on big run, median", statistics.median(lst), TARGETS["list"]),
        (f"studies list, {clients} clients on big run, p95", serve.quantile(lst, 0.95), TARGETS["list"]),
        (f"big run detail, to {clients} clients, p95 of {len(result['loaded'])}",
         serve.quantile(result["loaded"] or [float("nan")], 0.95), TARGETS["detail"]),
    ]


def memory_line(result: dict, clients: int) -> str:
    verdict = "met" if result["rss"] < TARGETS["rss_mib"] else "NOT met"
    return (f"big run, service memory with {clients} clients: {result['rss']:,.0f} MiB "
            f"(< {TARGETS['rss_mib']:,.0f} MiB) {verdict}")

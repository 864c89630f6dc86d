"""`scaling-study bench serve`: the study service on a large results root.

Writes a synthetic root (`--studies` sweeps of `--trials` trials with `--evals` evaluations each,
laid out as real sweeps are), starts the real service on it (`scaling-study serve` in a
subprocess, on 127.0.0.1 and a free port) and measures over HTTP:

- the studies list: the first request after the start (cold), then the median and p95 of
  repeated requests (warm);
- one study with every evaluation: the first request for each of a few studies (cold), then
  repeats (warm);
- push: `--clients` clients hold the event stream of a running study open while rows are added
  to one of its trials' records.csv the way the Train controller adds them (the whole file
  replaced: the old rows plus the new one); each client notes when each row arrives;
- a big study (`serve_big`): one run with a records file of `--big-mb` MB, its detail cold and
  warm, and the studies list and the service's memory while `--big-clients` clients ask for it.

It prints each figure against its target (met / NOT met). Nothing here asserts a time: the
targets are the ones this machine (2 cores) is held to.
"""
from __future__ import annotations

import json
import math
import shutil
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

from scaling_study import layout
from scaling_study.bench import positive_int
from scaling_study.bench.serve_kit import Server, Sweep, get, quantile, records_text
from scaling_study.contract import HP_PREFIX

TARGETS = {"list_cold": 1.0, "list_warm": 0.1, "study": 0.3, "push_p95": 2.0}
"""Seconds: the studies list cold and warm (median), one study (cold and warm), push at p95."""


def add_arguments(p) -> None:
    p.add_argument("--studies", type=positive_int, default=1000, help="sweeps in the root (default: %(default)s)")
    p.add_argument("--trials", type=positive_int, default=20, help="trials per sweep (default: %(default)s)")
    p.add_argument("--evals", type=positive_int, default=50, help="evaluations per trial (default: %(default)s)")
    p.add_argument("--clients", type=positive_int, default=20,
                   help="clients holding the study's event stream open (default: %(default)s)")
    p.add_argument("--pushes", type=positive_int, default=20, help="rows added while they watch (default: %(default)s)")
    p.add_argument("--interval", type=float, default=0.7, metavar="S",
                   help="seconds between added rows (default: %(default)s)")
    p.add_argument("--repeats", type=positive_int, default=20,
                   help="requests per warm figure (default: %(default)s)")
    p.add_argument("--root", default=None,
                   help="write the synthetic root here (an empty or missing folder; default: a temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the root afterwards (it is removed otherwise)")
    from scaling_study.bench import serve_big

    serve_big.add_arguments(p)


# --- the synthetic root -----------------------------------------------------------------------

def _steer():
    from scaling_study.tune import steer  # imports Ray: not when the command line is only built

    return steer


def _replace(path: Path, text: str) -> None:
    """Write `path` all at once (a new file renamed over the old), as the product writes its files."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def write_trial(root: Path, sweep: Sweep, t: int, evals: int) -> list[dict]:
    """Trial `t`'s folder (params.json, records.csv) with its first `evals` evaluations; their rows."""
    trial = root / sweep.name / layout.TRIALS_DIR / sweep.trial_ids[t]
    trial.mkdir(parents=True, exist_ok=True)
    (trial / layout.PARAMS).write_text(json.dumps({"trial_id": sweep.trial_ids[t], "params": sweep.params(t)}))
    rows = sweep.rows(t, evals)
    _replace(trial / layout.RECORDS, records_text(rows))
    return rows


def write_status(root: Path, sweep: Sweep) -> None:
    """steer/status.json as the sweep's `SweepStatus` keeps it (a fresh heartbeat while running)."""
    steer = _steer()
    state = steer.RUNNING if sweep.running else steer.FINISHED
    doc = {"state": state, "started_at": time.time() - 3600, "heartbeat_at": time.time(), "pid": 1,
           "info": {"name": sweep.name, "trials_planned": sweep.n_trials,
                    "scheduler": {"name": "asha", "metric": "f1", "mode": "max", "time_attr": "samples",
                                  "grace_period": 640, "reduction_factor": 2, "max_t": 20 * sweep.evals * 16 * 8}},
           "trials": {tid: {"state": state, "at": time.time()} for tid in sweep.trial_ids}}
    (root / sweep.name / layout.STEER_DIR).mkdir(exist_ok=True)
    _replace(root / sweep.name / layout.STEER_DIR / layout.STATUS_FILE, json.dumps(doc))


def write_sweep(root: Path, sweep: Sweep) -> None:
    """One sweep's folder: its trials, steer/status.json and, once finished, what gathering
    writes that the service reads (trials.csv) and ASHA's state."""
    keys = list(sweep.params(0))
    lines = [",".join(["trial_id", "status", "stopped_early", *(HP_PREFIX + k for k in keys), "samples",
                       "train_time_s", "wall_time_s", "last_f1", "error", "best_f1"])]
    for t, trial_id in enumerate(sweep.trial_ids):
        rows = write_trial(root, sweep, t, sweep.evals)
        last = rows[-1]
        lines.append(",".join([trial_id, "DONE", "False", *(str(sweep.params(t)[k]) for k in keys), str(last["samples"]),
                               *(repr(last[c]) for c in ("train_time_s", "wall_time_s", "f1")), "",
                               repr(max(r["f1"] for r in rows))]))
    write_status(root, sweep)
    if not sweep.running:
        (root / sweep.name / layout.TRIALS_FILE).write_text("\n".join(lines) + "\n")
        (root / sweep.name / layout.ASHA_STATE).write_text(json.dumps(
            {"metric": "f1", "mode": "max", "time_attr": "samples", "num_stopped": 0, "brackets": [[]], "trial_bracket": {}}))


MARKER = ".bench-serve.json"
"""Written into a synthetic root: its sizes, so that `--root` can reuse it (a dot-file: not a study)."""


def prepare_root(root: Path, studies: int, trials: int, evals: int) -> tuple[list[Sweep], bool]:
    """The sweeps of the synthetic root at `root`, written unless the folder already holds this
    one (from `--keep`); (sweeps, whether it was reused). UserError for a folder with anything else."""
    from scaling_study.errors import UserError

    sizes = {"studies": studies, "trials": trials, "evals": evals}
    sweeps = [Sweep(i, trials, evals) for i in range(studies)]
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()) == sizes:
        write_trial(root, sweeps[0], 0, evals)  # the trial a previous push grew
        return sweeps, True
    if root.exists() and any(root.iterdir()):
        raise UserError(f"--root {root}: not empty and not a synthetic root of these sizes ({sizes}); "
                        "give an empty or missing folder")
    root.mkdir(parents=True, exist_ok=True)
    for sweep in sweeps:
        write_sweep(root, sweep)
    marker.write_text(json.dumps(sizes))
    return sweeps, False


# --- the service and its clients --------------------------------------------------------------

def measure_list(server: Server, repeats: int) -> dict:
    """The studies list: cold, then polled (as a page without its event stream polls) until
    every study is read, then warm repeats."""
    conn = server.connection()
    t0 = time.perf_counter()
    cold, listed = get(conn, "/api/studies")
    reading = []
    while any(s.get("loading") for s in listed["studies"]):
        time.sleep(0.5)
        elapsed, listed = get(conn, "/api/studies")
        reading.append(elapsed)
    complete = time.perf_counter() - t0
    warm = []
    for _ in range(repeats):
        time.sleep(0.1)  # a page's pace, not a load test; spans the service's 1 s re-listing
        warm.append(get(conn, "/api/studies")[0])
    conn.close()
    return {"cold": cold, "complete": complete, "reading": reading or [math.nan], "warm": warm,
            "n": len(listed["studies"]), "rss": server.rss_mib()}


def measure_study(server: Server, ids: list[str], repeats: int) -> dict:
    """One study with every evaluation: the first request for each of `ids`, then repeats."""
    conn = server.connection()
    cold = [get(conn, f"/api/studies/{sid}")[0] for sid in ids]
    warm = [get(conn, f"/api/studies/{sid}")[0] for _ in range(repeats) for sid in ids]
    conn.close()
    return {"cold": cold, "warm": warm}


class Watcher:
    """One client holding a study's event stream open; notes when each step of `trial` arrives."""

    def __init__(self, server: Server, sid: str, trial: str):
        self.conn, self.sid, self.trial = server.connection(timeout=60.0), sid, trial
        self.arrived: dict[int, float] = {}
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.conn.request("GET", quote(f"/api/studies/{self.sid}/events", safe="/:"))
            reply = self.conn.getresponse()
            event, data = None, []
            while line := reply.readline():
                line = line.rstrip(b"\r\n")
                if line.startswith(b"event: "):
                    event = line[7:].decode()
                elif line.startswith(b"data: "):
                    data.append(line[6:])
                elif not line and event:
                    self._take(event, json.loads(b"\n".join(data)))
                    event, data = None, []
        except (OSError, ValueError):
            pass  # closed by `close`

    def _take(self, event: str, detail: dict) -> None:
        now = time.monotonic()
        for row in detail.get("evaluations", {}).get(self.trial, []):
            self.arrived.setdefault(int(row["step"]), now)
        if event == "snapshot":
            self.ready.set()

    def close(self) -> None:
        try:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        except (OSError, AttributeError):
            pass
        self.thread.join(5)
        self.conn.close()


def measure_push(server: Server, root: Path, sweep: Sweep, args) -> dict:
    """Write→arrival latency of rows added to `sweep`'s first trial, at each of `args.clients`
    clients; the sweep's heartbeat is kept fresh meanwhile, as its driver would keep it."""
    sid, trial = f"0:{sweep.name}", sweep.trial_ids[0]
    write_status(root, sweep)
    watchers = [Watcher(server, sid, trial) for _ in range(args.clients)]
    written: dict[int, float] = {}
    try:
        if not all(w.ready.wait(60) for w in watchers):
            raise RuntimeError(f"not every client received the snapshot of {sid} within 60 s")
        rows, beat = sweep.rows(0, sweep.evals + args.pushes), time.monotonic()
        path = root / sweep.name / layout.TRIALS_DIR / trial / layout.RECORDS
        for k in range(sweep.evals, sweep.evals + args.pushes):
            if time.monotonic() - beat > _steer().HEARTBEAT_S:  # as the sweep's driver keeps it fresh
                write_status(root, sweep)
                beat = time.monotonic()
            _replace(path, records_text(rows[:k + 1]))
            written[rows[k]["step"]] = time.monotonic()
            time.sleep(args.interval)
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline and not all(set(written) <= set(w.arrived) for w in watchers):
            time.sleep(0.1)
    finally:
        for w in watchers:
            w.close()
    latencies = [w.arrived[step] - at for w in watchers for step, at in written.items() if step in w.arrived]
    lost = sum(step not in w.arrived for w in watchers for step in written)
    return {"latencies": latencies, "lost": lost, "expected": len(written) * len(watchers), "rss": server.rss_mib()}


# --- the report -------------------------------------------------------------------------------

def _ms(seconds: float) -> str:
    if math.isnan(seconds):
        return "-"
    return f"{seconds * 1e3:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def table(args, listing: dict, study: dict, push: dict, mib: float, big: dict | None = None) -> str:
    """Every figure with its target and verdict, one line each."""
    lat, warm, reads = push["latencies"] or [math.inf], listing["warm"], study["warm"]
    figures = [
        ("studies list, cold (first request)", listing["cold"], TARGETS["list_cold"]),
        ("studies list, every study read", listing["complete"], None),
        (f"studies list while they are read, max of {len(listing['reading'])}", max(listing["reading"]), None),
        (f"studies list, warm median of {len(warm)}", statistics.median(warm), TARGETS["list_warm"]),
        ("studies list, warm p95", quantile(warm, 0.95), TARGETS["list_warm"]),
        (f"one study, cold (slowest of {len(study['cold'])})", max(study["cold"]), TARGETS["study"]),
        (f"one study, warm median of {len(reads)}", statistics.median(reads), TARGETS["study"]),
        ("one study, warm p95", quantile(reads, 0.95), TARGETS["study"]),
        (f"push, write -> client, p50 of {len(push['latencies'])}", quantile(lat, 0.5), None),
        ("push, write -> client, p95", quantile(lat, 0.95), TARGETS["push_p95"]),
        ("push, write -> client, max", max(lat), None),
    ]
    if big is not None:
        from scaling_study.bench import serve_big

        figures += serve_big.figures(big, args.big_clients)
    lines = [f"\n# scaling-study bench serve: {args.studies} studies x {args.trials} trials x {args.evals} evaluations "
             f"({args.studies * args.trials * args.evals:,} rows, {mib:,.0f} MiB of records.csv), {args.clients} clients",
             f"{'figure':44} {'value':>10}  {'target':>11}  verdict"]
    for name, value, target in figures:
        verdict = "" if target is None else "met" if value <= target else "NOT met"
        lines.append(f"{name:44} {_ms(value):>10}  {'<= ' + _ms(target) if target else '':>11}  {verdict}".rstrip())
    lines.append(f"rows that never arrived: {push['lost']} of {push['expected']}; service memory: "
                 f"{listing['rss']:,.0f} MiB with every study read, {push['rss']:,.0f} MiB after the push "
                 "(a second start that read only the studies asked for)")
    if big is not None:
        from scaling_study.bench import serve_big

        lines.append(serve_big.memory_line(big, args.big_clients))
    return "\n".join(lines)


def _big_study(root: Path, args) -> dict:
    """The big-study case (`serve_big`) on a third fresh start, serving the root and the big run."""
    from scaling_study.bench import serve_big

    big_root = Path(tempfile.mkdtemp(prefix="scaling-study-bench-big-"))
    try:
        serve_big.write_big_run(big_root, args.big_mb)
        server = Server(root, big_root)
        try:
            return serve_big.measure(server, f"1:{serve_big.RUN_NAME}", args.big_clients, args.repeats)
        finally:
            server.stop()
    finally:
        shutil.rmtree(big_root, ignore_errors=True)


def main(args) -> int:
    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="scaling-study-bench-serve-"))
    t0 = time.perf_counter()
    sweeps, reused = prepare_root(root, args.studies, args.trials, args.evals)
    print(f"root: {root} ({'reused' if reused else f'written in {time.perf_counter() - t0:.0f} s'})", flush=True)
    ids = [f"0:{s.name}" for s in sweeps[1::max(1, len(sweeps) // 4)][:4] or sweeps[:1]]  # finished sweeps
    try:
        server = Server(root)  # a fresh start: the list is the first request
        try:
            listing = measure_list(server, args.repeats)
        finally:
            server.stop()
        server = Server(root)  # another fresh start: each study's first request reads it
        try:
            study = measure_study(server, ids, args.repeats)
            push = measure_push(server, root, sweeps[0], args)
        finally:
            server.stop()
        big = _big_study(root, args) if args.big_mb > 0 else None
        mib = sum(p.stat().st_size for p in root.glob("*/*/*/records.csv")) / 2**20
        print(table(args, listing, study, push, mib, big))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept: {root}")
    return 0

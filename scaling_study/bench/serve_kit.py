"""What the `bench serve` cases share: the synthetic sweeps they write (`Sweep`, rows with every
column of the records contract) and the real service in a subprocess with its HTTP client."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys
import time
from http.client import HTTPConnection
from pathlib import Path
from urllib.parse import quote

from scaling_study.contract import COLUMNS

RUNNING_EVERY = 50
"""One sweep in this many is still running (a fresh heartbeat); the others have finished."""
_OPTIMIZERS = ("lamb", "lans", "lars", "adamw", "radam")
_WORKERS = (1, 2, 4, 8)


class Sweep:
    """What the bench writes for one sweep, deterministic in its index."""

    def __init__(self, index: int, trials: int, evals: int):
        self.index, self.n_trials, self.evals = index, trials, evals
        self.name = f"sweep_{index:05d}"
        self.running = index % RUNNING_EVERY == 0
        self.trial_ids = [f"{index:05d}_{t:05d}" for t in range(trials)]

    def params(self, t: int) -> dict:
        return {"optimizer.name": _OPTIMIZERS[t % len(_OPTIMIZERS)], "scaling.num_workers": _WORKERS[t % len(_WORKERS)],
                "optimizer.lr": [1e-4, 3e-4, 1e-3, 3e-3][(t // 4) % 4]}

    def rows(self, t: int, evals: int) -> list[dict]:
        """The first `evals` evaluations of trial `t` (the same values on every call)."""
        rng = random.Random(self.index * 100_003 + t)
        return [trial_row(self, t, e, rng) for e in range(evals)]


def trial_row(sweep: Sweep, t: int, e: int, rng: random.Random) -> dict:
    """Evaluation `e` (from 0) of trial `t`: every contract column, values shaped like a run's."""
    p = sweep.params(t)
    n, batch, trial_id = p["scaling.num_workers"], 16, sweep.trial_ids[t]
    step = 20 * (e + 1)
    f1 = 90.0 * (1 - math.exp(-(e + 1) / (8 + t % 7))) + rng.uniform(-1.5, 1.5)
    return {
        "run_id": trial_id, "trial_id": trial_id, "task": "squad", "model": "tiny", "optimizer": p["optimizer.name"],
        "lr": p["optimizer.lr"] * (1 - e / (sweep.evals + 1)), "peak_lr": p["optimizer.lr"], "lr_rule": "sqrt",
        "per_worker_batch": batch, "grad_accum": 1, "num_workers": n, "global_batch": batch * n,
        "scaling_mode": "weak", "seed": t % 3, "device": "cpu", "phase": 1, "seq_len": 128, "step": step,
        "samples": step * batch * n, "train_time_s": step * 0.27 * rng.uniform(0.95, 1.05),
        "wall_time_s": 20 + step * 0.3 * rng.uniform(0.95, 1.05), "throughput": batch * n / 0.27 * rng.uniform(0.9, 1.1),
        "loss": 3.5 * math.exp(-e / 15) + rng.uniform(0, 0.1), "f1": f1, "em": f1 * 0.8, "mlm_acc": None,
        "eval_loss": None, "time_compute_s": 0.2 * rng.uniform(0.9, 1.1), "time_allreduce_s": 0.03 * (n > 1),
        "time_optimizer_s": 0.04 * rng.uniform(0.9, 1.1),
        "grad_noise_scale": 40.0 * rng.uniform(0.8, 1.2) if n > 1 else None,
        "grad_norm_sq": 2.0 * rng.uniform(0.8, 1.2) if n > 1 else None,
        "grad_trace": 80.0 * rng.uniform(0.8, 1.2) if n > 1 else None, "target_metric": "f1", "target_value": 80.0,
        "target_reached": f1 >= 80.0,
    }


def records_text(rows: list[dict]) -> str:
    """records.csv as pandas writes it: the contract's columns, full-precision floats, empty for missing."""
    cell = lambda v: "" if v is None else repr(v) if isinstance(v, float) else str(v)  # noqa: E731
    return "\n".join([",".join(c.name for c in COLUMNS), *(",".join(cell(r[c.name]) for c in COLUMNS) for r in rows)]) + "\n"


class Server:
    """`scaling-study serve ROOT... --port 0` in a subprocess; `url` once it listens."""

    def __init__(self, *roots: Path):
        self.proc = subprocess.Popen([sys.executable, "-m", "scaling_study.cli", "serve", *map(str, roots), "--port", "0"],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "http://" not in line:
            self.stop()
            raise RuntimeError(f"the service did not start (it printed {line!r})")
        self.url = line.split("http://", 1)[1].split()[0].rstrip("/")
        self.host, self.port = self.url.rsplit(":", 1)

    def connection(self, timeout: float = 600.0):
        return HTTPConnection(self.host, int(self.port), timeout=timeout)

    def rss_mib(self) -> float:
        """The service's resident memory (Linux; NaN elsewhere)."""
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except OSError:
            return math.nan
        return next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS:")), math.nan)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except Exception:  # noqa: BLE001 - it would not stop: make sure it is gone
            self.proc.kill()
            self.proc.wait()


def get(conn, path: str) -> tuple[float, dict]:
    """(seconds until the whole answer was read, the parsed JSON) of GET `path` on `conn`."""
    t0 = time.perf_counter()
    conn.request("GET", quote(path, safe="/:?=&"))
    reply = conn.getresponse()
    body = reply.read()
    elapsed = time.perf_counter() - t0
    if reply.status != 200:
        raise RuntimeError(f"GET {path}: {reply.status} {body[:200]!r}")
    return elapsed, json.loads(body)


def quantile(values: list[float], q: float) -> float:
    """The `q` quantile (nearest rank) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

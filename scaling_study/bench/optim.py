"""`scaling-study bench optim`: optimizer step time over BERT-base's parameters, against AdamW.

Builds the parameter set of ``BertForPreTraining(BertConfig())`` (shapes only, on the meta
device; random values; no download) on ``--device`` (``cpu``, default, or ``cuda``), gives every
parameter a random gradient, and times each optimizer's ``step()`` in this process: ``--rounds``
rounds, in each a fresh instance of every optimizer takes ``--warmup`` untimed steps (allocating
its state) and ``--steps`` timed ones.
Ratios are taken within a round (AdamW's step in the same round is the denominator), so other
load on the machine shifts both sides alike; the table shows the median and fastest step, the
median of the per-round ratios and the ratio of the fastest steps.

The bandwidth bound: the in-process memory bandwidth (the best of a sum, an in-place scale, an
in-place axpy and an in-place addcmul over a parameter-sized float32 tensor) turned into the time
an Adam-like step needs to read w, g, m, v and write w, m, v once — 7 × 4 bytes per parameter.
It is an estimate, not a hard floor: torch's fused AdamW streams four tensors at once and can
move its bytes faster than these single-stream kernels (x_bound below 1).

On CUDA, steps are timed with CUDA events recorded between consecutive steps (one synchronisation
per optimizer and round, after its last step): a step's time is the GPU's, or the host's where
launching the kernels takes longer than running them. Beside it the table shows the host's own
time per step (``host_ms``: the median wall time of a ``step()`` call, which returns once its
kernels are queued) and the kernels and copies one step puts on the GPU (``launches``, counted by
torch's profiler); on the CPU both say ``-``. LAMB, LANS and LARS run the fused Triton kernels
there (``impl="fused"``), which need Triton; the ``:foreach`` rows run torch's kernels.

A benchmark, not a test: nothing here asserts a time.
"""
from __future__ import annotations

import argparse
import csv
import platform
import re
import statistics
import sys
import time
from dataclasses import dataclass, field

from scaling_study.errors import UserError

SPECS = {  # name -> (registry key, kwargs)
    "adamw:fused": ("adamw", {"fused": True}),
    "adamw:foreach": ("adamw", {"foreach": True}),
    "lamb": ("lamb", {"impl": "fused"}),
    "lans": ("lans", {"impl": "fused"}),
    "lars": ("lars", {"impl": "fused"}),
    "radam": ("radam", {"foreach": True}),
    "lamb:foreach": ("lamb", {"impl": "foreach"}),
    "lans:foreach": ("lans", {"impl": "foreach"}),
    "lars:foreach": ("lars", {"impl": "foreach"}),
}
DEFAULT = "adamw:fused,adamw:foreach,lamb,lans,lars,radam,lamb:foreach,lans:foreach"
BASELINES = ("adamw:fused", "adamw:foreach")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=10, help="timed steps per optimizer per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per optimizer per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds over all optimizers")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--optimizers", default=DEFAULT, type=_spec_list,
                   help=f"comma-separated, from: {', '.join(SPECS)} (default: {DEFAULT})")
    p.add_argument("--csv", metavar="OUT", default=None, help="also write the table as CSV")
    p.add_argument("--device", default="cpu", type=_device,
                   help="where the parameters live: cpu (default), cuda or cuda:N")


def _device(text: str) -> str:
    """argparse type: ``cpu``, ``cuda`` or ``cuda:N`` (checked without importing torch)."""
    if not re.fullmatch(r"cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    return text


def _check_device(device: str):
    """The ``torch.device`` to bench on; a UserError where CUDA is asked for and absent."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"bench optim --device {device}: CUDA is not available here (torch "
                            f"{torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); "
                            "use --device cpu")
        if (dev.index or 0) >= torch.cuda.device_count():
            raise UserError(f"bench optim --device {device}: there are "
                            f"{torch.cuda.device_count()} CUDA devices (cuda:0 to "
                            f"cuda:{torch.cuda.device_count() - 1})")
    return dev


def _spec_list(text: str) -> list[str]:
    specs = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in specs if s not in SPECS]
    if unknown or not specs:
        raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; expected a comma-separated "
                                         f"list from: {', '.join(SPECS)}")
    return specs


@dataclass
class Timing:
    name: str
    times_ms: list[float] = field(default_factory=list)
    round_medians: list[float] = field(default_factory=list)
    host_ms: list[float] = field(default_factory=list)
    """Host wall time of each timed ``step()`` call (CUDA only: on the CPU it is the step)."""
    launches: int | None = None
    """Kernels and copies one step puts on the GPU (CUDA only)."""


def bert_base_params(seed: int = 0, device="cpu"):
    """Parameters with BERT-base pretraining shapes (random values, float32) with gradients, on
    ``device`` (the same values on every device: they are drawn on the CPU)."""
    import torch
    from transformers import BertConfig, BertForPreTraining

    with torch.device("meta"):
        shapes = [p.shape for p in BertForPreTraining(BertConfig()).parameters()]
    gen = torch.Generator().manual_seed(seed)
    params = [torch.nn.Parameter((torch.randn(s, generator=gen) * 0.02).to(device))
              for s in shapes]
    for p in params:
        p.grad = (torch.randn(p.shape, generator=gen) * 1e-3).to(device)
    return params


def bandwidth_gbps(numel: int, repeats: int = 10, device="cpu") -> float:
    """Best GB/s of four streaming kernels over ``numel`` float32: a sum (1 access per element),
    an in-place scale (2), axpy (3) and addcmul (4) — the fastest is the closest to the bound."""
    import torch

    x, y, z = (torch.full((numel,), 1.0, device=device) for _ in range(3))
    kernels = [(x.sum, 1), (lambda: x.mul_(0.999), 2), (lambda: y.add_(x, alpha=1e-3), 3),
               (lambda: z.addcmul_(x, y, value=1e-3), 4)]
    best = 0.0
    for fn, accesses in kernels:
        fn()
        seconds = min(_timed(fn, 1, device)[0][0] for _ in range(repeats))
        best = max(best, accesses * 4 * numel / seconds / 1e9)
    return best


def _timed(fn, times: int = 1, device="cpu") -> tuple[list[float], list[float]]:
    """Seconds of each of ``times`` consecutive calls of ``fn``, and the host's seconds in each
    call: wall time on the CPU (both the same); on CUDA, the time between CUDA events recorded
    around each call, read after one synchronisation, and the wall time of the call itself."""
    import torch

    host = []
    if torch.device(device).type != "cuda":
        for _ in range(times):
            start = time.perf_counter()
            fn()
            host.append(time.perf_counter() - start)
        return host, host
    events = [torch.cuda.Event(enable_timing=True) for _ in range(times + 1)]
    events[0].record()
    for event in events[1:]:
        start = time.perf_counter()
        fn()
        host.append(time.perf_counter() - start)
        event.record()
    events[-1].synchronize()
    return [a.elapsed_time(b) / 1e3 for a, b in zip(events, events[1:])], host


def count_launches(fn, device) -> int | None:
    """Kernels and copies one call of ``fn`` puts on the GPU (torch's profiler); None on a CPU."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize(device)
    return sum(1 for e in prof.events() if e.device_type == DeviceType.CUDA)


def run(specs: list[str], params, steps: int, warmup: int, rounds: int,
        device="cpu") -> dict[str, Timing]:
    """Time each optimizer's step, round-robin; one optimizer's state in memory at a time."""
    import torch

    from scaling_study.optim import build_optimizer

    timings = {spec: Timing(spec) for spec in specs}
    for r in range(rounds):
        for spec in specs:
            key, kwargs = SPECS[spec]
            opt = build_optimizer(key, params, lr=1e-4, weight_decay=0.01, **kwargs)
            for _ in range(warmup):  # allocates the state: first-touch page faults are not timed
                opt.step()
            if torch.device(device).type == "cuda":
                torch.cuda.synchronize(device)  # the warm-up's kernels are not timed either
            device_s, host_s = _timed(opt.step, steps, device)
            times = [t * 1e3 for t in device_s]
            if r == 0:
                timings[spec].launches = count_launches(opt.step, device)
            del opt
            timings[spec].host_ms += [t * 1e3 for t in host_s]
            timings[spec].times_ms += times
            timings[spec].round_medians.append(statistics.median(times))
            print(f"  round {r + 1}/{rounds} {spec}: median {statistics.median(times):.1f} ms",
                  file=sys.stderr, flush=True)
    return timings


def table(timings: dict[str, Timing], bound_ms: float) -> list[dict[str, str]]:
    """One row per optimizer: step times, ratios to each baseline (median of the per-round
    ratios, and ratio of the fastest steps, which other load on the machine disturbs least) and
    the fastest step over the bandwidth bound."""
    rows = []
    for name, t in timings.items():
        row = {"optimizer": name, "median_ms": f"{statistics.median(t.times_ms):.1f}",
               "min_ms": f"{min(t.times_ms):.1f}"}
        for base in BASELINES:
            if base in timings:
                b = timings[base]
                ratios = [x / y for x, y in zip(t.round_medians, b.round_medians)]
                row[f"x_{base}"] = (f"{statistics.median(ratios):.2f} (min "
                                    f"{min(t.times_ms) / min(b.times_ms):.2f})")
        row["x_bound(min)"] = f"{min(t.times_ms) / bound_ms:.2f}"
        cuda = t.launches is not None
        row["host_ms"] = f"{statistics.median(t.host_ms):.2f}" if cuda else "-"
        row["launches"] = str(t.launches) if cuda else "-"
        rows.append(row)
    return rows


def measure(specs: list[str], *, device: str = "cpu", steps: int = 10, warmup: int = 2,
            rounds: int = 3) -> list[dict[str, str]]:
    """The table's rows for ``specs`` over BERT-base's parameters on ``device`` (what ``main``
    prints, for callers in Python: the GPU check)."""
    dev = _check_device(device)
    params = bert_base_params(device=dev)
    numel = sum(p.numel() for p in params)
    bound_ms = 7 * 4 * numel / (bandwidth_gbps(numel, device=dev) * 1e9) * 1e3
    return table(run(specs, params, steps, warmup, rounds, dev), bound_ms)


def print_table(rows: list[dict[str, str]]) -> None:
    cols = list(rows[0])
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in cols}
    print("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        print("  ".join(r[c].ljust(widths[c]) for c in cols))


def main(args: argparse.Namespace) -> int:
    import torch

    specs = args.optimizers if isinstance(args.optimizers, list) else _spec_list(args.optimizers)
    device = _check_device(getattr(args, "device", "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command:", " ".join(["scaling-study", *sys.argv[1:]]))
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else platform.processor() or platform.machine())
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}: {where}")
    params = bert_base_params(device=device)
    numel = sum(p.numel() for p in params)
    gbps = bandwidth_gbps(numel, device=device)
    bound_ms = 7 * 4 * numel / (gbps * 1e9) * 1e3
    print(f"BERT-base: {len(params)} tensors, {numel / 1e6:.1f} M float32 parameters; "
          f"bandwidth {gbps:.1f} GB/s -> Adam-like step bound {bound_ms:.1f} ms")
    print(f"{args.rounds} rounds x {args.steps} timed steps per optimizer (after {args.warmup} "
          "untimed); x_BASE: median of per-round ratios (ratio of fastest steps)")
    rows = table(run(specs, params, args.steps, args.warmup, args.rounds, device), bound_ms)
    print_table(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.csv}")
    return 0

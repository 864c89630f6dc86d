"""The study page's recommendation panel: for N GPUs on a chosen interconnect, from the runs of
one device, the optimizer, batch, LR, accumulation and time to target that the report's
recommendation gives (`answers.recommend.recommend` with `answers.plan.PlanOptions`, as they are).
"""
from __future__ import annotations

import math
import re

from scaling_study.answers.device import NAMED
from scaling_study.answers.links import DEFAULT_CLUSTER, LINKS, parse_cluster
from scaling_study.answers.plan import PlanOptions
from scaling_study.answers.recommend import recommend
from scaling_study.errors import UserError
from scaling_study.results.targets import resolve_target

MAX_GPUS = 65_536
DEVICE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
CLUSTER = re.compile(r"^[a-z0-9+\-]{1,40}$")
_NETWORKS = ("", "+8xnet400", "+8xnet100", "+1xnet100")


def interconnects() -> list[str]:
    """The cluster specs the panel offers: each intra-node link alone, and with common networks."""
    intra = [name for name in LINKS if not name.startswith("net")]
    return [f"{i}{n}" for i in intra for n in _NETWORKS]


def _plain(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value.item() if hasattr(value, "item") else value


PROFILE_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class Profiles:
    """The device profiles a panel offers by name: the named ones (`answers.device.NAMED`) and
    the files the operator gave `serve --device-profile FILE` (measured by `bench profile` on the
    GPU projected), each loaded once at start and offered by its file's stem. A page chooses a
    name, never a path."""

    def __init__(self, specs: list[str] = ()):
        from pathlib import Path

        from scaling_study.answers.device import load_device_profile

        self.loaded = {}
        for spec in specs:
            profile = load_device_profile(spec)  # UserError naming the file, the key and what is valid
            name = spec if spec in NAMED else Path(spec).stem
            if spec not in NAMED and (name in NAMED or name in self.loaded or not PROFILE_NAME.match(name)):
                raise UserError(f"--device-profile {spec}: offered as {name!r}, which "
                                + ("another profile already is" if name in NAMED or name in self.loaded
                                   else "is not a plain name") + "; rename the file (letters, digits, . _ -)")
            self.loaded[name] = profile

    def names(self) -> list[str]:
        return sorted(NAMED) + sorted(n for n in self.loaded if n not in NAMED)

    def get(self, name: str):
        """The profile (a name `PlanOptions` loads, or the loaded file) offered as `name`."""
        if name in self.loaded:
            return self.loaded[name]
        if name in NAMED:
            return name
        raise UserError(f"device profile {name!r}: valid: {', '.join(self.names())}")


NAMED_ONLY = Profiles()


def profiles() -> list[str]:
    """The named device profiles (`answers.device.NAMED`)."""
    return NAMED_ONLY.names()


def panel(records, gpus: int, cluster: str | None, device: str | None, profile: str | None = None,
          offered: Profiles = NAMED_ONLY) -> dict:
    """{row (the recommendation's columns, with its 95 % interval; None when the records carry no
    target), why, target, plan, devices, device, profiles, profile, cluster}: the runs on `device`,
    projected with the compute of the device profile `profile`, one of `offered` (None: the runs'
    own timings, which a projection onto GPU links refuses where they come from CPUs); UserError
    naming what is not valid."""
    chosen = offered.get(profile) if profile is not None else None
    if not isinstance(gpus, int) or not 1 <= gpus <= MAX_GPUS:
        raise UserError(f"gpus: a whole number from 1 to {MAX_GPUS}")
    cluster = cluster or DEFAULT_CLUSTER
    if not CLUSTER.match(cluster):
        raise UserError(f"interconnect {cluster!r}: e.g. {DEFAULT_CLUSTER}")
    parse_cluster(cluster)  # UserError naming the valid links
    devices = sorted(records["device"].dropna().astype(str).unique()) if "device" in records.columns else []
    if device is not None and (not DEVICE.match(device) or device not in devices):
        raise UserError(f"device {device!r}: the records ran on {', '.join(devices) or 'no recorded device'}")
    device = device or (devices[0] if devices else None)
    rows = records[records["device"].astype(str) == device] if device else records
    answer = {"row": None, "why": None, "target": None, "plan": None, "devices": devices, "device": device,
              "profiles": offered.names(), "profile": profile, "cluster": cluster}
    try:
        target = resolve_target(rows)
    except UserError as exc:
        return {**answer, "why": f"no recommendation: {exc}"}
    if target is None:
        return {**answer, "why": "no recommendation: the runs carry no target (eval.target in their job)"}
    try:
        plan, plan_note = PlanOptions(cluster=cluster, device_profile=chosen).resolve(rows)
    except UserError as exc:  # measured rows only; the note says why nothing is projected
        plan, plan_note = None, str(exc)
    table = recommend(rows, target, [gpus], plan)
    row = {k: _plain(v) for k, v in table.iloc[0].to_dict().items()}
    return {**answer, "row": row, "target": str(target), "plan": plan_note}

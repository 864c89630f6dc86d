"""The interconnects a projection is made for: links with their measured bus bandwidth and
latency, and clusters built from them ("nvlink4+8xnet400").

Kept apart from `projection` (numpy, pandas) so that the command line can list the valid names
in its help without loading them. Sources of every constant: docs/answers.md and each `Link`.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from scaling_study.errors import UserError

GB = 1e9
US = 1e-6
ALGORITHMS = ("ring", "hierarchical")
# No traceable multi-node measurement checks either algorithm (docs/answers.md); hierarchical
# predicts the lower bus bandwidth across nodes, the conservative choice.
DEFAULT_ALGORITHM = "hierarchical"
# What a report projects to unless told otherwise (`--cluster`): a DGX H100/H200 node, eight
# GPUs on NVLink 4 with eight 400 Gb/s NICs, the usual building block of large BERT runs.
DEFAULT_CLUSTER = "nvlink4+8xnet400"


@dataclass(frozen=True)
class Link:
    """One kind of link: bus bandwidth β (bytes/s, nccl-tests' busbw) and per-step latency α (s)."""

    name: str
    bandwidth: float
    latency: float
    source: str


# α: NCCL's Ring/Simple hardware latency per step (hwLat in src/graph/tuning.cc of NVIDIA/nccl at
# commit b647562, NCCL 2.20.3 by its makefiles/version.mk, a 2024 release: NVLink 3.4 µs, PCI
# 5.7 µs, NET 14.0 µs — the 2020 file at 01afd20 had NET 9.6 µs). β: ring all-reduce bus bandwidth
# (nccl-tests' busbw) with NVLink SHARP (NVLS) off — NVLS reduces inside the switch and is not a
# ring; it is not modelled.
_TUNING = "α: NVIDIA/nccl src/graph/tuning.cc@b647562 (NCCL 2.20.3) hwLat Ring/Simple"
LINKS: dict[str, Link] = {link.name: link for link in (
    Link("pcie4", 25 * GB, 5.7 * US, "PCIe 4.0 x16: 31.5 GB/s per direction (PCI-SIG); 80 % of it assumed "
         f"(no published ring busbw found); {_TUNING} PCI"),
    Link("nvlink3", 235 * GB, 3.4 * US, "A100 SXM + NVSwitch: 300 GB/s per direction; NCCL's model caps A100 "
         f"busbw at 235 GB/s (tuning.cc@01afd20, compCap80); {_TUNING} NVLink"),
    Link("nvlink4", 370 * GB, 3.4 * US, "H100/H200 SXM + NVSwitch, ring (NCCL_ALGO=Ring): 370 GB/s, 450 GB/s "
         "line rate less ~20 % protocol overhead (NCCL maintainer, NVIDIA/nccl-tests#212, 2024-05-06; "
         f"365-370 GB/s on 2-8 H100s, NVIDIA/nccl#1455, 2024-09-19); {_TUNING} NVLink"),
    Link("net100", 12 * GB, 14.0 * US, "100 Gb/s NIC (12.5 GB/s line), ~96 % reached by RDMA; "
         f"{_TUNING} NET"),
    Link("net400", 48 * GB, 14.0 * US, "400 Gb/s NIC (50 GB/s line), ~96 % reached by RDMA; "
         f"{_TUNING} NET"),
)}


@dataclass(frozen=True)
class Cluster:
    """Nodes of `gpus_per_node` GPUs on `intra` links, joined by `nics` NICs each of `network`."""

    intra: Link
    network: Link | None = None
    gpus_per_node: int = 8
    nics: int = 1

    @property
    def node_bandwidth(self) -> float:
        return self.network.bandwidth * self.nics if self.network else math.inf

    def __str__(self) -> str:
        net = f"+{self.nics}x{self.network.name}" if self.network else ""
        return f"{self.intra.name}{net} ({self.gpus_per_node}/node)"


_CLUSTER = re.compile(r"^(?P<intra>[a-z0-9-]+?)(?:\+(?:(?P<nics>\d+)x)?(?P<net>net\d+))?$")


def parse_cluster(spec: str, gpus_per_node: int = 8) -> Cluster:
    """A cluster from "INTRA[+[K x]NET]", e.g. "nvlink4+8xnet400" or "pcie4+net100".

    UserError naming the valid link names otherwise.
    """
    m = _CLUSTER.match(spec.strip().lower())
    intra = m and LINKS.get(m["intra"])
    net = m and m["net"] and LINKS.get(m["net"])
    if not intra or (m["net"] and not net) or intra.name.startswith("net") or m["nics"] == "0":
        nets = [n for n in LINKS if n.startswith("net")]
        raise UserError(f"--cluster {spec!r}: expected INTRA[+[K x]NET] with INTRA one of "
                        f"{', '.join(n for n in LINKS if n not in nets)} and NET one of {', '.join(nets)} "
                        "and K ≥ 1 NICs per node (e.g. nvlink4+8xnet400)")
    return Cluster(intra, net or None, gpus_per_node, int(m["nics"] or 1))

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
# Against the one published multi-node point (docs/answers.md) the two bracket the measurement:
# ring +6 %, hierarchical −12 % in bus bandwidth; hierarchical is the conservative choice.
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


LINKS: dict[str, Link] = {link.name: link for link in (
    Link("pcie4", 25 * GB, 5.7 * US, "PCIe 4.0 x16: 31.5 GB/s per direction (PCI-SIG), ~80 % effective "
         "as NVLink measures (assumed); α: NCCL tuning.cc hwLat PCI Ring/Simple"),
    Link("nvlink3", 235 * GB, 3.4 * US, "A100 SXM + NVSwitch: 300 GB/s per direction; NCCL caps A100 "
         "busbw at 235 GB/s (tuning.cc), as measured; α: hwLat NVLink Ring/Simple"),
    Link("nvlink4", 480 * GB, 3.4 * US, "H100/H200 SXM + NVSwitch: 450 GB/s per direction; all-reduce "
         "busbw ~480 GB/s with NVLink SHARP (NCCL maintainers, nccl-tests#212); α: hwLat NVLink"),
    Link("nvlink4-ring", 370 * GB, 3.4 * US, "as nvlink4 without NVLink SHARP (NCCL_ALGO=Ring): "
         "~370 GB/s after ~20 % protocol overhead (nccl-tests#212)"),
    Link("net100", 12 * GB, 9.6 * US, "100 Gb/s NIC (12.5 GB/s line), ~96 % reached by RDMA; "
         "α: hwLat NET Ring/Simple"),
    Link("net400", 48 * GB, 9.6 * US, "400 Gb/s NIC (50 GB/s line), ~96 % reached by RDMA; "
         "α: hwLat NET Ring/Simple"),
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

"""A map-style dataset over a dict of equally long tensors (features, token blocks)."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class TensorDictDataset:
    """A map-style dataset over equally long tensors; item ``i`` is ``{name: tensor[i]}``, so
    the default DataLoader collate stacks items back into a batch dict."""

    def __init__(self, tensors: dict[str, "torch.Tensor"]):
        lengths = {len(t) for t in tensors.values()}
        if len(lengths) != 1:
            raise ValueError(f"tensors of different lengths: { {k: len(v) for k, v in tensors.items()} }")
        self.tensors = tensors

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, i: int) -> dict[str, "torch.Tensor"]:
        return {k: v[i] for k, v in self.tensors.items()}

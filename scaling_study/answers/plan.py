"""The plan a projection is made with, from what the user says and what the records hold.

A projection needs a cluster, an all-reduce algorithm, the fraction of the all-reduce that
backward hides, and the bytes all-reduced per step. The first three are the user's (`report` and
`export --recommend` take `--cluster`, `--algorithm`, `--overlap`, with the defaults below). The
bytes are the model's trainable parameters × 4: gradients are fp32, also under bf16/fp16
autocast, whose parameters stay fp32. The parameters are counted from the records' `model`
where its size can be read without a network or torch (a named size, the packaged default, a
local checkpoint's config.json); otherwise `--grad-bytes` gives them.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling_study.answers.device import MeasuredDevice, NamedDevice, load_device_profile
from scaling_study.answers.links import ALGORITHMS, DEFAULT_ALGORITHM, DEFAULT_CLUSTER, parse_cluster
from scaling_study.answers.projection import GRAD_ELEMENT_BYTES
from scaling_study.answers.recommend import Plan
from scaling_study.errors import UserError

# What `models.size_config` gives every named size besides `MODEL_SIZES` (checked against a
# real model in tests/test_answers_plan.py).
_SIZE_DEFAULTS = {"max_position_embeddings": 512, "type_vocab_size": 2}


@dataclass(frozen=True)
class PlanOptions:
    """The user's side of a plan; each field is checked here, naming its command-line flag."""

    cluster: str = DEFAULT_CLUSTER
    """INTRA[+[K x]NET], e.g. nvlink4+8xnet400 (`links.parse_cluster`)."""
    grad_bytes: float | None = None
    """Bytes all-reduced per step; None: the records' model's parameters × 4."""
    algorithm: str = DEFAULT_ALGORITHM
    overlap: float = 0.0
    """Fraction of the all-reduce hidden behind backward (0: none, the conservative default)."""
    device_profile: str | NamedDevice | MeasuredDevice | None = None
    """A device profile file or name (`answers.device`), or one already loaded: the compute of
    the device projected. None: the records' own timings, which must then come from GPUs."""

    def __post_init__(self) -> None:
        parse_cluster(self.cluster)
        if isinstance(self.device_profile, str):
            load_device_profile(self.device_profile)  # a bad file or name fails before records are read
        if self.algorithm not in ALGORITHMS:
            raise UserError(f"--algorithm {self.algorithm!r}: valid algorithms are {', '.join(ALGORITHMS)}")
        if not (isinstance(self.overlap, (int, float)) and 0.0 <= self.overlap <= 1.0):
            raise UserError(f"--overlap {self.overlap!r}: a fraction from 0 (nothing hidden) to 1 (all hidden)")
        if self.grad_bytes is not None and not (math.isfinite(self.grad_bytes) and self.grad_bytes > 0):
            raise UserError(f"--grad-bytes {self.grad_bytes!r}: a positive number of bytes "
                            "(parameters × 4 for fp32 gradients, e.g. 1.34e9 for BERT-large)")

    def resolve(self, records: pd.DataFrame) -> tuple[Plan, str]:
        """(the plan, a sentence saying what it assumes). UserError naming --grad-bytes when
        the gradient bytes are not given and cannot be counted from the records' model."""
        device = load_device_profile(self.device_profile) if isinstance(self.device_profile, str) \
            else self.device_profile
        if self.grad_bytes is not None:
            nbytes, origin = float(self.grad_bytes), "--grad-bytes"
        else:
            (task, model), params = model_parameters(records)
            nbytes = float(params * GRAD_ELEMENT_BYTES)
            origin = f"{task} model {model!r}: {params / 1e6:.3g} M parameters × {GRAD_ELEMENT_BYTES} bytes"
        config = _config_or_none(records) if isinstance(device, NamedDevice) else None
        plan = Plan(parse_cluster(self.cluster), nbytes, self.algorithm, self.overlap, device=device,
                    model_config=config)
        compute = device.describe() if device else "the records' own timings (GPU records only)"
        text = (f"projected for {plan.cluster} with a {plan.algorithm} all-reduce of "
                f"{nbytes / 1e6:.4g} MB per step ({origin}), {self.overlap:.0%} of it hidden behind "
                f"backward; compute from {compute}; --cluster, --algorithm, --grad-bytes, --overlap and "
                "--device-profile change these")
        return plan, text


def _config_or_none(records: pd.DataFrame) -> dict | None:
    """The records' one model's BertConfig values, or None where they cannot be read here."""
    try:
        (_, model), _ = model_parameters(records)
        return bert_config(model)
    except UserError:
        return None


def model_parameters(records: pd.DataFrame) -> tuple[tuple[str, str], int]:
    """((task, model), trainable parameters) of the one model the records trained.

    UserError naming --grad-bytes when the records name no model, several, or one whose size
    cannot be read offline (a hub name, or a local path that is not here)."""
    if not {"task", "model"} <= set(records.columns):
        raise UserError("the records have no task and model columns to count parameters from: "
                        "give --grad-bytes (parameters × 4)")
    pairs = records[["task", "model"]].dropna().drop_duplicates()
    pairs = pairs[(pairs["task"] != "") & (pairs["model"] != "")]
    if len(pairs) != 1:
        found = ", ".join(f"{t}/{m}" for t, m in pairs.itertuples(index=False)) or "none"
        raise UserError(f"the records hold {len(pairs)} task/model pairs ({found}), so the gradient "
                        "bytes are not known: give --grad-bytes (parameters × 4)")
    task, model = pairs.iloc[0]
    return (task, model), bert_parameters(bert_config(model), task)


def bert_config(spec: str) -> dict:
    """The BertConfig values of a model spec (`scaling_study.models`), read without torch.

    UserError naming --grad-bytes for a hub name, a missing path or a config that is not BERT's."""
    from scaling_study.models import DEFAULT_SPEC, MODEL_SIZES, default_model_dir, local_path

    try:
        default = default_model_dir() if spec in (DEFAULT_SPEC, *MODEL_SIZES) else None
    except UserError as exc:  # the package holding the default model is not installed
        raise UserError(f"model {spec!r}: cannot count its parameters ({exc}): give --grad-bytes") from None
    if spec in MODEL_SIZES:  # built from a BertConfig with the default tokenizer's vocabulary
        vocab = _read_config(default / "config.json", spec)["vocab_size"]
        return {**_SIZE_DEFAULTS, **MODEL_SIZES[spec], "vocab_size": vocab}
    path = default if spec == DEFAULT_SPEC else local_path(spec)
    if path is None or not (path / "config.json").is_file():
        raise UserError(f"model {spec!r}: its size cannot be read here (a named size, 'default' or a "
                        "local checkpoint can): give --grad-bytes (parameters × 4)")
    return _read_config(path / "config.json", spec)


def _read_config(path: Path, spec: str) -> dict:
    config = json.loads(path.read_text(encoding="utf-8"))
    if config.get("model_type", "bert") != "bert":
        raise UserError(f"model {spec!r}: {path} is a {config['model_type']!r} model, not BERT: "
                        "give --grad-bytes (parameters × 4)")
    return config


def bert_parameters(config: dict, task: str) -> int:
    """Trainable parameters of the model `scaling_study.models.build_model` builds for `task`.

    BertModel without its pooler (both task heads leave it out): embeddings (words, positions,
    token types, LayerNorm) and per layer Q, K, V, O, two LayerNorms and the feed-forward pair.
    Heads: squad a hidden × 2 span classifier; mlm a transform (dense + LayerNorm) and a decoder
    whose weight is the word embedding's (tied), with its own bias.
    """
    h, inner, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    embeddings = (vocab + config["max_position_embeddings"] + config["type_vocab_size"]) * h + 2 * h
    layer = 4 * (h * h + h) + 2 * h + (h * inner + inner) + (inner * h + h) + 2 * h
    head = 2 * h + 2 if task == "squad" else (h * h + h) + 2 * h + vocab
    return embeddings + config["num_hidden_layers"] * layer + head

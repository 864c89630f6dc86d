"""Calibrate the synthetic SQuAD difficulty: fine-tune once, print F1 against steps.

    python -m scaling_study.data.calibrate --difficulty 0.0 --steps 250 --batch 32

A plain PyTorch loop (no Ray): AdamW with linear warmup and decay, the default packaged MiniLM
at sequence length 128, dev EM/F1 from the same features, post-processing and official metric
as the real runs. Prints one JSON line per evaluation, so a run can be compared by steps (the
2-core machine is shared and seconds are noisy).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m scaling_study.data.calibrate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--difficulty", type=float, default=0.0)
    p.add_argument("--data", type=Path, help="a directory with train.json/dev.json (default: generate)")
    p.add_argument("--model", default="default", help="model spec (default: packaged MiniLM)")
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps with linear warmup")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--n-train", type=int, default=8000)
    p.add_argument("--n-dev", type=int, default=200)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--doc-stride", type=int, default=32)
    p.add_argument("--max-query-length", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def load_data(args, tokenizer):
    """Train features and (dev examples, dev features, meta), generating the data if needed."""
    from scaling_study.data.squad import eval_features, read_squad, train_features
    from scaling_study.data.synth import write_synth

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data
        if root is None:
            root = Path(tmp)
            write_synth(root, n_train=args.n_train, n_dev=args.n_dev, difficulty=args.difficulty,
                        seed=args.seed, corpus_lines=1)
        train, dev = read_squad(root / "train.json"), read_squad(root / "dev.json")
    window = dict(max_seq_length=args.seq_len, doc_stride=args.doc_stride, max_query_length=args.max_query_length)
    dev_ds, meta = eval_features(dev, tokenizer, **window)
    return train_features(train, tokenizer, **window), (dev, dev_ds, meta)


def evaluate_f1(model, dev, batch_size: int = 64) -> dict[str, float]:
    """Dev EM/F1 (official v1.1 metric) of ``model`` in eval mode."""
    import torch

    from scaling_study.data.squad import postprocess
    from scaling_study.data.squad_metric import evaluate_examples

    examples, dataset, meta = dev
    model.eval()
    starts, ends = [], []
    with torch.no_grad():
        for batch in torch.utils.data.DataLoader(dataset, batch_size=batch_size):
            out = model(**batch)
            starts.append(out.start_logits)
            ends.append(out.end_logits)
    model.train()
    return evaluate_examples(examples, postprocess(examples, meta, torch.cat(starts), torch.cat(ends)))


def linear_warmup_decay(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 over the warmup, then linearly to 0 at ``total_steps``."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return factor


def batches(dataset, batch_size: int, seed: int):
    """Shuffled batches forever (a new permutation each epoch)."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                               drop_last=True, generator=generator)


def main(argv: list[str] | None = None) -> int:
    import torch

    from scaling_study.models import build_model, load_tokenizer

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tokenizer = load_tokenizer(args.model)
    train_ds, dev = load_data(args, tokenizer)
    model = build_model(args.model, "squad", tokenizer, seed=args.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(max(1, int(args.warmup * args.steps)), args.steps))
    print(json.dumps({"difficulty": args.difficulty, "train_features": len(train_ds),
                      "dev_questions": len(dev[0]), "dev_features": len(dev[1])}), flush=True)
    model.train()
    train_seconds, losses = 0.0, []
    stream = batches(train_ds, args.batch, args.seed)
    for step in range(args.steps + 1):
        if step % args.eval_every == 0 or step == args.steps:
            scores = evaluate_f1(model, dev)
            loss = sum(losses) / len(losses) if losses else None
            print(json.dumps({"step": step, "samples": step * args.batch, "train_s": round(train_seconds, 1),
                              "loss": loss and round(loss, 3), **{k: round(v, 1) for k, v in scores.items()}}),
                  flush=True)
            losses = []
        if step == args.steps:
            break
        t0 = time.perf_counter()
        loss = model(**next(stream)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        train_seconds += time.perf_counter() - t0
        losses.append(loss.item())
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`scaling-study data squad-synth|tokenize` and `scaling-study squad-eval`.

Imports stay light at module level: the handlers import what they need when they run.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from scaling_study.errors import UserError


def register(sub) -> None:
    """Add the ``data`` command group and ``squad-eval`` to the top-level subparsers."""
    from scaling_study.data.synth import DEFAULTS  # stdlib-only module: cheap

    data = sub.add_parser("data", help="generate offline datasets")
    which = data.add_subparsers(dest="data_command", metavar="DATASET")
    which.required = True
    synth = which.add_parser(
        "squad-synth", help="write synthetic SQuAD v1.1 train/dev files and an MLM text corpus",
        description="Write train.json and dev.json (SQuAD v1.1 format) and corpus.txt / corpus_dev.txt "
                    "(plain text for MLM) generated from templates; the same seed gives the same files.")
    synth.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    synth.add_argument("--train", type=int, default=DEFAULTS["n_train"], help="training questions (default %(default)s)")
    synth.add_argument("--dev", type=int, default=DEFAULTS["n_dev"], help="dev questions (default %(default)s)")
    synth.add_argument("--difficulty", type=float, default=DEFAULTS["difficulty"],
                       help="0 (two people, two facts each, fits 128 tokens) to 1 (five people, pronouns, "
                            "distractor relatives, several 128-token windows); default %(default)s")
    synth.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (default %(default)s)")
    synth.add_argument("--corpus-lines", type=int, default=DEFAULTS["corpus_lines"],
                       help="paragraphs in corpus.txt; corpus_dev.txt gets a tenth (default %(default)s)")
    synth.set_defaults(func=_squad_synth)

    tok = which.add_parser(
        "tokenize", help="pre-tokenise an MLM corpus into memory-mapped uint16 shards (data.train: DIR/shards.json)",
        description="Tokenise the non-empty lines of text files once into --shards files of uint16 token ids and "
                    "DIR/shards.json; a job reads them with data.train: DIR/shards.json, each worker memory-mapping "
                    "its own shards. --wordpiece-vocab N first trains an uncased WordPiece vocabulary of N ids on "
                    "the corpus into DIR/tokenizer (for model.tokenizer) and tokenises with it.")
    tok.add_argument("corpus", nargs="+", type=Path, help="UTF-8 text files, one document line each")
    tok.add_argument("--out", required=True, type=Path, help="output directory (created if missing)")
    tok.add_argument("--shards", type=int, default=8, help="shard files; at least one per worker (default %(default)s)")
    tok.add_argument("--model", default="default", help="the model spec or tokenizer folder to tokenise with "
                                                        "(default: %(default)s)")
    tok.add_argument("--wordpiece-vocab", type=int, default=None, metavar="N",
                     help="train a WordPiece vocabulary of N ids on the corpus instead of --model's")
    tok.set_defaults(func=_tokenize)

    ev = sub.add_parser("squad-eval", help="official SQuAD v1.1 EM/F1 of a predictions file",
                        description="Print {\"exact_match\": .., \"f1\": ..} for PREDICTIONS.json "
                                    "({question id: answer text}) against DATA.json, as evaluate-v1.1.py does.")
    ev.add_argument("data", type=Path, metavar="DATA.json", help="SQuAD v1.1 dataset file")
    ev.add_argument("predictions", type=Path, metavar="PREDICTIONS.json", help="JSON object {id: answer}")
    ev.set_defaults(func=_squad_eval)


def _squad_synth(args: argparse.Namespace) -> int:
    from scaling_study.data.synth import write_synth

    paths = write_synth(args.out, n_train=args.train, n_dev=args.dev, difficulty=args.difficulty,
                        seed=args.seed, corpus_lines=args.corpus_lines)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _tokenize(args: argparse.Namespace) -> int:
    from scaling_study.data.tokenize import train_wordpiece, write_shards
    from scaling_study.models import load_tokenizer

    spec = args.model
    if args.wordpiece_vocab is not None:
        spec = str(train_wordpiece(args.corpus, args.out / "tokenizer", args.wordpiece_vocab))
        print(f"tokenizer: {spec}")
    manifest = write_shards(args.corpus, load_tokenizer(spec), args.out, args.shards)
    print(f"shards: {manifest}")
    return 0


def _load_json(path: Path, what: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: the {what} is not valid JSON: {exc}") from exc


def _squad_eval(args: argparse.Namespace) -> int:
    import sys

    from scaling_study.data.squad_metric import EXPECTED_VERSION, evaluate

    # Read as evaluate-v1.1.py reads it: ids and answer texts only (answer_start is not checked).
    dataset = _load_json(args.data, "dataset")
    version = dataset.get("version") if isinstance(dataset, dict) else None
    if version != EXPECTED_VERSION:
        print(f"Evaluation expects v-{EXPECTED_VERSION}, but got dataset with v-{version}", file=sys.stderr)
    predictions = _load_json(args.predictions, "predictions")
    if not isinstance(predictions, dict) or not all(isinstance(v, str) for v in predictions.values()):
        raise UserError(f"{args.predictions}: predictions must be a JSON object {{question id: answer text}}")
    try:
        result = evaluate(dataset, predictions)
    except ValueError as exc:  # names the JSON path of what cannot be read
        raise UserError(f"{args.data}: {exc}") from None
    print(json.dumps(result))
    return 0

"""Synthetic SQuAD v1.1 data and an MLM text corpus, generated offline from templates.

Each context describes a few people through short facts (birth, job, move, music, pet). Every
answer is a span of the context; the other people's facts and facts about relatives are
distractors of the same type (other cities, years, professions); questions are paraphrases
that mostly avoid the context's wording; dev questions carry 2-3 gold answers where English
allows several spans ("Lisbon", "in Lisbon").

``difficulty`` in [0, 1] turns one knob with several effects: more people and facts per context
(at 0 a context fits in 128 tokens; near 1 it needs several 128-token windows), pronouns for
later mentions, questions naming a person by first or last name only, and distractor facts
about relatives. Output is a pure function of the arguments (``random.Random`` seeded by
strings, which Python hashes the same way in every process).
"""
from __future__ import annotations

import dataclasses
import json
import os
import random
import tempfile
from pathlib import Path

from scaling_study.data import synth_vocab as V
from scaling_study.errors import UserError

DEFAULT_DIFFICULTY = 0.0
DEFAULTS = dict(n_train=8000, n_dev=400, difficulty=DEFAULT_DIFFICULTY, seed=0, corpus_lines=4000)
QUESTIONS_PER_CONTEXT = 3
# The files `write_synth` writes into its folder: SQuAD-format train/dev sets and the MLM corpora.
SYNTH_FILES = {"train": "train.json", "dev": "dev.json", "corpus": "corpus.txt", "corpus_dev": "corpus_dev.txt"}


@dataclasses.dataclass(frozen=True)
class Knobs:
    """What ``difficulty`` sets (all derived, so one number names a task). Counts are means:
    each context draws floor or ceil of them, so the knob is continuous."""

    people: float            # people per context
    facts: float             # facts per person (of the five kinds)
    pronoun_p: float         # chance a later sentence uses he/she instead of the name
    short_ref_p: float       # chance a question names a person by first or last name only
    relatives: float         # distractor sentences about relatives per context

    @classmethod
    def from_difficulty(cls, d: float) -> "Knobs":
        return cls(people=2 + 3 * d, facts=2 + 2 * d, pronoun_p=0.8 * d, short_ref_p=0.6 * d, relatives=3 * d)


def _draw(rng: random.Random, mean: float) -> int:
    """floor(mean) or floor(mean) + 1, with expectation ``mean``."""
    whole = int(mean)
    return whole + (rng.random() < mean - whole)


def _article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _pick(rng: random.Random, used: dict[str, set], pool, kind: str):
    """A value from ``pool`` not yet ``used`` in this context (so every answer is unambiguous)."""
    value = rng.choice([v for v in pool if v not in used.setdefault(kind, set())])
    used[kind].add(value)
    return value


def _person(rng: random.Random, used: dict[str, set]) -> dict:
    """A person with every fact filled in; values are unique within one context (``used``)."""
    def pick(pool, kind):
        return _pick(rng, used, pool, kind)

    gender = rng.choice("fm")
    p = {"gender": gender, "first": pick(V.FIRST_NAMES[gender], "first"), "last": pick(V.SURNAMES, "last"),
         "born_city": pick(V.CITIES, "city"), "born_year": str(pick(V.YEARS_BORN, "year")),
         "moved_city": pick(V.CITIES, "city"), "moved_year": str(pick(V.YEARS_MOVED, "year")),
         "profession": pick(V.PROFESSIONS, "profession"), "employer": pick(V.EMPLOYERS, "employer"),
         "instrument": pick(V.INSTRUMENTS, "instrument"), "pet_kind": pick(V.PET_KINDS, "pet_kind"),
         "pet_name": pick(V.PET_NAMES, "pet_name")}
    p["art_profession"], p["art_pet_kind"] = _article(p["profession"]), _article(p["pet_kind"])
    return p


def _slot_start(template: str, slot: str, fields: dict) -> int:
    """Where ``slot``'s value starts in ``template.format(**fields)``; the template holds it as
    ``{slot}`` or, after an article, as ``{art_slot}``."""
    plain, with_article = "{" + slot + "}", "{art_" + slot + "}"
    if plain in template:
        return len(template.split(plain)[0].format(**fields))
    article_length = len(fields["art_" + slot]) - len(fields[slot])
    return len(template.split(with_article)[0].format(**fields)) + article_length


def _sentence(rng: random.Random, p: dict, fact: str, first_mention: bool, knobs: Knobs) -> tuple[str, dict]:
    """One fact sentence about ``p`` and where in it each slot value starts."""
    name = f"{p['first']} {p['last']}"
    pronoun, poss = V.PRONOUNS[p["gender"]]
    use_pronoun = not first_mention and rng.random() < knobs.pronoun_p
    # {poss} stays a pronoun even before the name ("In her spare time, Ana Silva plays..."):
    # "In Ana Silva's spare time, Ana Silva plays" is not English.
    fields = dict(p, subj=pronoun if use_pronoun else name, subj_mid=pronoun.lower() if use_pronoun else name,
                  poss=poss)
    template = rng.choice(V.FACT_SENTENCES[fact])
    return template.format(**fields), {slot: _slot_start(template, slot, fields) for slot in V.FACT_SLOTS[fact]}


def _relative_sentence(rng: random.Random, p: dict, used: dict[str, set]) -> str:
    # Fresh values from the context's pools, so a distractor never repeats an answer.
    gender = rng.choice("fm")
    fields = dict(poss_cap=f"{p['first']} {p['last']}'s", relation=rng.choice(V.RELATIONS[gender]),
                  rel_first=_pick(rng, used, V.FIRST_NAMES[gender], "first"),
                  rel_city=_pick(rng, used, V.CITIES, "city"),
                  rel_year=str(_pick(rng, used, V.YEARS_BORN, "year")),
                  rel_art_profession=_article(_pick(rng, used, V.PROFESSIONS, "profession")),
                  rel_instrument=_pick(rng, used, V.INSTRUMENTS, "instrument"))
    return rng.choice(V.RELATIVE_SENTENCES).format(**fields)


def _context(rng: random.Random, knobs: Knobs) -> tuple[str, list[dict], list[tuple[dict, str, int]]]:
    """A context, its people, and (person, slot, character start) for every answerable slot."""
    used: dict[str, set] = {}
    people = [_person(rng, used) for _ in range(_draw(rng, knobs.people))]
    blocks: list[list[tuple[str, list]]] = []  # per person: (sentence, [(person, slot, in-sentence start)])
    for p in people:
        block = []
        for i, fact in enumerate(rng.sample(list(V.FACT_SENTENCES), _draw(rng, knobs.facts))):
            text, starts = _sentence(rng, p, fact, first_mention=i == 0, knobs=knobs)
            block.append((text, [(p, slot, s) for slot, s in starts.items()]))
        blocks.append(block)
    for _ in range(_draw(rng, knobs.relatives)):
        # Relatives go between people's blocks at random (never inside one, where they would
        # break the chain a pronoun refers back along), so position is no shortcut.
        blocks.insert(rng.randrange(len(blocks) + 1), [(_relative_sentence(rng, rng.choice(people), used), [])])
    sentences = [sentence for block in blocks for sentence in block]
    slots, offset = [], 0
    for text, sentence_slots in sentences:
        slots += [(p, slot, offset + s) for p, slot, s in sentence_slots]
        offset += len(text) + 1  # the joining space
    return " ".join(text for text, _ in sentences), people, slots


def _answers(context: str, value: str, start: int, variants: bool) -> list[tuple[str, int]]:
    """The gold answers for ``value`` at ``start``: the bare span (without a leading "the"),
    then, when ``variants``, the spans that add a preposition or article found before it."""
    if value.startswith("the "):
        value, start = value[4:], start + 4
    answers = [(value, start)]
    if variants:
        for prefix in V.ANSWER_PREFIXES:
            s = start - len(prefix)
            if s >= 0 and context[s:start] == prefix:
                answers.append((context[s:start + len(value)], s))
    return answers[:3]


def _question(rng: random.Random, p: dict, slot: str, knobs: Knobs) -> str:
    name = f"{p['first']} {p['last']}"
    ref = rng.choice([p["first"], p["last"]]) if rng.random() < knobs.short_ref_p else name
    fields = dict(p, ref=ref, ref_poss=f"{ref}'s")
    return rng.choice(V.QUESTIONS[slot]).format(**fields)


def generate_squad(n_questions: int, *, difficulty: float, seed: int | str, variants: bool,
                   id_prefix: str) -> dict:
    """A SQuAD v1.1 document with ``n_questions`` questions, about 3 per context."""
    knobs = Knobs.from_difficulty(difficulty)
    rng = random.Random(f"squad-{seed}-{id_prefix}")
    articles, made = [], 0
    while made < n_questions:
        context, people, slots = _context(rng, knobs)
        k = min(QUESTIONS_PER_CONTEXT, n_questions - made, len(slots))
        qas = []
        for p, slot, start in rng.sample(slots, k):
            qas.append({"id": f"{id_prefix}-{made:06d}", "question": _question(rng, p, slot, knobs),
                        "answers": [{"text": t, "answer_start": s}
                                    for t, s in _answers(context, p[slot], start, variants)]})
            made += 1
        title = f"{people[0]['last']} and others {len(articles)}"
        articles.append({"title": title, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "1.1", "data": articles}


def generate_corpus(n_lines: int, *, difficulty: float, seed: int | str) -> list[str]:
    """``n_lines`` paragraphs of plain text (one per line) in the same world as the questions,
    with every fact of every person, for MLM pretraining."""
    knobs = dataclasses.replace(Knobs.from_difficulty(difficulty), facts=len(V.FACT_SENTENCES), short_ref_p=0.0)
    rng = random.Random(f"corpus-{seed}")
    return [_context(rng, knobs)[0] for _ in range(n_lines)]


def _check(n_train: int, n_dev: int, difficulty: float, corpus_lines: int) -> None:
    for name, value in (("train", n_train), ("dev", n_dev), ("corpus_lines", corpus_lines)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise UserError(f"squad-synth: --{name.replace('_', '-')} must be a positive integer, got {value!r}")
    if isinstance(difficulty, bool) or not isinstance(difficulty, (int, float)) or not 0 <= difficulty <= 1:
        raise UserError(f"squad-synth: --difficulty must be a number in [0, 1], got {difficulty!r}")


def _write_atomic(path: Path, text: str) -> None:
    # temp file + rename in the same directory: a reader never sees half a file.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_synth(out_dir: str | Path, *, n_train: int = DEFAULTS["n_train"], n_dev: int = DEFAULTS["n_dev"],
                difficulty: float = DEFAULT_DIFFICULTY, seed: int = 0,
                corpus_lines: int = DEFAULTS["corpus_lines"]) -> dict[str, Path]:
    """Write ``train.json`` and ``dev.json`` (SQuAD v1.1), ``corpus.txt`` and ``corpus_dev.txt``
    (MLM text, the dev corpus a tenth as long) into ``out_dir``; return their paths by name.

    Deterministic in its arguments. Arguments are checked and everything is generated before
    the first file is written; each file is written atomically.
    """
    _check(n_train, n_dev, difficulty, corpus_lines)
    contents = {
        "train": json.dumps(generate_squad(n_train, difficulty=difficulty, seed=seed, variants=False,
                                           id_prefix="train"), ensure_ascii=False),
        "dev": json.dumps(generate_squad(n_dev, difficulty=difficulty, seed=seed, variants=True,
                                         id_prefix="dev"), ensure_ascii=False),
        "corpus": "\n".join(generate_corpus(corpus_lines, difficulty=difficulty, seed=seed)) + "\n",
        "corpus_dev": "\n".join(generate_corpus(max(1, corpus_lines // 10), difficulty=difficulty,
                                                seed=f"{seed}-dev")) + "\n",
    }
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"squad-synth: cannot create --out {out}: {exc.strerror or exc}") from exc
    paths = {key: out / name for key, name in SYNTH_FILES.items()}
    for key, text in contents.items():
        _write_atomic(paths[key], text)
    return paths

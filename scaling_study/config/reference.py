"""The configuration reference, `docs/configuration.md`, generated from the config dataclasses.

Every key of a job file (`Job` and its sections) and of a search-space file (`SpaceFile` and its
sections) is a dataclass field. Its meaning is the string literal written right under the field
in the class body, its type comes from the annotation and its default from the field, so the
reference cannot drift from the code:

    python -m scaling_study.config.reference            # write docs/configuration.md (and
                                                        # the contract's tables in docs/records.md)
    python -m scaling_study.config.reference --check    # exit 1 when the file is stale

A field without such a string is an error (exit 2, naming every such key): the reference
documents every key. `--allow-undocumented` writes the file anyway, with those cells empty.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml

from scaling_study.config.job import Job
from scaling_study.tune.space_schema import Dimension, SpaceFile

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "configuration.md"
# docs/records.md: its tables of columns and metrics are generated from scaling_study.contract
# between these two markers; the prose around them is written by hand.
RECORDS = ROOT / "docs" / "records.md"
RECORDS_BEGIN = "<!-- generated from scaling_study/contract.py: begin -->"
RECORDS_END = "<!-- generated from scaling_study/contract.py: end -->"
COMMAND = "python -m scaling_study.config.reference"


@dataclass(frozen=True)
class Root:
    """A kind of file the reference covers: its top-level dataclass and how the page introduces it."""
    title: str
    what: str
    """How the page names one such file ("job", "search space")."""
    cls: type
    intro: str
    mapping_values: dict[str, type] = dataclasses.field(default_factory=dict)
    """Untyped mapping fields (name -> the dataclass each value is read as) to document too."""


ROOTS = (
    Root("Job files (`jobs/*.yaml`)", "job", Job,
         "A job is one run of one task (`scaling-study run JOB.yaml`). The file is read with a safe "
         "YAML loader and checked completely before Ray starts: an unknown key, a wrong type or an "
         "impossible combination fails naming the file, the dotted key and what would be valid. "
         "Any key can be overridden from the command line with the same checks: "
         "`--set optimizer.lr=2e-3`, `--set train.phases.1.steps=100` (list items by index)."),
    Root("Search-space files (`search_spaces/*.yaml`)", "search space", SpaceFile,
         "A search space names a base job and the dimensions to sweep (`scaling-study sweep "
         "SPACE.yaml`); see [search spaces](search-spaces.md) for how the trials are formed. "
         "The whole space, every grid point built into a full job, is checked before any trial "
         "starts.",
         {"parameters": Dimension}),
)


@dataclass(frozen=True)
class Key:
    """One row of the reference: a dotted key with its type, default and meaning."""
    key: str
    owner: str
    """The field behind the key, `Class.field`."""
    type: str
    default: str
    doc: str | None


@dataclass(frozen=True)
class Section:
    """The keys of one dataclass, found under `key` (`""` at the top of a file)."""
    key: str
    owner: str
    """The field that holds this section, `Class.field` ("" at the top of a file)."""
    cls: type
    doc: str | None
    """The docstring of that field (None: it has none)."""
    presence: str
    keys: tuple[Key, ...]


def _class_def(cls: type) -> ast.ClassDef:
    return ast.parse(textwrap.dedent(inspect.getsource(cls))).body[0]


def class_doc(cls: type) -> str:
    """The docstring written in the class body, one line ("" if none: a dataclass without one
    gets its signature as `__doc__`, which is not documentation)."""
    doc = ast.get_docstring(_class_def(cls))
    return _one_line(doc) if doc else ""


def field_docs(cls: type) -> dict[str, str]:
    """Each field's docstring: the string literal right after the field in the class body
    (base classes first, so a subclass can restate a field), cleaned to one line."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = _class_def(klass).body
        for stmt, after in zip(body, body[1:]):
            if (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                    and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                    and isinstance(after.value.value, str)):
                docs[stmt.target.id] = _one_line(after.value.value)
    return docs


def _one_line(text: str) -> str:
    # A table cell is one line; a '|' would end the cell.
    return " ".join(inspect.cleandoc(text).split()).replace("|", "\\|")


def _yaml(value: Any) -> str:
    """`value` as it would be written in a YAML file (flow style)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6, sort_keys=False).strip()
    return text.removesuffix("...").strip()


def type_text(tp: Any) -> str:
    """A field's type in the words of a YAML file."""
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any"
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(f"`{_yaml(a)}`" for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join(type_text(a) for a in args)
    if origin in (list, tuple):
        return f"list of {type_text(args[0])}"
    if origin is dict:
        return "mapping" if args[1] is Any else f"mapping of {type_text(args[0])} to {type_text(args[1])}"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return tp.__name__


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        return f"`{_yaml(f.default)}`"
    if f.default_factory is not dataclasses.MISSING:
        return f"`{_yaml(f.default_factory())}`"
    return "required"


def _nested(tp: Any) -> tuple[type, str] | None:
    """(the dataclass, how its key reads) when a field holds a section: X, X or null, a list of X."""
    for arg in (tp, *get_args(tp)):
        if dataclasses.is_dataclass(arg):
            return arg, ""
        if get_origin(arg) in (list, tuple) and dataclasses.is_dataclass(get_args(arg)[0]):
            return get_args(arg)[0], "[i]"
        if get_origin(arg) is dict and dataclasses.is_dataclass(get_args(arg)[1]):
            return get_args(arg)[1], ".<key>"
    return None


def _presence(f: dataclasses.Field, suffix: str) -> str:
    if suffix == "[i]":
        return "A list; each item has the keys below."
    if suffix == ".<key>":
        return "A mapping; each value has the keys below."
    if f.default is None:
        return "Optional: absent unless given."
    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
        return "Required."
    return "Optional: left out, every key below takes its default."


def sections(cls: type, prefix: str = "", owner: str = "", doc: str | None = None, presence: str = "",
             mapping_values: dict[str, type] | None = None) -> list[Section]:
    """The section of `cls` at `prefix`, then the sections nested in it, depth first."""
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    keys, nested = [], []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        key = f"{prefix}.{f.name}" if prefix else f.name
        field_owner, doc_of = f"{cls.__name__}.{f.name}", docs.get(f.name)
        inner = _nested(hints[f.name])
        if inner is not None:
            child, suffix = inner
            nested += sections(child, key + suffix, field_owner, doc_of, _presence(f, suffix))
            continue
        keys.append(Key(key, field_owner, type_text(hints[f.name]), default_text(f), doc_of))
        if f.name in (mapping_values or {}):
            # The values' own keys; the field's docstring is already on its row above.
            nested += sections(mapping_values[f.name], key + ".<key>", field_owner, doc_of or "",
                               _presence(f, ".<key>"))
    return [Section(prefix, owner, cls, doc, presence, tuple(keys)), *nested]


def reference() -> list[tuple[Root, list[Section]]]:
    return [(root, sections(root.cls, mapping_values=root.mapping_values)) for root in ROOTS]


def undocumented() -> list[str]:
    """Every key (and every section of keys) without a docstring, in page order, as
    "FILE KIND: dotted.key (Class.field)"."""
    missing = []
    for root, secs in reference():
        for s in secs:
            rows = ([(s.key, s.owner)] if s.key and s.doc is None else []) + \
                   [(k.key, k.owner) for k in s.keys if k.doc is None]
            missing += [f"{root.what}: {key} ({owner})" for key, owner in rows]
    return missing


def _source(cls: type) -> str:
    """Where `cls` is defined, as a link from docs/ (a module name where it is not in this tree)."""
    path = Path(inspect.getsourcefile(cls)).resolve()
    try:
        rel = path.relative_to(ROOT).as_posix()
    except ValueError:
        return f"`{cls.__module__}`"
    return f"[{rel}](../{rel})"


def _render_section(s: Section, root: Root) -> list[str]:
    title = f"`{s.key}`" if s.key else f"Top level of a {root.what} file"
    lines = [f"### {title}", ""]
    about = " ".join(filter(None, [s.presence, s.doc, class_doc(s.cls)]))
    lines += [f"`{s.cls.__name__}` in {_source(s.cls)}. {about}".rstrip(), ""]
    if s.keys:
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        lines += [f"| `{k.key}` | {k.type} | {k.default} | {k.doc or ''} |" for k in s.keys]
        lines.append("")
    return lines


def render() -> str:
    """The whole page. Fields without a docstring leave their cell empty (see `undocumented`)."""
    lines = ["# Configuration reference", "",
             f"<!-- Generated by `{COMMAND}` from the config dataclasses; do not edit by hand: "
             "change a field's docstring and run the command again. -->", "",
             "Every key of the two kinds of file the product reads, with its type, its default and "
             "what it means. In a file keys nest as YAML mappings; here and in `--set` they are "
             "written dotted (`optimizer.lr`). `[i]` is an item of a list, `<key>` any key of a "
             "mapping.", ""]
    for root, secs in reference():
        lines += [f"## {root.title}", "", root.intro, ""]
        for s in secs:
            lines += _render_section(s, root)
    return "\n".join(lines).rstrip() + "\n"


_TYPE_WORDS = {"str": "string", "int": "integer", "float": "number", "bool": "boolean"}


def records_block() -> str:
    """The tables of docs/records.md: every column of the contract and every metric."""
    from scaling_study.contract import COLUMNS, METRICS

    lines = [RECORDS_BEGIN, "", "### Columns of `records.csv`", "", "| column | type | meaning |", "|---|---|---|"]
    lines += [f"| `{c.name}` | {_TYPE_WORDS[c.dtype]} | {c.meaning} |" for c in COLUMNS]
    lines += ["", "### Metrics", "", "| metric | tasks | scale | better | label |", "|---|---|---|---|---|"]
    for m in METRICS.values():
        better = "higher" if m.maximise else "lower"
        lines.append(f"| `{m.name}` | {', '.join(m.tasks)} | {m.unit_hint()} | {better} | {m.label} |")
    return "\n".join([*lines, "", RECORDS_END])


def render_records(page: str) -> str:
    """`page` (docs/records.md) with its generated block replaced by the contract's tables."""
    head, sep, rest = page.partition(RECORDS_BEGIN)
    _, sep2, tail = rest.partition(RECORDS_END)
    if not (sep and sep2):
        raise SystemExit(f"{RECORDS}: the markers {RECORDS_BEGIN!r} and {RECORDS_END!r} are missing")
    return head + records_block() + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if the file is stale")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the page (default: {OUT.relative_to(ROOT)})")
    parser.add_argument("--allow-undocumented", action="store_true",
                        help="write the page even where a field has no docstring (its cell stays empty)")
    args = parser.parse_args(argv)
    missing = undocumented()
    if missing and not args.allow_undocumented:
        print(f"error: {len(missing)} config keys have no docstring (the string literal right under the "
              "field in its class):\n  " + "\n  ".join(missing), file=sys.stderr)
        return 2
    pages = {args.out: render(), RECORDS: render_records(RECORDS.read_text(encoding="utf-8"))}
    if args.check:
        stale = [p for p, text in pages.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]
        for p in stale:
            print(f"{p} is stale: run `{COMMAND}`", file=sys.stderr)
        return 1 if stale else 0
    for p, text in pages.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The documentation: the generated configuration reference is current and complete, the README
stays a newcomer's page, every relative link resolves, the YAML examples load, and the pages name
none of the tools the project was built with."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from scaling_study.config import job_from_dict, reference
from scaling_study.tune.space import load_space

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _ids(pages):
    return [p.relative_to(ROOT).as_posix() for p in pages]


# --- the configuration reference ------------------------------------------------------------

def test_configuration_reference_is_current():
    page = ROOT / "docs" / "configuration.md"
    assert page.is_file(), f"missing: run `{reference.COMMAND}`"
    assert page.read_text(encoding="utf-8") == reference.render(), \
        f"docs/configuration.md is stale: run `{reference.COMMAND}`"


def test_every_config_key_is_documented():
    assert reference.undocumented() == []


@dataclass(kw_only=True)
class _Inner:
    """Inner section."""
    depth: int = 3
    """How deep."""
    bare: str = "x"


@dataclass(kw_only=True)
class _Outer:
    name: str
    """The name | with a pipe,
    over two lines."""
    inner: _Inner | None = None
    """An optional section."""
    items: list[_Inner] = field(default_factory=list)


def test_reference_reads_each_fields_docstring_type_and_default():
    secs = reference.sections(_Outer)
    assert [s.key for s in secs] == ["", "inner", "items[i]"]
    top, inner, items = secs
    assert top.keys == (reference.Key("name", "_Outer.name", "str", "required",
                                      "The name \\| with a pipe, over two lines."),)
    assert (inner.doc, inner.presence) == ("An optional section.", "Optional: absent unless given.")
    assert [(k.key, k.type, k.default, k.doc) for k in inner.keys] == [
        ("inner.depth", "int", "`3`", "How deep."), ("inner.bare", "str", "`x`", None)]
    assert items.doc is None and items.keys[0].key == "items[i].depth"
    assert reference.class_doc(_Inner) == "Inner section." and reference.class_doc(_Outer) == ""


def test_generator_refuses_undocumented_keys_and_check_finds_a_stale_page(tmp_path, monkeypatch, capsys):
    page = tmp_path / "configuration.md"
    page.write_text("old\n", encoding="utf-8")
    assert reference.main(["--check", "--allow-undocumented", "--out", str(page)]) == 1
    assert reference.main(["--allow-undocumented", "--out", str(page)]) == 0
    assert reference.main(["--check", "--allow-undocumented", "--out", str(page)]) == 0
    monkeypatch.setattr(reference, "undocumented", lambda: ["job: data.dir (DataConfig.dir)"])
    page.write_text("old\n", encoding="utf-8")
    assert reference.main(["--out", str(page)]) == 2
    assert "data.dir (DataConfig.dir)" in capsys.readouterr().err
    assert page.read_text(encoding="utf-8") == "old\n"


# --- the pages ------------------------------------------------------------------------------

def test_readme_is_at_most_12_kb():
    size = README.stat().st_size
    assert size <= 12_000, f"README.md is {size} bytes; move detail into docs/"


def _prose(text: str) -> str:
    return FENCE.sub("", text)


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces as '-', repeats numbered."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose(page.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", m.group(1))
            slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _broken_links(page: Path, root: Path) -> list[str]:
    """Relative links of `page` (outside code blocks) that lead to no file under `root`, or to
    no heading of the Markdown page they name."""
    broken = []
    for target in LINK.findall(_prose(page.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists() or root not in (dest, *dest.parents):
            broken.append(f"{target} (no such file in the repository)")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_relative_links_resolve(page):
    broken = _broken_links(page, ROOT)
    assert not broken, f"{page.name}: " + "; ".join(broken)


def test_link_check_finds_missing_files_and_headings(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.md").write_text("# Top\n## The `x.y` key\n## The `x.y` key\n")
    page = tmp_path / "a.md"
    page.write_text("[ok](docs/b.md#the-xy-key-1) [web](https://example.org/x) ![img](docs/b.md)\n"
                    "[gone](docs/c.md) [no heading](docs/b.md#bottom) [outside](../x.md)\n"
                    "```\n[in code](nowhere.md)\n```\n")
    assert _broken_links(page, tmp_path) == [
        "docs/c.md (no such file in the repository)", "docs/b.md#bottom (no heading #bottom in b.md)",
        "../x.md (no such file in the repository)"]


@pytest.mark.parametrize("page", PAGES, ids=_ids(PAGES))
def test_pages_name_no_workplace_tool(page):
    text = page.read_text(encoding="utf-8").lower()
    found = [name for name in ("farm-bench", "duplicates", "the device tool") if name in text]
    assert not found, f"{page.name} names {found}"


def _yaml_blocks(page: Path) -> list[dict]:
    blocks = re.findall(r"^```yaml\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)
    return [yaml.safe_load(b) for b in blocks]


def test_the_readme_job_is_a_valid_job():
    jobs = [b for b in _yaml_blocks(README) if "base" not in b]
    assert jobs, "README.md shows a job YAML"
    for data in jobs:
        job_from_dict(data, source="README.md")


def test_the_search_space_example_is_a_valid_space(tmp_path):
    (data,) = [b for b in _yaml_blocks(ROOT / "docs" / "search-spaces.md") if "base" in b]
    # The example's base is relative to a file in search_spaces/, as the shipped ones are.
    data["base"] = str((ROOT / "search_spaces" / data["base"]).resolve())
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(data), encoding="utf-8")
    load_space(space)


def test_records_reference_is_the_contract():
    """docs/records.md's tables are generated from scaling_study.contract and up to date."""
    from scaling_study.config import reference
    from scaling_study.contract import COLUMN_NAMES

    page = reference.RECORDS.read_text(encoding="utf-8")
    assert reference.render_records(page) == page, f"run `{reference.COMMAND}`"
    block = page.split(reference.RECORDS_BEGIN)[1]
    assert all(f"| `{name}` |" in block for name in COLUMN_NAMES)

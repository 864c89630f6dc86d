"""Property-based fuzzing of the service in process (Hypothesis over FastAPI's TestClient): study
ids, table names, query parameters and uploaded search spaces, generated around a results root
that holds links to a folder outside it. Whatever is asked: never a 500, no answer grows with
the input, nothing under the outside folder is opened or listed (an audit hook watches every
`open` and listing of this process), and the answers kept in memory stay within their budget."""
import json
import os
import sys
from urllib.parse import quote

import pytest
import yaml
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fixtures.service import write_live_sweep, write_run
from scaling_study.service import launch, memo
from scaling_study.service.app import create_app

SENTINEL = "sentinel-outside-the-root"
CSRF = {"X-Scaling-Study": "1"}
FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
_WATCHED: dict = {"prefix": None, "seen": []}


def _audit(event: str, args) -> None:
    """Note every file opened or folder listed under the watched prefix (an audit hook cannot be
    removed: it does nothing unless a test watches)."""
    prefix = _WATCHED["prefix"]
    if prefix is None or event not in ("open", "os.listdir", "os.scandir") or not args:
        return
    path = args[0]
    if isinstance(path, (str, bytes, os.PathLike)):
        path = os.fsdecode(path)
        if os.path.abspath(path).startswith(prefix):
            _WATCHED["seen"].append((event, path))


sys.addaudithook(_audit)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(client, root, outside): a root with a sweep, a run and a trap study whose files and trial
    folders link to `outside`, which holds a valid run of its own."""
    top = tmp_path_factory.mktemp("fuzz")
    root, outside = top / "results", top / "outside"
    write_live_sweep(root / "live")
    write_run(root / "solo")
    write_run(outside)
    (outside / "job.yaml").write_text((outside / "job.yaml").read_text().replace("name: solo", f"name: {SENTINEL}"))
    trap = root / "trap"
    (trap / "trials").mkdir(parents=True)
    (trap / "trials" / "t0").symlink_to(outside)
    (trap / "records.csv").symlink_to(outside / "records.csv")
    (trap / "job.yaml").symlink_to(outside / "job.yaml")
    (root / "link").symlink_to(outside)
    write_run(root / "unreadable")
    (root / "unreadable" / "records.csv").write_bytes(b"step,f1\n1,\xff\n")
    client = TestClient(create_app([str(root)]), base_url="http://127.0.0.1:8300")
    return client, root, outside


@pytest.fixture
def watch(world):
    _, _, outside = world
    _WATCHED.update(prefix=str(outside), seen=[])
    yield
    _WATCHED["prefix"] = None
    assert _WATCHED["seen"] == [], _WATCHED["seen"][:5]
    assert memo.BUDGET.total <= memo.BUDGET.limit


def _check(reply, limit: int = 2_000_000) -> None:
    assert reply.status_code < 500, (reply.request.url, reply.text[:300])
    assert SENTINEL not in reply.text
    assert len(reply.content) < limit


def _path(text: str) -> str:
    """`text` as a URL path segment, byte for byte (lone surrogates as the bytes they escape)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


ANY_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)
SEGMENTS = st.sampled_from(["live", "solo", "trap", "link", "unreadable", "trials", "t0", "..", ".", "", "%2e%2e", "\\..",
                            "\x00", "job.yaml", "/", "//", "~"])
RELS = st.lists(st.one_of(SEGMENTS, ANY_TEXT), max_size=4).map("/".join)
INDEXES = st.one_of(st.sampled_from(["0", "00", "1", "-0", "+0", " 0", "\u0660", "\u00b2", "", "0x0"]), ANY_TEXT)


@st.composite
def study_ids(draw):
    return f"{draw(INDEXES)}:{draw(RELS)}" if draw(st.booleans()) else draw(ANY_TEXT)


@FUZZ
@given(sid=study_ids(), table=st.one_of(st.sampled_from(["records", "trials", "weak_scaling", "..", "%00"]), ANY_TEXT))
def test_ids_and_table_names(world, watch, sid, table):
    client = world[0]
    for url in (f"/api/studies/{_path(sid)}", f"/studies/{_path(sid)}", f"/api/studies/{_path(sid)}/job",
                f"/api/studies/{_path(sid)}/tables/{_path(table)}.csv", f"/api/compare/figures?ids={_path(sid)}"):
        _check(client.get(url))


QUERY_VALUES = st.one_of(st.integers(-10**40, 10**40).map(str), st.floats(allow_nan=True).map(str), ANY_TEXT,
                         st.sampled_from(["true", "false", "weak", "strong", "max", "min", "f1", "time_to_target"]))


@FUZZ
@given(sid=st.sampled_from(["0:live", "0:solo", "0:trap", "0:link", "0:unreadable"]),
       query=st.dictionaries(st.sampled_from(["since", "evaluations", "workers", "scaling", "metric", "mode",
                                              "target", "target_metric", "download"]), QUERY_VALUES, max_size=4))
def test_query_parameters(world, watch, sid, query):
    client = world[0]
    for endpoint in ("", "/best.yaml", "/dashboard.html"):
        if endpoint == "/dashboard.html" and sid != "0:solo":
            continue  # one dashboard is enough: each is a whole report
        limit = 8_000_000 if endpoint == "/dashboard.html" else 2_000_000  # it inlines plotly.js (4.6 MB)
        _check(client.get(f"/api/studies/{sid}{endpoint}", params=query), limit)


SPACE_KEYS = st.sampled_from(["name", "base", "set", "parameters", "study", "scheduler", "search", "num_samples",
                              "lr_scaling", "output", "failure", "max_concurrent_trials", "surprise"])
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(), ANY_TEXT,
                   st.sampled_from(["../jobs/sweep_base_tiny.yaml", "/etc/passwd", "../../outside/job.yaml",
                                    "grid", "loguniform", "asha", "f1", "weak"]))
VALUES = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(ANY_TEXT | SPACE_KEYS, inner, max_size=3)),
                      max_leaves=12)


@st.composite
def uploads(draw, outside_base: str):
    kind = draw(st.sampled_from(["mapping", "shipped", "text", "aliases"]))
    if kind == "text":
        return draw(ANY_TEXT)
    if kind == "aliases":
        return "a: &a [1, 2]\nb: [*a, *a]\nname: x\n"
    base = (launch.SPACES_DIR / "weak_scaling_small.yaml").read_text()
    data = yaml.safe_load(base) if kind == "shipped" else {}
    data.update(draw(st.dictionaries(SPACE_KEYS, VALUES, max_size=4)))
    if draw(st.booleans()):
        data["base"] = outside_base
    return yaml.safe_dump(data, allow_unicode=True)


@FUZZ
@given(data=st.data())
def test_uploaded_spaces_and_overrides(world, watch, data):
    client, root, outside = world
    text = data.draw(uploads(os.path.relpath(outside / "job.yaml", launch.SPACES_DIR)))
    overrides = data.draw(st.lists(st.one_of(ANY_TEXT, st.sampled_from(
        [f"base={outside / 'job.yaml'}", "set.train.steps=3", "name=&a x", "set.x=[*a]", "root=false"])), max_size=3))
    body = {"yaml": text, "filename": data.draw(ANY_TEXT), "overrides": overrides, "dry_run": True,
            "root": data.draw(st.one_of(st.integers(-2, 2), st.booleans(), st.none()))}
    reply = client.post("/api/submit", content=json.dumps(body).encode(), headers={**CSRF, "Content-Type": "application/json"})
    _check(reply)
    assert reply.status_code in (200, 422) and len(reply.content) < 5_000  # 422: a body that is not text (a lone surrogate)
    assert not list(launch.SPACES_DIR.glob(".upload-*"))

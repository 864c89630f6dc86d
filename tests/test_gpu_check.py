"""The GPU check's plumbing, on a machine without a GPU: `scripts/gpu_check.sh --dry-run` shows
the plan and proves that the core imports without Ray, plotly, FastAPI, uvicorn and pytest (as a
lent GPU machine has none of them); a real run refuses to pass without a visible GPU; and the
checks that a CPU can run (the product's SQuAD step, SIGKILL-and-resume through the checkpoint
code) pass here through the same runner."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import subprocess
import sys
from pathlib import Path

import pytest

from scaling_study.bench import gpu_check

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.sh"


def _script(tmp_path, *args, env=None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHON": sys.executable, "OUT": str(tmp_path / "out"), **(env or {})}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=environ, timeout=300)


def test_dry_run_shows_every_check_and_that_the_core_imports_without_ray(tmp_path):
    proc = _script(tmp_path, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "core imports: ok (17 modules import without ray, plotly, fastapi, uvicorn, pytest)" in out
    for check in gpu_check.plan():
        assert f"gpu_check run {check.name} --out" in out and f"(<= {check.budget_s}s)" in out
    assert sum(c.budget_s for c in gpu_check.plan()) <= 420  # the 360 s deadline cuts the rest
    assert "pytest -rs tests/test_optim_cuda.py" in out and "dry run: nothing was run" in out


@pytest.mark.skipif(gpu_check.gpu_report()[0], reason="this machine has a GPU")
def test_without_a_visible_gpu_the_check_fails_and_says_so(tmp_path):
    proc = _script(tmp_path)
    assert proc.returncode == 3
    assert "torch.cuda.is_available() is False: no visible GPU" in proc.stderr
    assert "needs a visible CUDA GPU; nothing was checked" in proc.stderr


def test_an_import_of_ray_by_the_core_is_caught(monkeypatch):
    monkeypatch.setattr(gpu_check, "CORE_MODULES", (*gpu_check.CORE_MODULES, "scaling_study.train.loop"))
    with pytest.raises(gpu_check.CheckFailed, match="needs a module a GPU machine lacks"):
        gpu_check.verify_imports()


def test_an_unknown_option_is_refused(tmp_path):
    proc = _script(tmp_path, "--fast")
    assert proc.returncode == 2 and "unknown option --fast; valid: --dry-run, --install" in proc.stderr


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu_check")


def _run(out, name, capsys) -> str:
    """`gpu_check run NAME` on the CPU with a tiny BERT; its verdict line."""
    ctx = gpu_check.Context(out=out / name, device="cpu", model="tiny", examples=200)
    assert gpu_check.run(name, ctx) == 0, capsys.readouterr().out[-3000:]
    return capsys.readouterr().out.splitlines()[-1]


def test_the_squad_step_check_runs_the_product_step_and_reports_one_line(out, capsys):
    line = _run(out, "squad_bf16_step", capsys)
    assert line.startswith("PASS squad_bf16_step: tiny, 30 steps: loss ") and "dev F1" in line


def test_the_checkpoint_check_kills_a_training_process_and_resumes_it_exactly_on_a_cpu(out, capsys):
    line = _run(out, "checkpoint_resume", capsys)
    assert "killed (SIGKILL) after checkpoint.write at step 4; resumed at step 4" in line
    assert line.endswith("max relative difference 0.0e+00")  # deterministic on a CPU


def test_a_failing_check_says_fail_with_the_reason(out, capsys):
    ctx = gpu_check.Context(out=out / "mlm_fp16_step", device="cpu", model="tiny")
    assert gpu_check.run("mlm_fp16_step", ctx) == 1
    verdict = capsys.readouterr().out.splitlines()[-1]
    assert verdict == "FAIL mlm_fp16_step: CheckFailed: fp16 needs CUDA (--device cuda)"


FAKE_PYTHON = """#!/usr/bin/env bash
# An interpreter that stands in for the GPU machine's: a GPU, three checks, no pytest, no Ray.
case "$*" in
  "-m scaling_study.bench.gpu_check gpu") echo "torch 9, CUDA build 13.0, driver 1; 1 GPU(s): cuda:0 Fake";;
  "-m scaling_study.bench.gpu_check plan") printf 'passes 5 first\\nhangs 2 second\\nfails 5 third\\n';;
  *" run passes "*) sleep 3; echo "PASS passes: 12 samples/s";;
  *" run hangs "*) sleep 60;;
  *" run fails "*) echo "FAIL fails: loss nan"; exit 1;;
  *) exit 1;;
esac
"""


def _fake_run(tmp_path, deadline: int) -> tuple[subprocess.CompletedProcess, list[str]]:
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)
    proc = _script(tmp_path, env={"PYTHON": str(fake), "GPU_CHECK_DEADLINE": str(deadline)})
    return proc, (tmp_path / "out" / "summary.txt").read_text().splitlines()


def test_each_verdict_is_written_as_it_comes_and_skips_count_as_not_passed(tmp_path):
    proc, summary = _fake_run(tmp_path, deadline=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # something failed
    assert summary[0].startswith("# GPU check ") and "1 GPU(s): cuda:0 Fake" in summary[0]
    rows = [line.split(None, 2) for line in summary[1:-1]]
    assert [(status, name) for status, name, _ in rows] == [
        ("PASS", "passes"), ("FAIL", "hangs"), ("FAIL", "fails"), ("SKIPPED", "CUDA"), ("SKIPPED", "Ray:"),
        ("SKIPPED", "Ray:")]
    assert rows[0][2] == "12 samples/s" and rows[1][2].startswith("timed out") and rows[2][2] == "loss nan"
    assert "(no pytest)" in rows[3][2] and all("(no Ray)" in r[2] for r in rows[4:])
    assert summary[-1].startswith("# 1 passed, 2 failed, 3 skipped (not passed)")


def test_the_deadline_skips_what_it_leaves_no_time_for(tmp_path):
    """17 s: the first check starts (15 s or more left) and takes 3 s; then too little is left."""
    proc, summary = _fake_run(tmp_path, deadline=17)
    assert [line.split()[:2] for line in summary[1:4]] == [["PASS", "passes"], ["SKIPPED", "hangs"],
                                                           ["SKIPPED", "fails"]]
    assert "(deadline: 17s reached)" in summary[2]
    assert proc.returncode == 2  # nothing failed, something did not run

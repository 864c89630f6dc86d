"""Elastic runs without Ray: the job's range and batch arithmetic, the data position carried
across a change of worker count, and the reports' segments. (On Ray itself, losing and
regaining a node: tests/test_multinode.py.)"""
import pandas as pd
import pytest
from conftest import tiny_job_data

from scaling_study.config import job_from_dict
from scaling_study.errors import ConfigError
from scaling_study.results.scaling import strong_scaling, weak_scaling
from scaling_study.results.segments import resized_runs, segments, split_resized
from scaling_study.train.state import Position
from scaling_study.train.tasks import DataFiles, build_task_data


def elastic_job(synth_dir, scaling=None, **train):
    return job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": [1, 2], **(scaling or {})},
                                       train=train))


def test_an_elastic_job_keeps_its_global_batch_and_accumulates_by_worker_count(synth_dir):
    job = elastic_job(synth_dir, per_worker_batch=4, global_batch=16)
    s = job.scaling
    assert (s.elastic, s.min_workers, s.max_workers, s.worker_counts()) == (True, 1, 2, [1, 2])
    assert [(p.grad_accum, p.global_batch) for p in job.phases(1)] == [(4, 16)]
    assert [(p.grad_accum, p.global_batch) for p in job.phases(2)] == [(2, 16)]
    assert job.phases() == job.phases(2)  # the widest group by default
    fixed = job_from_dict(tiny_job_data(synth_dir))
    assert (fixed.scaling.elastic, fixed.scaling.worker_counts()) == (False, [2])


@pytest.mark.parametrize("scaling, train, key, says", [
    ({"num_workers": [2, 2]}, {}, "scaling.num_workers", "1 <= MIN < MAX"),
    ({"num_workers": [0, 2]}, {}, "scaling.num_workers", "1 <= MIN < MAX"),
    ({"num_workers": [1, 2, 3]}, {}, "scaling.num_workers", "[MIN, MAX]"),
    ({"num_workers": [1, 3]}, {"global_batch": 8}, "train.global_batch", "valid: multiples of 24"),
    ({"num_workers": [1, 2]}, {"global_batch": None, "grad_accum": 2}, "train.grad_accum", "give train.global_batch"),
    ({"num_workers": [1, 2]}, {"global_batch": None}, "train.global_batch", "keeps the global batch fixed"),
    ({"num_workers": [1, 2], "elastic_resize_interval_s": 0}, {}, "scaling.elastic_resize_interval_s", ""),
])
def test_an_elastic_job_that_cannot_keep_its_batch_is_refused_naming_the_key(synth_dir, scaling, train, key, says):
    with pytest.raises(ConfigError) as err:
        job_from_dict(tiny_job_data(synth_dir, scaling=scaling, train=train))
    assert err.value.key == key and says in str(err.value), str(err.value)


def test_a_phase_of_an_elastic_job_needs_its_own_global_batch_when_the_job_has_none(synth_dir):
    with pytest.raises(ConfigError) as err:
        job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": [1, 2]},
                                    train={"global_batch": None, "steps": None,
                                           "phases": [{"steps": 4, "global_batch": 8}, {"steps": 4}]}))
    assert err.value.key == "train.phases[1].global_batch", str(err.value)


def _taken(task, phase, world: int, seed: int, position: Position, micro_batches: int) -> list[list[int]]:
    """The dataset rows each rank reads in its next `micro_batches` micro-batches from `position`
    (rows identified by their input ids), rank by rank."""
    out = []
    for rank in range(world):
        batches = task.micro_batches(phase, rank=rank, world=world, seed=seed, device="cpu",
                                     epoch=position.epoch, consumed=position.micro_batch)
        rows = []
        for _ in range(micro_batches):
            rows += [tuple(r.tolist()) for r in next(batches).tensors["input_ids"]]
        out.append(rows)
    return out


def test_the_data_position_converts_so_each_step_takes_the_same_samples_on_any_worker_count(synth_dir):
    """DistributedSampler deals an epoch's permutation to the ranks in turn: after 2 workers each
    consumed 18 micro-batches, 1 worker goes on from micro-batch 36, 3 from 12 and 4 from 9; a
    step of the global batch then takes the same samples on 1, 2, 3 or 4 workers."""
    from scaling_study.models import load_tokenizer

    job = job_from_dict(tiny_job_data(synth_dir, scaling={"num_workers": [1, 4]},
                                      train={"per_worker_batch": 2, "global_batch": 24}))
    task = build_task_data(job, DataFiles([synth_dir / "train.json"], [synth_dir / "dev.json"]),
                           load_tokenizer(job.model.name))
    after = Position(step=3, samples=72, micro_batch=18, world=2)  # 3 steps of 24 on 2 workers (accum 6)
    assert [after.on_world(w).micro_batch for w in (1, 2, 3, 4)] == [36, 18, 12, 9]
    assert Position(micro_batch=6).on_world(1).micro_batch == 6  # older checkpoints: left as they were
    steps = {}
    for world in (1, 2, 3, 4):
        phase = job.phases(world)[0]
        ranks = _taken(task, phase, world, job.train.seed, after.on_world(world), phase.grad_accum)
        steps[world] = sorted(row for rank in ranks for row in rank)
    assert len(steps[1]) == 24 and steps[1] == steps[2] == steps[3] == steps[4]
    # ... and they are the samples an uninterrupted 1-worker run takes at its fourth step.
    fresh = _taken(task, job.phases(1)[0], 1, job.train.seed, Position(), 48)[0]
    assert sorted(fresh[36 * 2:48 * 2]) == steps[1]


def _records(rows):
    cols = ["run", "step", "samples", "train_time_s", "num_workers", "grad_accum", "global_batch", "per_worker_batch"]
    df = pd.DataFrame(rows, columns=cols)
    df["task"], df["model"], df["optimizer"], df["device"], df["lr_rule"] = "squad", "tiny", "lamb", "cpu", "sqrt"
    df["peak_lr"], df["scaling_mode"], df["source"] = 0.01, "", "x.csv"
    return df


ELASTIC = [("e", 4, 32, 1.0, 2, 1, 8, 4), ("e", 8, 64, 2.0, 2, 1, 8, 4),    # 32 samples/s on 2 workers
           ("e", 12, 96, 4.0, 1, 2, 8, 4), ("e", 16, 128, 6.0, 1, 2, 8, 4),  # 16 samples/s on 1
           ("e", 20, 160, 7.0, 2, 1, 8, 4), ("e", 24, 192, 8.0, 2, 1, 8, 4)]


def test_segments_give_each_stretch_its_throughput_and_efficiency():
    rec = _records(ELASTIC + [("fixed", 4, 32, 1.0, 2, 1, 8, 4), ("fixed", 8, 64, 2.0, 2, 1, 8, 4)])
    assert resized_runs(rec) == ["e"]
    table = segments(rec)
    assert table[["segment", "num_workers", "grad_accum", "first_step", "last_step", "n_evals", "samples"]].values.tolist() \
        == [[0, 2, 1, 4, 8, 2, 32], [1, 1, 2, 12, 16, 2, 64], [2, 2, 1, 20, 24, 2, 64]]
    assert table["throughput"].tolist() == pytest.approx([32.0, 16.0, 32.0])
    assert table["efficiency"].tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert segments(_records(ELASTIC[:2])).empty  # a run on one worker count has no segments


def test_scaling_figures_take_an_elastic_runs_segments_as_runs_on_their_worker_counts():
    rec = _records(ELASTIC)
    split = split_resized(rec)
    assert sorted(split["run"].unique()) == ["e [1 workers, from step 12]", "e [2 workers, from step 20]",
                                             "e [2 workers, from step 4]"]
    # Weak scaling at per-worker batch 4 and accumulation 1: the two 2-worker segments are repeats.
    weak = weak_scaling(pd.concat([rec, _records([("one", 4, 16, 1.0, 1, 1, 4, 4), ("one", 8, 32, 2.0, 1, 1, 4, 4)])]))
    two = weak[(weak["num_workers"] == 2) & (weak["grad_accum"] == 1)]
    assert two["n_runs"].tolist() == [2] and two["efficiency"].tolist() == pytest.approx([1.0])
    fixed = _records([("a", 8, 64, 2.0, 1, 2, 8, 4), ("b", 8, 64, 1.0, 2, 1, 8, 4)])
    strong = strong_scaling(pd.concat([rec, fixed]))
    assert strong["n_runs"].tolist() == [1, 1], "the resized run has no time to a fixed amount of work"


def test_a_report_of_an_elastic_run_shows_its_segments_and_leaves_it_out_of_strong_scaling(tmp_path):
    from scaling_study.reports.build import build_report
    from scaling_study.reports.figures import weak_figure
    from scaling_study.results.records import Results

    rec = _records(ELASTIC)
    sections = {s.key: s for s in build_report(Results(rec, None, ("x.csv",)), None, "t").sections}
    weak = sections["weak"]
    assert weak.skipped is None and set(weak.tables) == {"segments"}, weak.skipped
    assert any("elastic runs, segment by segment" in n for n in weak.notes), weak.notes
    figure = weak_figure(weak.tables, None)
    assert [t.name for t in figure.data][:2] == ["e", "e"] and list(figure.data[0].x) == [2, 1, 2]
    assert sections["strong"].skipped, "one elastic run alone has no strong scaling"

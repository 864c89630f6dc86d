"""The word embedding's gradient all-reduced as sparse rows on CPU workers: when it applies, and
that DDP over gloo with it gives the dense result."""
import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from scaling_study.config import job_from_dict
from scaling_study.models import build_model, load_tokenizer
from scaling_study.train.setup import _use_sparse_embedding_grads

CPU = torch.device("cpu")


def job(task="squad", **scaling):
    return job_from_dict({"name": "j", "task": task, "data": {"train": "t", "dev": "d"},
                          "scaling": {"num_workers": 2, **scaling}, "train": {"steps": 1}})


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def test_only_where_it_shrinks_the_all_reduce(tokenizer):
    qa = build_model("tiny", "squad", tokenizer, seed=0)
    assert _use_sparse_embedding_grads(job(), qa, CPU, world=2) == [qa.bert.embeddings.word_embeddings.weight]
    assert qa.bert.embeddings.word_embeddings.sparse
    for args in ((job(), CPU, 1), (job(), torch.device("cuda"), 2), (job(sparse_embedding_allreduce=False), CPU, 2)):
        fresh = build_model("tiny", "squad", tokenizer, seed=0)
        assert _use_sparse_embedding_grads(args[0], fresh, *args[1:]) == []
        assert not fresh.bert.embeddings.word_embeddings.sparse
    mlm = build_model("tiny", "mlm", tokenizer, seed=0)  # decoder tied to the input embedding
    assert _use_sparse_embedding_grads(job("mlm"), mlm, CPU, world=2) == []


def _worker(rank, port, sparse, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    model = build_model("tiny", "squad", load_tokenizer("default"), seed=0)
    model.eval()  # no dropout: both runs see the same function
    params = _use_sparse_embedding_grads(job(sparse_embedding_allreduce=sparse), model, CPU, world=2)
    ddp = torch.nn.parallel.DistributedDataParallel(model, gradient_as_bucket_view=True)
    g = torch.Generator().manual_seed(rank)
    for _ in range(2):  # two micro-batches accumulated without sync, as grad_accum does
        ids = torch.randint(1000, 3000, (2, 16), generator=g)
        with ddp.no_sync() if _ == 0 else torch.enable_grad():
            ddp(input_ids=ids, start_positions=torch.tensor([1, 2]), end_positions=torch.tensor([3, 4])).loss.backward()
    grad = model.bert.embeddings.word_embeddings.weight.grad
    assert grad.is_sparse == bool(params)
    if rank == 0:
        torch.save(grad.to_dense() if grad.is_sparse else grad.clone(), out)
    dist.destroy_process_group()
    # gloo's threads can outlive the group and abort the process in C++ static destructors at
    # exit ("terminate called without an active exception"): leave without running them.
    os._exit(0)


def test_sparse_all_reduce_equals_the_dense_one(tmp_path):
    import socket

    grads = {}
    for sparse in (False, True):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        out = tmp_path / f"{sparse}.pt"
        mp.spawn(_worker, args=(port, sparse, str(out)), nprocs=2)
        grads[sparse] = torch.load(out)
    assert grads[False].abs().sum() > 0
    torch.testing.assert_close(grads[True], grads[False], rtol=1e-5, atol=1e-7)

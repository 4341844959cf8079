"""The parts of data-parallel training that need no MPI launch: which indices each rank reads
(against ``torch.utils.data.DistributedSampler``), the shard loader against the one-process
loader, launch detection (no mpi4py import on the plain path), the agreement check, the
gradient buckets' hooks, the BatchNorm reducer hook and the resume checks of the world size.
Runs under ``mpiexec`` are in ``test_distributed_mpi.py``."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from rot180.data import load_dataset
from rot180.models import build_model
from rot180.nn import BatchNorm2d, SoftmaxCrossEntropy
from rot180.train import distributed as D
from rot180.train._buckets import GradientBuckets, plan_buckets
from rot180.train._resume import check_resume
from rot180.train.checkpoint import load_checkpoint
from rot180.train.config import TrainConfig
from rot180.train.trainer import Trainer

# -- shards ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("n", "ranks"), [(12, 4), (10, 3), (13, 2), (7, 4), (2, 5), (1, 3)])
def test_shards_are_distributed_samplers(n, ranks) -> None:
    """The same permutation gives DistributedSampler's index lists (padding included)."""
    for seed in (0, 5):
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
        for rank in range(ranks):
            ours = D.shard_indices(perm, ranks, rank)
            theirs = list(DistributedSampler(range(n), num_replicas=ranks, rank=rank,
                                             shuffle=True, seed=seed, drop_last=False))
            assert ours.tolist() == theirs


def labelled(n: int):
    """A data set whose label is the image's index."""
    d = load_dataset("digits8x8", split="train")
    return dataclasses.replace(d, images=d.images[:n], labels=np.arange(n))


def rank_batches(data, ranks, rank, batch, seed, augment=False):
    loader = D.ShardLoader(data, batch_size=batch, rank=rank, size=ranks,
                           rng=np.random.default_rng(seed), augment=augment,
                           dtype=np.dtype(np.float64))
    return len(loader), list(loader)


@pytest.mark.parametrize(("n", "ranks", "batch"), [(23, 3, 4), (10, 4, 2), (9, 2, 5)])
def test_shard_loader_reads_the_sampler_order_with_a_remainder(n, ranks, batch) -> None:
    perm = np.random.default_rng(1).permutation(n)
    lengths = set()
    for rank in range(ranks):
        length, got = rank_batches(labelled(n), ranks, rank, batch, seed=1)
        lengths.add((length, tuple(len(y) for _, y in got)))
        assert np.concatenate([y for _, y in got]).tolist() == \
            D.shard_indices(perm, ranks, rank).tolist()
    assert len(lengths) == 1          # every rank takes as many steps, of the same sizes
    assert lengths.pop()[0] == math.ceil(math.ceil(n / ranks) / batch)


def test_shard_loader_rebuilds_the_global_batch_with_its_augmentation() -> None:
    """N ranks' k-th batches, interleaved, are batch k of one loader with batch N b, bit for
    bit, augmentation (random shifts) included."""
    data = load_dataset("digits8x8", split="train")
    ranks, batch = 3, 8
    data = dataclasses.replace(data, images=data.images[:1437], labels=data.labels[:1437])
    single = list(data.loader(batch_size=ranks * batch, shuffle=True,
                              rng=np.random.default_rng(4), augment=True, dtype=np.float64))
    per_rank = [rank_batches(data, ranks, r, batch, seed=4, augment=True)[1]
                for r in range(ranks)]
    assert len(per_rank[0]) == len(single)
    for k, (x, y) in enumerate(single):
        xs = np.empty_like(x)
        ys = np.empty_like(y)
        for r in range(ranks):
            xs[r::ranks], ys[r::ranks] = per_rank[r][k]
        assert np.array_equal(xs, x) and np.array_equal(ys, y)


def test_held_out_parts_cover_every_image_once() -> None:
    for n, ranks in ((359, 2), (144, 3), (2, 3)):
        parts = [D.shard_range(n, ranks, r) for r in range(ranks)]
        assert parts[0][0] == 0 and parts[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


# -- launch detection and agreement ---------------------------------------------------------------

@pytest.mark.parametrize(("env", "expected"), [
    ({}, False), ({"PMI_SIZE": "1", "PMI_RANK": "0"}, False), ({"PMI_SIZE": "4"}, True),
    ({"OMPI_COMM_WORLD_SIZE": "2"}, True), ({"SLURM_NTASKS": "8"}, False),
    ({"SLURM_STEP_NUM_TASKS": "8", "SLURM_PROCID": "3"}, True), ({"PMI_SIZE": "x"}, False)])
def test_launch_detection(env, expected) -> None:
    assert D.launched_by_mpi(env) is expected


@pytest.mark.parametrize(("kw", "expected"), [
    ({"local_ranks": 4, "cpus": 8, "usable": 8, "env": {}}, 2),
    ({"local_ranks": 3, "cpus": 2, "usable": 2, "env": {}}, 1),       # oversubscribed
    ({"local_ranks": 32, "cpus": 64, "usable": 4, "env": {}}, 4),     # srun bound 4 cores
    ({"local_ranks": 2, "cpus": 8, "usable": 8, "env": {"OMP_NUM_THREADS": "3"}}, None)])
def test_threads_per_rank(kw, expected) -> None:
    assert D.threads_per_rank(**kw) == expected


def test_plain_training_never_imports_mpi4py() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PMI_", "OMPI_", "SLURM_"))}
    code = ("import sys; from rot180.commands import train; from rot180.train import "
            "distributed as D; w = D.world(); assert type(w) is D.Single, w; "
            "assert 'mpi4py' not in sys.modules, 'mpi4py imported'")
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class _Gathered(D.Single):
    """A world of several ranks whose allgather returns what the test says they hold."""

    def __init__(self, rows):
        self.rows, self.size = rows, len(rows)

    def allgather_object(self, obj):   # each rank's facts as check_agreement sends them
        return [{k: json.dumps(v, sort_keys=True) for k, v in row.items()} for row in self.rows]


def test_disagreeing_ranks_are_named() -> None:
    same = {"setting seed": 0, "training data": "ab12"}
    D.check_agreement(_Gathered([same, dict(same)]), same)
    other = {"setting seed": 0, "training data": "ff00"}
    with pytest.raises(D.RanksDisagree, match=r"training data \(rank 0: \"ab12\"; rank 1: "
                                              r"\"ff00\"; rank 2: \"ab12\"\)"):
        D.check_agreement(_Gathered([same, other, same]), same)


# -- gradient buckets, without MPI ----------------------------------------------------------------

class _Request:
    def __init__(self, log, what):
        self.log, self.what = log, what

    def Test(self):   # noqa: N802 - mpi4py's names
        return True

    def Wait(self):   # noqa: N802
        self.log.append(("wait", self.what))


class _OneRankComm:
    """mpi4py's two non-blocking collectives on one rank, logging when they start."""

    def __init__(self, log, probe):
        self.log, self.probe = log, probe

    def Ialltoall(self, send, recv):   # noqa: N802
        recv[...] = send
        self.log.append(("alltoall", self.probe()))
        return _Request(self.log, "alltoall")

    def Iallgather(self, send, recv):   # noqa: N802
        recv[0] = send
        self.log.append(("allgather", send.size))
        return _Request(self.log, "allgather")


class _OneRank(D.Single):
    def __init__(self, log, probe):
        self.grad_comm = self.gather_comm = _OneRankComm(log, probe)


def test_plan_takes_parameters_in_reverse_order() -> None:
    model = build_model("resnet_small", seed=0, num_classes=10, in_channels=1)
    params = list(model.parameters())
    plan = plan_buckets(params, 40_000)
    assert [i for b in plan for i in b] == list(reversed(range(len(params))))
    assert len(plan) > 2
    for b in plan:
        assert len(b) == 1 or sum(params[i].grad.nbytes for i in b) <= 40_000


def test_buckets_start_during_the_backward_pass() -> None:
    model = build_model("resnet_small", seed=0, num_classes=10, in_channels=1)
    model.astype(np.float64)
    twin = copy.deepcopy(model)
    log: list = []
    first = next(iter(model.parameters()))   # the input layer's: its backward runs last
    grads = GradientBuckets(model, _OneRank(log, lambda: not first.grad.any()),
                            bucket_bytes=40_000)
    x = np.random.default_rng(0).normal(size=(4, 1, 8, 8))
    y = np.array([0, 1, 2, 3])
    for m in (model, twin):
        loss = SoftmaxCrossEntropy()
        loss.forward(m.forward(x), y)
        if m is model:
            grads.begin()
            model.backward_params(loss.backward())
            during = len(log)
            grads.finish()
        else:
            m.backward_params(loss.backward())
    starts = [e for e in log if e[0] == "alltoall"]
    assert len(starts) == len(grads.buckets) > 2
    assert starts[0][1] and not starts[-1][1]   # the first went out before the input layer ran
    assert during == 2 * len(grads.buckets)   # every bucket went out before finish()
    for p, q in zip(model.parameters(), twin.parameters(), strict=True):
        assert np.array_equal(p.grad, q.grad)   # one rank: the average is the gradient
    grads.close()
    assert "backward" not in next(m for _, m in model.named_modules() if m._parameters).__dict__


def test_sync_bn_hook_on_one_rank_is_the_batch_rule() -> None:
    """With an identity reducer (one rank), the synchronised path of BatchNorm computes the
    plain rule's output, running statistics and gradients."""
    rng = np.random.default_rng(2)
    x, dy = rng.normal(size=(6, 3, 4, 4)), rng.normal(size=(6, 3, 4, 4))
    plain, synced = BatchNorm2d(3, dtype=np.float64), BatchNorm2d(3, dtype=np.float64)
    synced.sum_over_ranks = lambda v: np.asarray(v, np.float64)
    for bn in (plain, synced):
        bn.weight.data[...] = [0.5, 2.0, -1.0]
    y0, y1 = plain.forward(x), synced.forward(x)
    np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(synced.running_var, plain.running_var, rtol=1e-13)
    np.testing.assert_allclose(synced.backward(dy), plain.backward(dy), rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(synced.weight.grad, plain.weight.grad, rtol=1e-12)


class _ThreadRanks:
    """``sum_over_ranks`` for ranks that are threads of this process: each puts its vector in
    its slot, and every one adds the slots in rank order (as World.sum does)."""

    def __init__(self, ranks):
        self.slots = [None] * ranks
        self.barrier = threading.Barrier(ranks)

    def reducer(self, rank):
        def total(v):
            self.slots[rank] = np.asarray(v, np.float64)
            self.barrier.wait()
            out = self.slots[0].copy()
            for other in self.slots[1:]:
                out += other
            self.barrier.wait()        # every rank has read the slots before the next call
            return out
        return total


@pytest.mark.parametrize("relu", [False, True])
def test_sync_bn_over_three_ranks_is_the_whole_batch(relu) -> None:
    """Three ranks (threads) with parts of a batch of 10 (4, 3, 3) give, part by part, the
    output and input gradient of BatchNorm on the whole batch, their weight gradients add up to
    its, and their running statistics are its (a Sequential with a ReLU folds the mask in)."""
    from rot180.nn import ReLU, Sequential

    rng = np.random.default_rng(3)
    x, dy = rng.normal(size=(10, 4, 3, 5)), rng.normal(size=(10, 4, 3, 5))
    parts = [slice(0, 4), slice(4, 7), slice(7, 10)]

    def layer():
        bn = BatchNorm2d(4, dtype=np.float64)
        bn.weight.data[...] = [0.5, 2.0, -1.0, 1.5]
        bn.bias.data[...] = [0.1, -0.2, 0.0, 0.3]
        return bn, (Sequential(bn, ReLU()) if relu else bn)

    whole_bn, whole = layer()
    y = whole.forward(x)
    dx = whole.backward(dy)
    ranks = _ThreadRanks(3)
    results = [None] * 3

    def rank(r):
        bn, net = layer()
        bn.sum_over_ranks = ranks.reducer(r)
        results[r] = (net.forward(x[parts[r]]), net.backward(dy[parts[r]]), bn)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    for r, (yr, dxr, bn) in enumerate(results):
        np.testing.assert_allclose(yr, y[parts[r]], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(dxr, dx[parts[r]], rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(bn.running_mean, whole_bn.running_mean, rtol=1e-12)
        np.testing.assert_allclose(bn.running_var, whole_bn.running_var, rtol=1e-12)
    for name in ("weight", "bias"):
        np.testing.assert_allclose(sum(getattr(res[2], name).grad for res in results),
                                   getattr(whole_bn, name).grad, rtol=1e-12, atol=1e-13)


# -- resume and the number of ranks ---------------------------------------------------------------

def test_resume_refuses_another_number_of_ranks(tmp_path) -> None:
    cfg = TrainConfig(model="resnet_small", data="digits8x8", epochs=1, batch_size=64,
                      out=str(tmp_path / "run"))
    Trainer(cfg, progress=False, log=lambda _line: None).fit()
    path = tmp_path / "run" / "last.safetensors"
    ckpt = load_checkpoint(path)
    assert ckpt.meta["world_size"] == 1
    ckpt.meta["world_size"] = 2
    with pytest.raises(ValueError, match=r"run on 2 process\(es\).*this one has 1.*mpiexec -n 2"):
        check_resume(cfg, ckpt, path, 1)
    check_resume(cfg, ckpt, path, 2)
    # A checkpoint from before --sync-bn existed resumes as sync_bn=False.
    del ckpt.meta["config"]["sync_bn"]
    check_resume(cfg, ckpt, path, 2)
    with pytest.raises(ValueError, match="sync_bn: saved False, now True"):
        check_resume(TrainConfig(**{**cfg.__dict__, "sync_bn": True}), ckpt, path, 2)

"""Data-parallel runs under torchrun or SLURM: who this process is (rank, world size), the process
group, and the few collectives that the training loops and pairs production share.

Without a launcher nothing here does anything: one process, rank 0 of 1, no process group, so the
single-process code paths and results stay as they were.

Where the rank comes from (first match wins):

* torchrun (``python -m torch.distributed.run``): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``; it also sets
  ``MASTER_ADDR`` / ``MASTER_PORT``.
* SLURM, one task per process started by ``srun``: ``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``
  (only inside an ``srun`` step, i.e. with ``SLURM_STEP_ID`` set: a batch script itself is not a rank).
  ``MASTER_ADDR`` must be exported by the batch script (the first host of the allocation);
  ``MASTER_PORT`` defaults to 29500. See docs/cluster.md.

Backend: NCCL when the process uses a CUDA device, gloo otherwise (CPU runs and the tests).
"""
from __future__ import annotations

import contextlib
import contextvars
import datetime
import os
from dataclasses import dataclass
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

from .errors import AvatarToolError

DEFAULT_MASTER_PORT = "29500"
# how long a rank may wait in a collective: in a build the others wait while rank 0 alone runs a serial
# stage (export, evaluation), which can take long on a paper-scale run
BUILD_TIMEOUT_S = float(os.environ.get("AVATARTOOL_DIST_TIMEOUT_S", 6 * 3600))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    source: str = "single"   # "single" | "torchrun" | "slurm"

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int(env: Mapping[str, str], key: str) -> int:
    try:
        return int(env[key])
    except ValueError:
        raise AvatarToolError(f"environment variable {key}={env[key]!r} is not an integer; fix the launcher settings")


def detect(env: Mapping[str, str] | None = None) -> DistInfo:
    """Rank and world size from a torchrun or SLURM environment; one process of one without either."""
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistInfo(_int(env, "RANK"), _int(env, "WORLD_SIZE"), _int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0,
                        "torchrun")
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env and "SLURM_STEP_ID" in env:
        return DistInfo(_int(env, "SLURM_PROCID"), _int(env, "SLURM_NTASKS"),
                        _int(env, "SLURM_LOCALID") if "SLURM_LOCALID" in env else 0, "slurm")
    return DistInfo()


_LOCAL_ONLY: contextvars.ContextVar[bool] = contextvars.ContextVar("local_only", default=False)


@contextlib.contextmanager
def local_only() -> Iterator[None]:
    """Code in this block runs on one rank alone (rank 0 doing a serial stage): it sees one process, so
    nothing inside waits for ranks that are not there."""
    token = _LOCAL_ONLY.set(True)
    try:
        yield
    finally:
        _LOCAL_ONLY.reset(token)


def info() -> DistInfo:
    """This process's place: from the live process group when there is one, else from the environment."""
    if _LOCAL_ONLY.get():
        return DistInfo(local_rank=detect().local_rank)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        d = detect()
        return DistInfo(torch.distributed.get_rank(), torch.distributed.get_world_size(), d.local_rank, d.source)
    return detect()


def active() -> bool:
    """True inside an initialised process group of more than one process."""
    return (not _LOCAL_ONLY.get() and torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def device_for_rank(device: str | torch.device | None = None, local_rank: int | None = None) -> torch.device:
    """``device`` as given (``cuda`` without an index: this rank's GPU, ``cuda:LOCAL_RANK``); else this
    rank's GPU when CUDA is there, else CPU."""
    rank = info().local_rank if local_rank is None else local_rank
    if device is not None:
        dev = torch.device(device)
        if dev.type == "cuda" and dev.index is None:
            # modulo: a scheduler that binds one GPU per task shows each rank a single device
            return torch.device("cuda", rank % max(1, torch.cuda.device_count()))
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda", rank % torch.cuda.device_count())
    return torch.device("cpu")


@contextlib.contextmanager
def process_group(device: str | torch.device | None = None, timeout_s: float = 1800.0) -> Iterator[DistInfo]:
    """Join the process group the launcher described (no-op for one process) and leave it at the end.

    Re-entrant: inside an already initialised group it only yields, so stages can each wrap their work."""
    d = detect()
    if not d.enabled or torch.distributed.is_initialized():
        yield info()
        return
    env = os.environ
    if "MASTER_ADDR" not in env:
        raise AvatarToolError(f"{d.source} started {d.world_size} processes but MASTER_ADDR is not set; export it "
                              "(the first host of the allocation, see docs/cluster.md)")
    os.environ.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)
    dev = device_for_rank(device, d.local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    torch.distributed.init_process_group(backend, init_method="env://", rank=d.rank, world_size=d.world_size,
                                         timeout=datetime.timedelta(seconds=timeout_s))
    try:
        yield d
    finally:
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if active():
        torch.distributed.barrier()


def broadcast_object(obj):
    """``obj`` from rank 0 on every rank (picklable, small: paths, summaries)."""
    if not active():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new tensor on ``t``'s device; ``t`` itself when single). NCCL reduces CUDA
    tensors only, so a CPU tensor (logged values) travels through this rank's GPU there."""
    if not active():
        return t
    work = t.detach().clone()
    if torch.distributed.get_backend() == "nccl" and work.device.type != "cuda":
        work = work.to(torch.device("cuda", torch.cuda.current_device()))
    torch.distributed.all_reduce(work)
    return work.to(t.device)


def all_gather_objects(obj) -> list:
    if not active():
        return [obj]
    out = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank (so all replicas start from one state)."""
    if not active():
        return
    for t in list(module.parameters()) + list(module.buffers()):
        torch.distributed.broadcast(t.data, src=0)


@torch.no_grad()
def average_gradients(params: Iterable[torch.Tensor]) -> None:
    """Replace each ``.grad`` by its mean over ranks, in one flat all-reduce (as NVlabs' StyleGAN trainers
    do; used where DistributedDataParallel does not fit: several forward passes through model methods per
    step). Parameters without a gradient are skipped: every rank runs the same graph, so they match."""
    if not active():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    torch.distributed.all_reduce(flat)
    flat /= torch.distributed.get_world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def rank_share(n: int, world: int, rank: int) -> slice:
    """Contiguous share of ``n`` items for ``rank``: sizes differ by at most one, earlier ranks larger."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def group_preserving_rows(batch: int, world: int, rank: int, group: int) -> list[int]:
    """Rows of a global batch for ``rank`` such that the discriminator's minibatch-stddev groups (rows ``j``
    with equal ``j mod (batch / group)``, see discriminator.py) fall on one rank whole and in the same order,
    so a rank's local batch forms exactly the global groups. Needs ``(batch / group) % world == 0``."""
    if batch % world:
        raise AvatarToolError(f"batch size {batch} is not a multiple of the {world} processes; choose a batch size "
                              "that divides evenly")
    g = min(batch, group)
    while batch % g:
        g -= 1
    cols = batch // g
    if cols % world:
        # groups cannot stay whole: equal contiguous shares (each rank forms its own groups, as in
        # StyleGAN2-ADA's DDP training); equal to one process in distribution, not in value.
        return list(range(*rank_share(batch, world, rank).indices(batch)))
    per = cols // world
    return [k * cols + c for k in range(g) for c in range(rank * per, (rank + 1) * per)]


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is the sum of the ranks' gradients (each rank's output feeds its own
    loss; the input's gradient collects all of them)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        torch.distributed.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are taken over the global batch of all ranks, on any device
    (torch's SyncBatchNorm accepts GPU tensors only; this is used on CPU/gloo). Statistics are exact
    two-pass sums all-reduced with autograd, so forward, backward and running averages equal BatchNorm
    on the concatenated batch up to float summation order."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and active()):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        n_local = x.new_tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=torch.float32)
        count = all_reduce(n_local)
        mean = all_reduce(x.float().sum((0, 2, 3))) / count
        centred = x.float() - mean.view(1, -1, 1, 1)
        var = all_reduce(centred.pow(2).sum((0, 2, 3))) / count
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var.detach() * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), m)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch statistics over all ranks: torch's SyncBatchNorm on CUDA, :class:`GlobalBatchNorm2d` elsewhere.
    State-dict keys stay those of BatchNorm2d, so checkpoints load into the plain model."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_global_bn(module)


def _convert_global_bn(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        new = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        new.load_state_dict(module.state_dict())
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, _convert_global_bn(child))
    return module


def on_main(fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` on rank 0 alone (inside :func:`local_only`); every rank returns its result
    (picklable) or raises: rank 0 its own error, the others an error naming it."""
    if not active():
        return fn(*args, **kwargs)
    result, error = None, None
    if info().is_main:
        try:
            with local_only():
                result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised below, after telling the other ranks
            error = exc
    status, value = broadcast_object(("error", f"{type(error).__name__}: {error}") if error is not None else ("ok", result))
    if error is not None:
        raise error
    if status == "error":
        raise AvatarToolError(f"rank 0 failed: {value}")
    return value


def main_only_write(fn, *args, **kwargs):
    """Call ``fn`` on rank 0 only, then wait for it on every rank (shared-filesystem writes)."""
    result = fn(*args, **kwargs) if info().is_main else None
    barrier()
    return result

"""Data parallel training with ``torchrun`` (torch.distributed; gloo on CPU, nccl on GPU).

Launch any stage with ``torchrun --nproc_per_node=N -m reasonlab.cli <stage> ...``; without
torchrun's environment everything here is a no-op for a single process (rank 0 of 1), so stages
call these helpers unconditionally.

The recipe the stages follow:

- ``info = dist_setup()`` once (reads ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, picks the backend
  and the device: ``cuda:LOCAL_RANK`` with nccl when CUDA is available, else cpu with gloo);
- every rank builds the same model from the same seed (or ``broadcast_params`` from rank 0);
- each rank takes its rows of the global batch (``shard_rows`` / ``shard_slice``);
- the loss of a rank is scaled to its share of the global token count (``token_share``), then
  ``all_reduce_grads`` averages gradients, so every rank applies the update of the global batch
  and the parameters stay identical without ever being sent;
- only ``is_main()`` writes artifacts and checkpoints; ``barrier()`` before others read them.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def is_dist() -> bool:
    """True inside an initialised process group with more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main() -> bool:
    """Rank 0 (or a single process): the one that writes artifacts."""
    return rank() == 0


def dist_setup(backend: str | None = None) -> DistInfo:
    """Join the process group described by torchrun's environment variables (idempotent).

    Without ``WORLD_SIZE`` > 1 in the environment this returns ``DistInfo()`` (one cpu process).
    ``backend`` None: nccl when CUDA is available, else gloo."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    use_cuda = torch.cuda.is_available() and backend != "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"))
    device = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local, device)


def dist_teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_dist():
        dist.barrier()


def shard_slice(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """Rows of a global batch of ``n`` that belong to ``rank_``: contiguous, equal-sized blocks.

    >>> shard_slice(8, 1, 2)
    slice(4, 8, None)
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    if n % world:
        raise ValueError(f"batch of {n} does not split evenly over {world} processes: "
                         f"use a batch size divisible by the world size")
    per = n // world
    return slice(rank_ * per, (rank_ + 1) * per)


def shard_rows(x, rank_: int | None = None, world: int | None = None):
    """This rank's block of rows of a tensor or list (see ``shard_slice``)."""
    return x[shard_slice(len(x), rank_, world)]


def block_slice(n: int, rank_: int | None = None, world: int | None = None) -> slice:
    """Like ``shard_slice`` for any ``n``: contiguous blocks whose sizes differ by at most one (the
    first ``n % world`` ranks hold one more; a rank may hold none).

    >>> [block_slice(5, r, 2) for r in range(2)]
    [slice(0, 3, None), slice(3, 5, None)]
    """
    rank_ = rank() if rank_ is None else rank_
    world = world_size() if world is None else world
    per, extra = divmod(n, world)
    lo = rank_ * per + min(rank_, extra)
    return slice(lo, lo + per + (rank_ < extra))


def comm_device() -> torch.device:
    """Where small tensors for collectives live: the current GPU under nccl, else the cpu."""
    if is_dist() and dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(x: torch.Tensor) -> torch.Tensor:
    """Sum of ``x`` over ranks (a new tensor on ``x``'s device; ``x`` itself on a single process)."""
    if not is_dist():
        return x
    out = x.detach().to(comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(x.device)


def token_share(n_local: int | torch.Tensor) -> float:
    """``world * n_local / n_global``: multiply a rank's mean loss by this before backward, so
    the averaged gradients equal those of the mean loss over the global batch even when ranks
    hold different numbers of loss tokens. 1.0 on a single process."""
    if not is_dist():
        return 1.0
    local = torch.as_tensor(n_local, dtype=torch.float64).cpu()
    total = all_reduce_sum(local)
    return float(world_size() * local / total.clamp(min=1))


def all_reduce_grads(model: torch.nn.Module) -> None:
    """Average the gradients of ``model`` over ranks, in place (one flat all-reduce). A parameter
    that has a gradient on some rank but not on this one (e.g. a rank whose shard of the batch is
    empty) joins with zeros; one that has none anywhere keeps ``grad = None``."""
    if not is_dist():
        return
    params = [p for p in model.parameters() if p.requires_grad]
    have = torch.tensor([float(p.grad is not None) for p in params], device=comm_device())
    dist.all_reduce(have, op=dist.ReduceOp.SUM)
    for p, h in zip(params, have.tolist()):
        if h > 0 and p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def all_reduce_mean(value: float) -> float:
    """Mean of a python number over ranks (e.g. a logged loss)."""
    if not is_dist():
        return value
    return float(all_reduce_sum(torch.tensor([float(value)], dtype=torch.float64))) / world_size()


def all_gather_objects(x) -> list:
    """Every rank's ``x`` (any picklable object), in rank order; ``[x]`` on a single process."""
    if not is_dist():
        return [x]
    out = [None] * world_size()
    dist.all_gather_object(out, x)
    return out


def agree(x):
    """Rank 0's ``x`` (any picklable object) on every rank, e.g. a decision to stop that rests on
    a rank's own clock; ``x`` itself on a single process."""
    return all_gather_objects(x)[0] if is_dist() else x


def broadcast_params(model: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (in place)."""
    if not is_dist():
        return
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src)

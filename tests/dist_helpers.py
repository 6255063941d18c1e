"""Running a function on several gloo processes in a test (torch.multiprocessing spawn)."""
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from reasonlab.train.distributed import dist_setup, dist_teardown


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world: int, port: int, fn, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist_setup(backend="gloo")
    try:
        torch.save(fn(), Path(out) / f"rank{rank}.pt")
    finally:
        dist_teardown()


def on_ranks(fn, tmp_path, world: int = 2) -> list:
    """``fn()`` on ``world`` gloo processes -> each rank's result."""
    mp.spawn(_entry, args=(world, free_port(), fn, str(tmp_path)), nprocs=world, join=True)
    return [torch.load(Path(tmp_path) / f"rank{r}.pt", weights_only=False) for r in range(world)]

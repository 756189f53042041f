"""Run a function in N local processes joined by a gloo process group (CPU), as torchrun would."""
from __future__ import annotations

import os
import socket
from typing import Any, Callable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, fn: Callable[..., Any], world: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), OMP_NUM_THREADS="1")
    import torch
    torch.set_num_threads(1)
    from toolchain.distributed import process_group
    with process_group(device="cpu"):
        fn(*args)


def run_ranks(fn: Callable[..., Any], world: int, *args: Any) -> None:
    """``fn(*args)`` on ``world`` spawned ranks; raises if any rank fails."""
    import torch.multiprocessing as mp
    # fork: the children inherit the imported torch (a fresh interpreter per rank costs ~10 s on a busy
    # 2-core machine); safe here as the tests run single-threaded (OMP_NUM_THREADS=1)
    mp.start_processes(_entry, args=(fn, world, free_port(), args), nprocs=world, join=True, start_method="fork")

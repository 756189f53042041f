"""``--nproc-per-node N``: restart the current command under torchrun, one process per GPU (or CPU worker).

Only for one node; several nodes start ``torchrun`` (or ``srun``) themselves with the same avatartool
arguments (docs/cluster.md). Inside a torchrun or SLURM rank nothing is relaunched.
"""
from __future__ import annotations

import subprocess
import sys
from typing import Sequence

from . import distributed
from .errors import AvatarToolError

OPTION = "--nproc-per-node"


def without_option(argv: Sequence[str], option: str = OPTION) -> list[str]:
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == option:
            skip = True
        elif not a.startswith(option + "="):
            out.append(a)
    return out


def torchrun_command(argv: Sequence[str], nproc: int) -> list[str]:
    """The torchrun command that runs ``avatartool <argv>`` in ``nproc`` local processes."""
    if nproc < 1:
        raise AvatarToolError(f"{OPTION} must be at least 1, got {nproc}")
    # "--": torchrun's parser would otherwise take our options for abbreviations of its own (--run)
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "--", "toolchain.cli.main", *without_option(argv)]


def should_launch(nproc: int | None) -> bool:
    """True when this process should start torchrun: more than one process asked for and not already a rank."""
    return bool(nproc and nproc > 1 and not distributed.detect().enabled)


def relaunch(argv: Sequence[str], nproc: int) -> int:
    """Run ``avatartool <argv>`` under torchrun and return its exit status."""
    return subprocess.call(torchrun_command(argv, nproc))

"""Which arithmetic GAN training (and the inversion's generator pass) runs in: float32, or bfloat16 autocast
where the hardware does bf16 natively.

On CUDA, training has always run under bf16 autocast. On a CPU, bf16 is worth it where the cores multiply bf16
natively (Intel AMX or AVX512-BF16): on a 2-core Xeon with AMX its convolutions ran 1.7x (forward) to 2.2x
(backward) faster, a whole ``face64`` G_real step 1.4x (benchmarks/results/gan_speed.md). Without native bf16 the
CPU would emulate it, so ``auto`` keeps float32 there. The resolved choice is recorded with the weights (it
changes them), never the word ``auto``.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from .errors import AvatarToolError

PRECISIONS = ("auto", "bf16", "fp32")
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """True when the CPU flags name AMX-BF16 or AVX512-BF16 (Linux; elsewhere False: float32 is the safe side)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in _NATIVE_BF16_FLAGS)


def check_precision(setting: str, key: str = "precision") -> str:
    """``setting`` if it is one of :data:`PRECISIONS`, else a clear error naming ``key``."""
    if setting not in PRECISIONS:
        raise AvatarToolError(f"{key}={setting!r}: expected one of {', '.join(PRECISIONS)} (auto: bf16 on CUDA and on "
                              "CPUs with native bf16, float32 elsewhere)")
    return setting


def resolve_precision(setting: str, device: Any) -> str:
    """``bf16`` or ``fp32`` for ``setting`` on ``device`` (a ``torch.device`` or its name; ``auto``: bf16 on
    CUDA and on native-bf16 CPUs). Imports no torch, so configs are checked without it."""
    check_precision(setting)
    if setting != "auto":
        return setting
    kind = getattr(device, "type", None) or str(device).split(":")[0]
    if kind == "cuda":
        return "bf16"
    return "bf16" if kind == "cpu" and cpu_has_native_bf16() else "fp32"

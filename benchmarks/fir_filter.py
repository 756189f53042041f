"""The generator's FIR filter (``toolchain.generators.layers.fir_filter``) against the two plain forms it
replaced: three chained 2x2 average pools (the previous code) and one depthwise 4x4 convolution.

    python -m benchmarks.fir_filter [--threads 1] [--repeats 20]

Each form runs forward + backward + double backward (what R1 and path-length regularisation and the
inversion's gradients cost) on tensors of the shapes the generators filter; the median of ``--repeats``
timed runs after warm-up. Writes ``benchmarks/results/fir_filter.{json,md}``.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks._report import RESULTS, write_report
from toolchain.generators.layers import fir_filter, fir_kernel

# (batch, channels, size): render-net maps at the smoke / cpu presets and a large one
SHAPES = ((8, 512, 8), (8, 512, 16), (8, 256, 64), (4, 128, 128), (2, 64, 256))
PAD = (2, 1)   # upsample2x's padding


def avg_pools(x: torch.Tensor, gain: float) -> torch.Tensor:
    x = F.pad(x, (PAD[0], PAD[1], PAD[0], PAD[1]))
    for _ in range(3):
        x = F.avg_pool2d(x, 2, stride=1)
    return x * gain


def depthwise(x: torch.Tensor, gain: float) -> torch.Tensor:
    k = (fir_kernel() * gain).to(x.dtype).expand(x.shape[1], 1, 4, 4)
    return F.conv2d(F.pad(x, (PAD[0], PAD[1], PAD[0], PAD[1])), k, groups=x.shape[1])


def ours(x: torch.Tensor, gain: float) -> torch.Tensor:
    return fir_filter(x, fir_kernel(gain=gain), PAD)


def step(fn, x: torch.Tensor) -> None:
    y = fn(x, 4.0)
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    g.square().sum().backward()


def median_ms(fn, shape, repeats: int) -> float:
    b, c, s = shape
    x = torch.randn(b, c, s, s, requires_grad=True)
    for _ in range(3):
        step(fn, x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step(fn, x)
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.fir_filter", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=20)
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    x = torch.randn(2, 8, 16, 16)
    for ref in (avg_pools, depthwise):   # same numbers first: a speed-up of a wrong filter is no speed-up
        torch.testing.assert_close(ours(x, 4.0), ref(x, 4.0), atol=1e-5, rtol=1e-5)
    rows, raw = [], []
    for shape in SHAPES:
        t = {name: median_ms(fn, shape, a.repeats) for name, fn in (("fir_filter", ours), ("avg_pools", avg_pools),
                                                                    ("depthwise", depthwise))}
        raw.append({"shape": list(shape), "ms": t})
        rows.append(["x".join(map(str, shape)), f"{t['fir_filter']:.2f}", f"{t['avg_pools']:.2f}",
                     f"{t['depthwise']:.2f}", f"{t['avg_pools'] / t['fir_filter']:.1f}x",
                     f"{t['depthwise'] / t['fir_filter']:.1f}x"])
    args = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.fir_filter", *(shlex.quote(s) for s in args)])
    j, m = write_report("fir_filter", {"threads": a.threads, "repeats": a.repeats, "pad": PAD, "rows": raw, "command": command},
                        ["B x C x px", "fir_filter ms", "3 avg pools ms", "depthwise conv ms", "vs avg pools",
                         "vs depthwise"], rows,
                        notes=f"Forward + backward + double backward, float32 CPU, {a.threads} thread(s), median of "
                              f"{a.repeats} runs after 3 warm-up runs.", stamp=f"command: `{command}`")
    print(m.read_text())


if __name__ == "__main__":
    main()

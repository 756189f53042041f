"""Weight gradients on tiny maps (``toolchain.estimator.small_map_conv``) against oneDNN's, per ResNet-18
convolution and over whole estimator training steps.

    python -m benchmarks.small_map_conv [--threads 2] [--repeats 15]

Part one times the weight gradient alone of every 3x3 convolution shape of ResNet-18 at the estimator's CPU
input sizes (64 px: smoke and the tests; 112 px: cpu), batch 32, both ways, after checking they agree.
Part two times a full training step (forward, backward, Adam) of the estimator at 64 and 112 px, with and
without the path, the two interleaved so a machine that slows down mid-run slows both. Medians of
``--repeats`` after warm-up. Writes ``benchmarks/results/small_map_conv.{json,md}``.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks._report import write_report
from converters.latency import time_calls
from toolchain.engines.alter import ALTER_SCHEMA
from toolchain.estimator.model import AvatarEstimator, EstimatorConfig
from toolchain.estimator.small_map_conv import MAX_OUTPUT_PIXELS, _UnfoldWeightGradConv2d, small_map_weight_grads

# ResNet-18's 3x3 convolutions from layer2 on: (in channels, out channels, stride), output map = input / 8 ... / 32
LAYERS = ((64, 128, 2, 8), (128, 128, 1, 8), (128, 256, 2, 16), (256, 256, 1, 16), (256, 512, 2, 32), (512, 512, 1, 32))


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    return statistics.median(time_calls(fn, warmup, repeats))


def weight_grad_rows(inputs: tuple[int, ...], batch: int, repeats: int) -> list[dict]:
    rows = []
    for size in inputs:
        for c_in, c_out, stride, down in LAYERS:
            out = -(-size // down)
            x = torch.randn(batch, c_in, out * stride, out * stride)
            w = torch.randn(c_out, c_in, 3, 3, requires_grad=True)
            g = torch.randn(batch, c_out, out, out)

            y_onednn = F.conv2d(x, w, None, stride, 1)
            y_unfold = _UnfoldWeightGradConv2d.apply(x, w, (stride, stride), (1, 1))

            def onednn() -> torch.Tensor:
                return torch.autograd.grad(y_onednn, w, g, retain_graph=True)[0]

            def unfold() -> torch.Tensor:
                return torch.autograd.grad(y_unfold, w, g, retain_graph=True)[0]
            torch.testing.assert_close(unfold(), onednn(), rtol=1e-4, atol=1e-3)   # a fast wrong gradient is no gain
            a, b = median_ms(onednn, repeats), median_ms(unfold, repeats)
            rows.append({"input_px": size, "batch": batch, "c_in": c_in, "c_out": c_out, "stride": stride, "out_px": out,
                         "routed": out * out <= MAX_OUTPUT_PIXELS, "onednn_ms": a, "unfold_ms": b})
    return rows


def step_rows(cases: tuple[tuple[int, int], ...], repeats: int) -> list[dict]:
    rows = []
    for size, batch in cases:
        torch.manual_seed(0)
        model = AvatarEstimator(EstimatorConfig(input_size=size, schema=ALTER_SCHEMA.to_json()))
        opt = torch.optim.Adam(model.parameters(), lr=1e-4)
        x = torch.randn(batch, 3, size, size)

        def step() -> None:
            loss = sum(v.float().square().mean() for v in model(x).values())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        times: dict[bool, list[float]] = {False: [], True: []}
        for on in (False, True):   # warm-up both
            with small_map_weight_grads(model, enabled=on):
                step(), step()
        for _ in range(repeats):
            for on in (False, True):
                with small_map_weight_grads(model, enabled=on):
                    t0 = time.perf_counter()
                    step()
                    times[on].append((time.perf_counter() - t0) * 1e3)
        with small_map_weight_grads(model) as eligible:
            pass
        rows.append({"input_px": size, "batch": batch, "eligible_convs": eligible,
                     "onednn_ms": statistics.median(times[False]), "with_path_ms": statistics.median(times[True])})
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.small_map_conv", description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=15)
    a = ap.parse_args(argv)
    torch.set_flush_denormal(True)
    torch.set_num_threads(a.threads)
    grads = weight_grad_rows((64, 112), 32, a.repeats)
    steps = step_rows(((64, 32), (64, 8), (112, 32)), a.repeats)
    rows = [[f"{r['input_px']} px, batch {r['batch']}", f"{r['c_in']}->{r['c_out']}, stride {r['stride']}",
             f"{r['out_px']}x{r['out_px']}", "yes" if r["routed"] else "no", f"{r['onednn_ms']:.1f}",
             f"{r['unfold_ms']:.1f}", f"{r['onednn_ms'] / r['unfold_ms']:.1f}x"] for r in grads]
    step_table = "\n".join(
        ["| estimator input | batch | training step, oneDNN ms | with the path ms | speed-up |", "|---|---|---|---|---|"]
        + [f"| {r['input_px']} px | {r['batch']} | {r['onednn_ms']:.0f} | {r['with_path_ms']:.0f} | "
           f"{r['onednn_ms'] / r['with_path_ms']:.2f}x |" for r in steps])
    args = argv if argv is not None else sys.argv[1:]
    command = " ".join(["python -m benchmarks.small_map_conv", *(shlex.quote(s) for s in args)])
    j, m = write_report(
        "small_map_conv", {"threads": a.threads, "repeats": a.repeats, "max_output_pixels": MAX_OUTPUT_PIXELS,
                           "weight_grads": grads, "training_steps": steps, "command": command},
        ["estimator input", "convolution", "output map", "routed", "oneDNN weight grad ms", "unfold + matmul ms",
         "speed-up"], rows,
        notes=f"Weight gradient alone, float32 CPU, {a.threads} thread(s), median of {a.repeats} runs after 2 warm-up "
              f"runs; both ways agree (checked first). `routed`: the output map has at most {MAX_OUTPUT_PIXELS} "
              "pixels, so training takes the unfold path for it.\n\nWhole training steps of the estimator (ResNet-18 "
              "and the alter heads; forward, backward and Adam), the two ways interleaved, median of "
              f"{a.repeats} each:\n\n{step_table}",
        stamp=f"command: `{command}`")
    print(m.read_text())


if __name__ == "__main__":
    main()

"""Weight gradients of convolutions over tiny feature maps, computed as one matrix product on CPU.

At a 64 px input (the smoke preset's and the tests' estimator) ResNet-18's last stage works on 2x2 maps,
and oneDNN's weight gradient for the 2x2 one is many times slower than the arithmetic needs: for the
512->512 3x3 convolution on a 2x2 map, batch 32, 2 threads, it took 58-73 ms where unfolding the input
and one matrix product took 10-15 ms (`benchmarks/results/small_map_conv.md`). The three such convolutions
then cost a quarter of a training step. On larger maps oneDNN is the faster one, so only outputs of at most
``MAX_OUTPUT_PIXELS`` pixels take this path.

The forward pass and the input gradient stay oneDNN's (the same calls autograd makes); only the weight
gradient is summed in another order, so a trained model differs from one trained without this path by
float rounding, not by method. Export never sees it: the path is switched on by ``small_map_weight_grads``
around training only.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

# 2x2 outputs (layer4 at a 64 px input): unfold + matmul was 1.7-4.4x faster than oneDNN on the 2-core machine;
# at 4x4 (layer3 at 64 px, layer4 at 112 px) 0.9-1.3x, on larger maps 0.5-0.8x (the benchmark above).
MAX_OUTPUT_PIXELS = 4


class _UnfoldWeightGradConv2d(torch.autograd.Function):
    """conv2d without bias, groups 1, dilation 1; backward: oneDNN's input gradient, the weight
    gradient as ``grad_out^T @ unfold(x)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int], padding: tuple[int, int]
                ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding = stride, padding
        return F.conv2d(x, weight, None, stride, padding)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, None, ctx.stride, ctx.padding, (1, 1), False, (0, 0), 1, (True, False, False))[0]
        if ctx.needs_input_grad[1]:
            c_out, c_in, kh, kw = weight.shape
            cols = F.unfold(x, (kh, kw), padding=ctx.padding, stride=ctx.stride)      # [B, c_in*kh*kw, L]
            cols = cols.transpose(1, 2).reshape(-1, c_in * kh * kw)                 # [B*L, c_in*kh*kw]
            g = grad.flatten(2).transpose(1, 2).reshape(-1, c_out)                   # [B*L, c_out]
            grad_w = (g.t() @ cols).view_as(weight)
        return grad_x, grad_w, None, None


def _eligible(conv: nn.Conv2d) -> bool:
    return (conv.bias is None and conv.groups == 1 and conv.dilation == (1, 1)
            and conv.padding_mode == "zeros" and isinstance(conv.padding, tuple))


def _routed_forward(conv: nn.Conv2d):
    original = conv.forward

    def forward(x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or not torch.is_grad_enabled() or x.dtype != torch.float32:
            return original(x)
        h = (x.shape[-2] + 2 * conv.padding[0] - conv.kernel_size[0]) // conv.stride[0] + 1
        w = (x.shape[-1] + 2 * conv.padding[1] - conv.kernel_size[1]) // conv.stride[1] + 1
        if h * w > MAX_OUTPUT_PIXELS:
            return original(x)
        return _UnfoldWeightGradConv2d.apply(x, conv.weight, conv.stride, conv.padding)
    return forward


@contextmanager
def small_map_weight_grads(model: nn.Module, enabled: bool = True) -> Iterator[int]:
    """Inside the block, every eligible ``nn.Conv2d`` of ``model`` whose output map has at most
    ``MAX_OUTPUT_PIXELS`` pixels computes its weight gradient by unfold + matmul (CPU, float32, with
    gradients on; anything else goes the usual way). Yields how many convolutions are eligible (the map
    size is checked per call); restores the modules on exit, exceptions included. Not reentrant: do not nest it
    on one model."""
    routed = [m for m in model.modules() if isinstance(m, nn.Conv2d) and _eligible(m)] if enabled else []
    for conv in routed:
        conv.forward = _routed_forward(conv)
    try:
        yield len(routed)
    finally:
        for conv in routed:
            del conv.forward      # back to the class's forward

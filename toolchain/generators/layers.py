"""Building blocks in plain PyTorch: equalized-lr linear/conv, bias + leaky ReLU, modulated convolutions,
Fourier features, and FIR up/down-sampling (the [1,3,3,1] filter StyleGAN2 uses), all one code path for
CPU and CUDA, dtype-agnostic (autocast on CUDA works).

Weights are stored unscaled (N(0,1) init) and multiplied by 1/sqrt(fan_in) at run time ("equalized
learning rate"), as in StyleGAN2, so official checkpoints load without rescaling.
"""
from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

SQRT2 = math.sqrt(2.0)

# (global batch, rows) while a data-parallel rank runs its share of a batch: see noise_rows
_NOISE_ROWS: contextvars.ContextVar[tuple[int, torch.Tensor] | None] = contextvars.ContextVar("noise_rows", default=None)


@contextlib.contextmanager
def noise_rows(global_batch: int, rows: torch.Tensor | None) -> Iterator[None]:
    """Within this block the per-layer random noise is drawn for a batch of ``global_batch`` and only
    ``rows`` are kept: a data-parallel rank running its share of a batch then sees the noise (and leaves
    the random stream where) one process running the whole batch would. ``rows=None``: no effect."""
    token = _NOISE_ROWS.set(None if rows is None else (global_batch, rows))
    try:
        yield
    finally:
        _NOISE_ROWS.reset(token)


def batch_noise(batch: int, tail: tuple[int, ...], device, dtype, draw=torch.randn) -> torch.Tensor:
    """``randn(batch, *tail)`` (or ``draw``, e.g. ``torch.rand``), or this rank's rows of the global batch's
    draw (see :func:`noise_rows`)."""
    ctx = _NOISE_ROWS.get()
    if ctx is None or len(ctx[1]) != batch:
        return draw(batch, *tail, device=device, dtype=dtype)
    global_batch, rows = ctx
    return draw(global_batch, *tail, device=device, dtype=dtype)[rows.to(device)]


def fir_kernel(k=(1, 3, 3, 1), gain: float = 1.0) -> torch.Tensor:
    k = torch.tensor(k, dtype=torch.float32)
    k = k[:, None] * k[None, :]
    return k / k.sum() * gain


def _fir_valid(x: torch.Tensor) -> torch.Tensor:
    """Valid correlation with [1,3,3,1] along both spatial axes (unnormalised). Small maps: shifted-slice
    sums; maps with many channels and elements: one depthwise 4x4 convolution (the size rule is not
    benchmarked separately). Either runs inside ``_FIRFilter``, untracked by autograd."""
    if x.ndim == 4 and x.shape[1] >= 32 and x.numel() >= 1 << 20:
        k = torch.tensor((1.0, 3.0, 3.0, 1.0), dtype=x.dtype, device=x.device)
        return F.conv2d(x, (k[:, None] * k[None]).expand(x.shape[1], 1, 4, 4), groups=x.shape[1])
    x = torch.add(x[..., :, :-3] + x[..., :, 3:], x[..., :, 1:-2] + x[..., :, 2:-1], alpha=3)
    return torch.add(x[..., :-3, :] + x[..., 3:, :], x[..., 1:-2, :] + x[..., 2:-1, :], alpha=3)


class _FIRFilter(torch.autograd.Function):
    """Zero padding + the [1,3,3,1] filter, with a hand-written adjoint: the kernel is symmetric, so the
    gradient is the same filter over the zero-padded gradient, cropped. Autograd's own backward of the
    slices would allocate and fill a zero tensor per slice. The backward calls this Function again, so
    double backward (R1, path-length regularisation) works."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, pad0: int, pad1: int, scale: float) -> torch.Tensor:
        ctx.pad, ctx.scale, ctx.size = (pad0, pad1), scale, x.shape[-2:]
        return _fir_valid(F.pad(x, (pad0, pad1, pad0, pad1))) * scale

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        pad0, pad1 = ctx.pad
        h, w = ctx.size
        full = _FIRFilter.apply(grad, 3, 3, ctx.scale)          # adjoint of a valid correlation
        return full[..., pad0:pad0 + h, pad0:pad0 + w], None, None, None


def fir_filter(x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int]) -> torch.Tensor:
    """2-D FIR filter with the separable [1,3,3,1] kernel (times its gain) and asymmetric zero padding
    (pad_before, pad_after) on both axes.

    An autograd Function with its own adjoint (see ``_FIRFilter``); the filtering itself is picked by size
    in ``_fir_valid``. Forward + backward + double backward on CPU, it was 1.5-2.9x faster than autograd
    through three 2x2 average pools (the previous form) at the generators' map sizes in two runs of
    ``python -m benchmarks.fir_filter`` (benchmarks/results/fir_filter.md; 1 thread, a busy 2-core
    machine); against one depthwise convolution it is faster on small maps and level or slower on the
    largest (0.6-3.4x), where ``_fir_valid`` switches to that convolution anyway.
    """
    return _FIRFilter.apply(x, pad[0], pad[1], float(kernel.sum()) / 64.0)


def upsample2x(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Zero-insertion 2x upsampling followed by the FIR filter (kernel already scaled by 4)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, h * 2, w * 2)
    up[:, :, ::2, ::2] = x
    p = kernel.shape[0] - 2
    return fir_filter(up, kernel, ((p + 1) // 2 + 1, p // 2))


class BiasLReLU(nn.Module):
    """x + bias, leaky ReLU(0.2), times sqrt(2) (StyleGAN2's fused_lrelu, in plain ops)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return F.leaky_relu(x + self.bias.view(shape).to(x.dtype), 0.2) * SQRT2


class EqualLinear(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias_init: float = 0.0, lr_mul: float = 1.0, activate: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.scale, self.lr_mul, self.activate = lr_mul / math.sqrt(in_dim), lr_mul, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight * self.scale)
        out = out + self.bias * self.lr_mul
        return F.leaky_relu(out, 0.2) * SQRT2 if self.activate else out


class ModulatedLinear(nn.Module):
    """A per-sample modulated, demodulated 1x1 convolution + bias + leaky ReLU (local generator layer).

    The style, demodulation and the activation's sqrt(2) gain are folded into one weight matrix per
    sample, and the bias into the product, so a layer is one batched matmul plus one activation: the
    activations are the large tensors here, the [B, out, in] weights are small.
    """

    def __init__(self, in_ch: int, out_ch: int, style_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch))
        self.affine = EqualLinear(style_dim, in_ch, bias_init=1.0)
        self.act = BiasLReLU(out_ch)
        self.scale = 1 / math.sqrt(in_ch)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        s = self.affine(w)                                                  # [B, in]
        wmod = (self.weight * self.scale)[None] * s[:, None]                # [B, out, in]
        wmod = wmod * (torch.rsqrt(wmod.pow(2).sum(2, keepdim=True) + 1e-8) * SQRT2)
        b, c, h, wd = x.shape
        bias = (self.act.bias * SQRT2).to(x.dtype)[None, :, None].expand(b, -1, 1)
        out = torch.baddbmm(bias, wmod.to(x.dtype), x.reshape(b, c, h * wd))
        return F.leaky_relu(out, 0.2).view(b, -1, h, wd)


class FixedConv(nn.Module):
    """A convolution with a learned per-input-channel gain instead of a per-sample style (the official
    render net's layers), optional 2x upsampling, noise injection and bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, k: int, upsample: bool = False, demodulate: bool = True,
                 noise: bool = True, activate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.gain = nn.Parameter(torch.ones(in_ch))
        self.noise_strength = nn.Parameter(torch.zeros(())) if noise else None
        self.act = BiasLReLU(out_ch) if activate else None
        self.scale, self.k, self.upsample, self.demodulate = 1 / math.sqrt(in_ch * k * k), k, upsample, demodulate
        if upsample:
            self.register_buffer("fir", fir_kernel(gain=4.0), persistent=False)

    def effective_weight(self) -> torch.Tensor:
        w = self.weight * self.scale * self.gain.view(1, -1, 1, 1)
        if self.demodulate:
            w = w * torch.rsqrt(w.pow(2).sum((1, 2, 3), keepdim=True) + 1e-8)
        return w

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        # leaky ReLU is positively homogeneous, so its sqrt(2) gain goes into the weight and the added terms
        gain = SQRT2 if self.act is not None else 1.0
        w = (self.effective_weight() * gain).to(x.dtype)
        if self.upsample:  # transposed conv stride 2, then the FIR filter (pads 1/1 for k=3 and a 4-tap filter)
            out = F.conv_transpose2d(x, w.transpose(0, 1), stride=2)
            p = 4 - 2 - (self.k - 1)
            out = fir_filter(out, self.fir, ((p + 1) // 2 + 1, p // 2 + 1))
        elif self.k == 1:  # a 1x1 conv as a matmul: faster than oneDNN's conv on CPU when profiled (not benchmarked)
            b, c, h, wd = x.shape
            out = torch.matmul(w.view(w.shape[0], c), x.reshape(b, c, h * wd)).view(b, -1, h, wd)
        else:
            out = F.conv2d(x, w, padding=self.k // 2)
        add = None
        if self.noise_strength is not None:
            if noise is None:
                noise = batch_noise(out.shape[0], (1, *out.shape[2:]), out.device, out.dtype)
            add = (self.noise_strength * gain).to(out.dtype) * noise.to(out.dtype)
        if self.act is not None:
            b = (self.act.bias * gain).to(out.dtype).view(1, -1, 1, 1)
            add = b if add is None else add + b
        if add is not None:
            out = out + add
        return F.leaky_relu(out, 0.2) if self.act is not None else out


class ToOutput(nn.Module):
    """1x1 projection without activation (to features, depth, RGB or segmentation), optionally added to
    an upsampled skip from the previous resolution."""

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv = FixedConv(in_ch, out_ch, 1, demodulate=False, noise=False, activate=False)
        self.bias = nn.Parameter(torch.zeros(out_ch))
        self.register_buffer("fir", fir_kernel(gain=4.0), persistent=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x) + self.bias.view(1, -1, 1, 1).to(x.dtype)
        if skip is not None:
            out = out + upsample2x(skip, self.fir)
        return out


class FourierFeatures(nn.Module):
    """Coordinates (x, y) -> [xy, sin(2^k xy), cos(2^k xy) for k < n_freqs] -> learned 1x1 projection."""

    def __init__(self, out_ch: int, n_freqs: int, in_ch: int = 2):
        super().__init__()
        n_in = in_ch * (2 * n_freqs + 1)
        self.proj = nn.Parameter(torch.randn(out_ch, n_in))
        self.register_buffer("freqs", 2.0 ** torch.arange(n_freqs, dtype=torch.float32), persistent=False)
        self.scale = 1 / math.sqrt(n_in)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        feats = [coords]
        for f in self.freqs.tolist():
            feats += [torch.sin(f * coords), torch.cos(f * coords)]
        return torch.einsum("oi,bihw->bohw", self.proj * self.scale, torch.cat(feats, 1))


class EqualConv(nn.Module):
    """Discriminator conv: optional FIR blur + stride 2 downsampling, optional bias + leaky ReLU."""

    def __init__(self, in_ch: int, out_ch: int, k: int, downsample: bool = False, activate: bool = True,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, k, k))
        self.act = BiasLReLU(out_ch) if activate and bias else None
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias and not activate else None
        self.scale, self.k, self.downsample = 1 / math.sqrt(in_ch * k * k), k, downsample
        if downsample:
            self.register_buffer("fir", fir_kernel(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = (self.weight * self.scale).to(x.dtype)
        if self.downsample:
            p = 4 - 2 + (self.k - 1)
            x = fir_filter(x, self.fir, ((p + 1) // 2, p // 2))
            out = F.conv2d(x, w, stride=2)
        else:
            out = F.conv2d(x, w, padding=self.k // 2)
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1).to(out.dtype)
        return self.act(out) if self.act is not None else out


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.conv1 = EqualConv(in_ch, in_ch, 3)
        self.conv2 = EqualConv(in_ch, out_ch, 3, downsample=True)
        self.skip = EqualConv(in_ch, out_ch, 1, downsample=True, activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / SQRT2

"""Batched optimisation-based GAN inversion into W+ (paper Eq. 4-5):

    w* = argmin_w  λp·LPIPS(y, G(w)) + λi·‖y − G(w)‖² + λl·‖w − w_0‖²

Adam, lr 0.1 with cosine annealing, 200 steps (the paper's settings; all in ``InversionConfig``).
``‖·‖²`` are means over a sample's pixels / latent entries. ``w_0`` is where the sample started (the
paper's w_mean; the modified w̃_mean for assets it has, so the regulariser does not pull them out again).

Many images are optimised at once, and each sample's result is independent of its batch:
* the loss is a *sum* of per-sample losses, so each W+ row gets exactly its own gradient;
* Adam is written out here, elementwise, and updates only the rows still active; a sample that stops
  improving (relative gain < ``early_stop_tol`` over ``patience`` steps) is frozen and leaves the
  forward pass, so the batch shrinks as samples converge;
* the generator runs with its fixed ("const") noise buffers, identical for every sample; nothing in it
  mixes samples (no batch norm), and the perceptual loss is per sample.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from ..generators.generator import SemanticGenerator


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 200
    lr: float = 0.1
    schedule: str = "cosine"        # "cosine" (paper) or "constant"
    lambda_p: float = 1.0           # perceptual (LPIPS or its fallback)
    lambda_i: float = 0.1           # pixel MSE
    lambda_l: float = 1.0           # latent regulariser towards the start code
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    early_stop_tol: float = 1e-3    # relative loss gain below which a sample counts as converged; 0: off
    patience: int = 25
    batch_size: int = 64

    def to_json(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


@dataclass
class InversionResult:
    wplus: torch.Tensor             # [B, n_latent, D]
    loss: torch.Tensor              # [B] final total loss (evaluated at the returned codes)
    perceptual: torch.Tensor        # [B]
    mse: torch.Tensor               # [B]
    latent: torch.Tensor            # [B]
    steps_run: torch.Tensor         # [B] steps each sample was optimised before it froze
    history: dict[str, list[float]] = field(default_factory=dict)  # per step, batch means of the terms


def lr_at(cfg: InversionConfig, step: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * step / cfg.steps))


def _terms(g: SemanticGenerator, perceptual: nn.Module, cfg: InversionConfig, w: torch.Tensor, w0: torch.Tensor,
           y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    x = g.synthesize(w, "const").image
    p = perceptual(x, y)
    mse = (x - y).pow(2).mean((1, 2, 3))
    lat = (w - w0).pow(2).mean((1, 2))
    return cfg.lambda_p * p + cfg.lambda_i * mse + cfg.lambda_l * lat, p, mse, lat


def invert(g: SemanticGenerator, perceptual: nn.Module, targets: torch.Tensor, w_init: torch.Tensor,
           cfg: InversionConfig = InversionConfig(), record_history: bool = False,
           on_step: Callable[[int, int], None] | None = None) -> InversionResult:
    """Invert ``targets`` ([B, 3, S, S] in [-1, 1]) starting from ``w_init`` ([B, n_latent, D]), all at once.
    The caller splits a large set into batches (see ``invert_batched``)."""
    g.requires_grad_(False)
    dev = next(g.parameters()).device
    y, w0 = targets.to(dev), w_init.to(dev).detach()
    w = w0.clone()
    m, v = torch.zeros_like(w), torch.zeros_like(w)
    b = w.shape[0]
    active = torch.ones(b, dtype=torch.bool, device=dev)
    best = torch.full((b,), float("inf"), device=dev)
    since_best = torch.zeros(b, dtype=torch.long, device=dev)
    steps_run = torch.zeros(b, dtype=torch.long, device=dev)
    hist: dict[str, list[float]] = {"loss": [], "perceptual": [], "mse": [], "latent": [], "active": []}
    last = {k: torch.zeros(b, device=dev) for k in ("loss", "perceptual", "mse", "latent")}
    beta1, beta2 = cfg.betas
    for step in range(cfg.steps):
        idx = active.nonzero().flatten()
        if len(idx) == 0:
            break
        wa = w[idx].requires_grad_(True)
        loss, p, mse, lat = _terms(g, perceptual, cfg, wa, w0[idx], y[idx])
        grad, = torch.autograd.grad(loss.sum(), wa)   # sum: every row gets its own sample's gradient
        with torch.no_grad():
            t = step + 1                                 # every sample starts at step 0: same bias correction
            m[idx] = beta1 * m[idx] + (1 - beta1) * grad
            v[idx] = beta2 * v[idx] + (1 - beta2) * grad * grad
            mhat, vhat = m[idx] / (1 - beta1 ** t), v[idx] / (1 - beta2 ** t)
            w[idx] = wa.detach() - lr_at(cfg, step) * mhat / (vhat.sqrt() + cfg.eps)
            steps_run[idx] += 1
            for k, val in zip(("loss", "perceptual", "mse", "latent"), (loss, p, mse, lat)):
                last[k][idx] = val.detach()
            if record_history:
                for k in last:
                    hist[k].append(float(last[k].mean()))
                hist["active"].append(len(idx))
            if cfg.early_stop_tol > 0:
                ld = loss.detach()
                improved = ld < best[idx] * (1 - cfg.early_stop_tol)
                best[idx] = torch.where(improved, ld, torch.minimum(best[idx], ld))
                since_best[idx] = torch.where(improved, torch.zeros_like(since_best[idx]), since_best[idx] + 1)
                active[idx] = since_best[idx] < cfg.patience
        if on_step:
            on_step(step + 1, cfg.steps)
    with torch.no_grad():
        loss, p, mse, lat = _terms(g, perceptual, cfg, w, w0, y)
    return InversionResult(w, loss, p, mse, lat, steps_run, hist if record_history else {})


def invert_batched(g: SemanticGenerator, perceptual: nn.Module, targets: torch.Tensor, w_init: torch.Tensor,
                   cfg: InversionConfig = InversionConfig(), record_history: bool = False) -> InversionResult:
    """``invert`` over ``cfg.batch_size`` chunks, results concatenated (history: of the first chunk)."""
    outs = [invert(g, perceptual, targets[i:i + cfg.batch_size], w_init[i:i + cfg.batch_size], cfg, record_history)
            for i in range(0, len(targets), cfg.batch_size)]
    return InversionResult(*(torch.cat([getattr(o, k) for o in outs]) for k in
                             ("wplus", "loss", "perceptual", "mse", "latent", "steps_run")),
                           history=outs[0].history)

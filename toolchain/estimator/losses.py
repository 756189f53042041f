"""Estimator losses: L1 for the continuous head, symmetric cross-entropy for each discrete head.

Symmetric cross-entropy (Wang et al., ICCV 2019): ``alpha * CE(p, y) + beta * RCE(p, y)`` where the
reverse term ``-sum_k p_k log q_k`` uses the one-hot label ``q`` with ``log 0`` clamped to ``A = -4``
(done by clamping ``q`` to ``[1e-4, 1]``). It is robust to the label noise that GAN inversion and
semantic augmentation introduce.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..schema import AvatarSchema
from .model import CONTINUOUS_HEAD


def symmetric_cross_entropy(logits: torch.Tensor, target: torch.Tensor, alpha: float = 1.0, beta: float = 1.0,
                            label_clamp: float = 1e-4) -> torch.Tensor:
    """Mean SCE over the batch. ``logits`` [B, K], ``target`` int64 [B]."""
    ce = F.cross_entropy(logits, target)
    pred = F.softmax(logits, dim=1).clamp(min=1e-7, max=1.0)
    one_hot = F.one_hot(target, logits.shape[1]).float().clamp(min=label_clamp, max=1.0)
    rce = (-(pred * torch.log(one_hot)).sum(dim=1)).mean()
    return alpha * ce + beta * rce


@dataclass
class LossWeights:
    lambda_c: float = 1.0
    lambda_d: float = 10.0
    sce_alpha: float = 1.0
    sce_beta: float = 1.0


def estimator_loss(outputs: dict[str, torch.Tensor], continuous: torch.Tensor, discrete: torch.Tensor,
                   schema: AvatarSchema, w: LossWeights) -> tuple[torch.Tensor, dict[str, float]]:
    """Total ``lambda_c * L1 + lambda_d * sum_i SCE_i`` and per-term values for logging."""
    terms: dict[str, float] = {}
    total = outputs[next(iter(outputs))].new_zeros(())
    if CONTINUOUS_HEAD in outputs:
        l1 = F.l1_loss(outputs[CONTINUOUS_HEAD].float(), continuous.float())
        terms["l1"] = float(l1.detach())
        total = total + w.lambda_c * l1
    for i, p in enumerate(schema.discrete):
        sce = symmetric_cross_entropy(outputs[p.name].float(), discrete[:, i], w.sce_alpha, w.sce_beta)
        terms[f"sce/{p.name}"] = float(sce.detach())
        total = total + w.lambda_d * sce
    return total, terms

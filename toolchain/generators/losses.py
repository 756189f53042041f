"""GAN losses and regularisers (StyleGAN2 / SemanticStyleGAN) and the SwiftAvatar colour-matching loss."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

SEG_LOGIT_SCALE = 4.0   # G's segmentation is about [-1, 1]; scaled, it serves as logits for a cross-entropy


def d_logistic(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating(fake_pred: torch.Tensor) -> torch.Tensor:
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Squared gradient norm of D's real logits w.r.t. each input (image, segmentation), batch mean."""
    grads = torch.autograd.grad(real_pred.float().sum(), inputs, create_graph=True)
    return [g.float().pow(2).flatten(1).sum(1).mean() for g in grads]


def path_length_penalty(image: torch.Tensor, wplus: torch.Tensor, mean_path: torch.Tensor, decay: float = 0.01,
                        noise: torch.Tensor | None = None,
                        batch_mean: Callable[[torch.Tensor], torch.Tensor] | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """StyleGAN2 path-length regulariser: deviation of |J^T y| (y random image-space noise, J the Jacobian
    w.r.t. the W+ codes) from its running mean. Returns (penalty, new running mean, path lengths).

    ``batch_mean`` takes the mean path length of the batch (under data parallelism: over all ranks, so
    the running mean stays one number everywhere); default: this batch's mean."""
    if noise is None:
        noise = torch.randn_like(image)
    noise = noise / math.sqrt(image.shape[2] * image.shape[3])
    (grad,) = torch.autograd.grad((image.float() * noise).sum(), wplus, create_graph=True)
    lengths = grad.float().pow(2).sum(2).mean(1).sqrt()
    mean_now = lengths.mean().detach() if batch_mean is None else batch_mean(lengths.detach())
    new_mean = mean_path + decay * (mean_now - mean_path)
    return (lengths - new_mean).pow(2).mean(), new_mean, lengths


def mask_consistency(seg: torch.Tensor, seg_coarse: torch.Tensor) -> torch.Tensor:
    """The final segmentation, pooled to the coarse size, should equal the coarse one (both in [-1, 1])."""
    pooled = F.adaptive_avg_pool2d(seg.float(), seg_coarse.shape[-2:])
    return (2 * seg_coarse.float() - 1 - pooled).pow(2).mean()


def part_mean_colour(image: torch.Tensor, probs: torch.Tensor, part: int, eps: float = 1e-6) -> torch.Tensor:
    """Mean RGB of ``part`` weighted by its per-pixel probability: [B, 3]. ``probs`` at image size."""
    w = probs[:, part:part + 1].float()
    return (image.float() * w).sum((2, 3)) / (w.sum((2, 3)) + eps)


def colour_matching(real_image: torch.Tensor, real_probs: torch.Tensor, avatar_image: torch.Tensor,
                    avatar_probs: torch.Tensor, parts: list[int]) -> torch.Tensor:
    """L_color = sum over parts s of |m_s(G_real(z)) - m_s(G_avatar(z))|^2 (batch mean); each mean colour is
    taken over that generator's own segmentation. Gradients flow into the avatar side only."""
    loss = avatar_image.new_zeros((), dtype=torch.float32)
    for s in parts:
        ref = part_mean_colour(real_image, real_probs, s).detach()
        loss = loss + (part_mean_colour(avatar_image, avatar_probs, s) - ref).pow(2).sum(1).mean()
    return loss


def inverse_share_weights(parts: torch.Tensor, n_parts: int, cap: float = 50.0) -> torch.Tensor:
    """Per-part loss weights [n_parts] from part-index maps: 1 / (share * n_parts), capped; 0 for absent parts. A
    part covering 1/n_parts of the pixels weighs 1, a part 10x rarer 10 (at most ``cap``)."""
    share = torch.bincount(parts.flatten(), minlength=n_parts).float() / parts.numel()
    return torch.where(share > 0, 1.0 / (share * n_parts).clamp(min=1e-12), torch.zeros_like(share)).clamp(max=cap)

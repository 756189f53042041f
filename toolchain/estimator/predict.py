"""Running a trained estimator on uint8 images: the shared preprocessing and batched prediction."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .model import CONTINUOUS_HEAD, AvatarEstimator


def prepare_batch(images: np.ndarray, model: AvatarEstimator, size: int, device: torch.device,
                  generator: torch.Generator | None, rows: slice | None = None, global_batch: int | None = None,
                  sharpen: float = 0.0) -> torch.Tensor:
    """uint8 [B,H,W,3] → normalised float [B,3,size,size]; with a generator, a random zoom/shift and a
    mild brightness/contrast jitter (no flips: many assets are asymmetric), and with ``sharpen`` > 0 an unsharp
    mask of a random amount in [0, sharpen] per image (:func:`unsharp`).

    Under data parallelism ``images`` are the ``rows`` of a global batch of ``global_batch``: the jitter is
    drawn for the whole global batch (the same draws as one process makes) and these rows are kept."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    b = x.shape[0]
    if generator is not None:
        nb, keep = (b, slice(None)) if rows is None else (global_batch, rows)
        # drawn in this order before use: the same numbers as the one-process code drew them
        scale_all = 0.85 + 0.15 * torch.rand(nb, generator=generator)
        shift_all = (torch.rand(nb, 2, generator=generator) * 2 - 1) * (1 - scale_all).unsqueeze(1)
        bright = (1 + (torch.rand(nb, 1, 1, 1, generator=generator) - 0.5) * 0.2)[keep]
        contrast = (1 + (torch.rand(nb, 1, 1, 1, generator=generator) - 0.5) * 0.2)[keep]
        # drawn last and only when asked: a run without sharpening draws what it drew before the option existed
        amount = (torch.rand(nb, 1, 1, 1, generator=generator) * sharpen)[keep] if sharpen > 0 else None
        scale, shift = scale_all[keep], shift_all[keep]
        if b == 0:  # a rank with no share of a small last batch (after drawing: the stream stays in step)
            return torch.zeros(0, 3, size, size, device=device)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = scale
        theta[:, 1, 1] = scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if amount is not None:
            x = unsharp(x, amount)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * bright
        x = x.clamp_(0, 1)
    elif x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.to(device)
    return (x - model.mean) / model.std



def unsharp(x: torch.Tensor, amount: torch.Tensor | float, sigma: float = 1.0) -> torch.Tensor:
    """``x + amount * (x - gaussian_blur(x))``: edges steeper by ``amount`` (0: unchanged).

    Why the estimator trains with it: generated faces are softer than photos at the sizes a CPU trains G_real,
    and an estimator trained on them read a photo's crisp eyes as glasses (README, "Where the answers go, and
    sharpened training images")."""
    radius = max(1, int(round(2 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = (k / k.sum()).to(x.device)
    c = x.shape[1]
    pad = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    blur = F.conv2d(pad, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    blur = F.conv2d(blur, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    return x + amount * (x - blur)


@torch.no_grad()
def predict_arrays(model: AvatarEstimator, images: np.ndarray, size: int, device: torch.device,
                   batch_size: int = 64) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Run the model on uint8 images: (continuous in [0,1] [N,C], class indices [N,D], per-head softmax)."""
    model.eval()
    schema = model.schema
    pc, pd, probs = [], [], [[] for _ in schema.discrete]
    for k in range(0, len(images), batch_size):
        chunk = images[k:k + batch_size]
        out = model(prepare_batch(chunk, model, size, device, None))
        pc.append(out[CONTINUOUS_HEAD].float().clamp(0, 1).cpu().numpy() if CONTINUOUS_HEAD in out
                  else np.zeros((len(chunk), 0), np.float32))
        for i, p in enumerate(schema.discrete):
            probs[i].append(torch.softmax(out[p.name].float(), 1).cpu().numpy())
        pd.append(np.stack([out[p.name].argmax(1).cpu().numpy() for p in schema.discrete], 1)
                  if schema.discrete else np.zeros((len(chunk), 0), np.int64))
    return np.concatenate(pc), np.concatenate(pd), [np.concatenate(p) for p in probs]

"""Finetuning G_avatar from G_real on engine renders (paper Sec. "Dual-domain generators").

G_avatar starts as a copy of G_real (and D from G_real's discriminator when its branches match) and is
trained with the StyleGAN2 losses on the engine's renders, plus the colour-matching loss

    L_color = sum_{s in {hair, skin}} |m_s(G_real(z)) - m_s(G_avatar(z))|^2

where m_s is the mean colour of part s, each taken over that generator's own segmentation; G_real is
frozen. It keeps hair and skin colour aligned across the two domains for the same latent, which the
paired data later relies on. ``freeze_local`` keeps the local generators (part shapes) fixed.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .. import distributed
from ..errors import AvatarToolError
from ..torch_utils import select_device
from . import losses
from .generator import SemanticGenerator
from .io import load_discriminator, load_generator
from .train_real import GANTrainConfig, ProgressFn, run_gan

if TYPE_CHECKING:
    from ..render.job import EngineOptions

COLOUR_PARTS = ("hair", "skin")


def colour_loss_fn(g_real: SemanticGenerator, parts: list[int], weight: float):
    def extra(fake, z, z2, pick):
        with torch.no_grad():
            ref = g_real.sample(z, z2, pick=pick)
        lc = losses.colour_matching(ref.image, ref.part_probs(), fake.image, fake.part_probs(), parts)
        return weight * lc, {"color": lc.item()}
    return extra


def discriminator_beside(real_generator: str | Path) -> Path | None:
    """The discriminator a G_real training saved next to its weights (``gan-train``'s layout), or None."""
    path = Path(real_generator).with_name("discriminator.safetensors")
    return path if path.is_file() else None


def finetune(engine: str, real_generator: str | Path, out_dir: str | Path, tcfg: GANTrainConfig, *,
             discriminator: str | Path | None = None,
             colour_weight: float = 1.0, freeze_local: bool = False, renders: str | Path | None = None,
             n_renders: int = 2000, render_size: int = 64, render_seed: int = 0, device: str | None = None,
             progress: ProgressFn | None = None, stop_after: int | None = None,
             engine_options: "EngineOptions | None" = None) -> dict[str, Any]:
    """Render ``n_renders`` avatars with ``engine`` into ``out_dir/renders`` (or use ``renders``), then train.
    ``engine_options`` (workers, batch size, timeout) default to rendering in this process.

    ``discriminator``: the G_real training's discriminator, which G_avatar's starts from (as the official
    finetuning does); None starts it fresh. ``tcfg.seg_discriminator`` is switched off when the engine draws no
    masks (image-only D).
    """
    from ..render.job import EngineOptions, render_folder
    out = Path(out_dir)
    g_real, meta = load_generator(real_generator, device="cpu")
    gcfg = g_real.cfg
    if renders is None:
        renders = out / "renders"
        opts = engine_options or EngineOptions(workers=0)
        summary = distributed.on_main(render_folder, opts.config(engine, n_renders, seed=render_seed,
                                                                 size=max(render_size, gcfg.size)), renders)
        has_masks = summary.has_masks
    else:
        has_masks = (Path(renders) / "masks").is_dir()
    if tcfg.seg_discriminator and not has_masks:
        tcfg = replace(tcfg, seg_discriminator=False)
    parts = [gcfg.part_index(p) for p in COLOUR_PARTS if p in gcfg.parts]
    if colour_weight > 0 and not parts:
        raise AvatarToolError(f"the colour loss needs parts named {COLOUR_PARTS}; this generator has {gcfg.parts}")
    init_d = None
    if discriminator is not None:
        d, _ = load_discriminator(discriminator)  # a branch it lacks stays freshly initialised
        init_d = {k: v for k, v in d.state_dict().items() if tcfg.seg_discriminator or not k.startswith("seg.")}
    dev = select_device(device)
    g_ref = g_real.to(dev).eval().requires_grad_(False)
    extra = colour_loss_fn(g_ref, parts, colour_weight) if colour_weight > 0 else None
    run_meta = {"role": "avatar", "engine": engine, "real_generator": str(Path(real_generator).resolve()),
                "colour_weight": colour_weight, "freeze_local": freeze_local,
                "discriminator_init": str(Path(discriminator).resolve()) if discriminator is not None else None}
    return run_gan(renders, out, gcfg, tcfg, init_generator=g_real.state_dict(), init_discriminator=init_d,
                   extra_g_loss=extra, freeze_local=freeze_local, run_meta=run_meta, device=device,
                   progress=progress, stop_after=stop_after)


@torch.no_grad()
def colour_distance(g_real: SemanticGenerator, g_avatar: SemanticGenerator, n: int = 1000, seed: int = 0,
                    batch: int = 100) -> dict[str, float]:
    """Mean Euclidean distance (RGB in [0, 1]) between the hair / skin mean colours of G_real(z) and
    G_avatar(z) over ``n`` shared latents, each colour over its generator's own segmentation."""
    z_all = torch.randn(n, g_real.cfg.style_dim, generator=torch.Generator().manual_seed(seed))
    g_real.eval(), g_avatar.eval()
    sums = {p: 0.0 for p in COLOUR_PARTS if p in g_real.cfg.parts}
    for z in z_all.split(batch):
        a, b = g_real.sample(z, noise_mode="const"), g_avatar.sample(z, noise_mode="const")
        for p in sums:
            k = g_real.cfg.part_index(p)
            ca = losses.part_mean_colour(a.image, a.part_probs(), k)
            cb = losses.part_mean_colour(b.image, b.part_probs(), k)
            sums[p] += float(((ca - cb) / 2).norm(dim=1).sum())  # /2: [-1,1] -> [0,1] units
    return {p: v / n for p, v in sums.items()}

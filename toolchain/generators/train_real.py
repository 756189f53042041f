"""GAN training for SemanticStyleGAN on (image, mask) folders: the realistic generator G_real, and the
shared loop that ``finetune.py`` reuses for G_avatar.

Per step (as the official trainer): a D step (logistic loss; lazy R1 on image and mask every
``d_reg_every`` steps), a G step (non-saturating loss + mask-consistency loss + optional extra loss, e.g.
colour matching), lazy path-length regularisation every ``g_reg_every`` steps, style mixing with
probability ``mixing``, EMA generator. Adam with the lazy-regularisation lr/beta correction.
Optionally (``recon_weight`` > 0, off in every build preset) the G step also redraws the real batch from an
encoder's posterior (encoder.py; measured not to help at the smoke size, see the tiny_recon preset).

Exact resume: everything random in step ``i`` is drawn after ``torch.manual_seed(seed, i)``, and the
checkpoint (G, D, G_ema, both optimisers, the path-length mean) is written atomically every
``snapshot_every`` steps, so a run continued from its checkpoint ends with the same weights as an
uninterrupted one. Writes ``stats.jsonl``, ``samples/*.png``, ``generator.safetensors`` (+ .json, the EMA
generator), ``discriminator.safetensors`` and ``run.json``.

Data parallel under torchrun (toolchain/distributed.py): ``batch_size`` stays the global batch. Every rank
draws the random numbers of the whole batch (image indices, latents, mixing, the generator's noise via
``layers.noise_rows``, the path-length noise) and keeps its rows, chosen so that the discriminator's
minibatch-stddev groups stay whole (``distributed.group_preserving_rows``); gradients are averaged over
ranks after each backward pass (one flat all-reduce, as NVlabs' trainers do, since a step runs several
passes through model methods) and the path-length mean is taken over all ranks. So R1, path length, the
colour loss and the EMA generator see what one process would see, and a step equals the one-process
step up to float summation order. Rank 0 writes snapshots, samples and weights.
"""
from __future__ import annotations

import copy
import io
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl, save_png_atomic
from ..errors import AvatarToolError
from ..precision import resolve_precision
from ..presets import lookup_preset
from ..provenance import path_origin
from ..torch_utils import save_checkpoint_atomic, select_device, uint8_to_signed
from . import losses
from .config import GeneratorConfig
from .diffaugment import diff_augment, parse_policy
from .discriminator import DualBranchDiscriminator
from .encoder import PhotoEncoder, kl_to_prior
from .generator import SemanticGenerator
from .grids import sample_grid
from .io import save_weights
from .layers import noise_rows
from .mask_folder import load_mask_folder

ProgressFn = Callable[[str, int, int, dict], None]


@dataclass
class GANTrainConfig:
    """Defaults: the official SemanticStyleGAN / StyleGAN2 settings."""

    iters: int = 200_000
    batch_size: int = 16
    lr: float = 0.002
    # a step schedule: from step ``lr_drop_at`` on, G and D train at ``lr_after`` (0: ``lr`` throughout). On face64,
    # 0.004 draws faces by step 2,000 where 0.002 needs 4,000, and they fade after step 2,500; a drop to 0.002 at
    # 2,000 did not keep them, but the faces come back by step 5,000 with more colour; the build's cpu preset runs
    # that schedule (README "A learning-rate drop for G_real", "The lr-drop G_real in the cpu preset")
    lr_drop_at: int = 0
    lr_after: float = 0.0
    r1_img: float = 10.0
    r1_seg: float = 1000.0
    d_reg_every: int = 16
    path_weight: float = 0.5
    path_batch_shrink: int = 2
    g_reg_every: int = 4
    mixing: float = 0.3
    lambda_mask: float = 100.0
    ema_half_life_img: float = 10_000.0
    # EMA ramp-up: the half-life grows with the images seen (at most ``ema_rampup`` x them), so early EMA
    # weights are not mostly the random start (stylegan2-ada's ema_rampup; None: a constant half-life)
    ema_rampup: float | None = None
    # DiffAugment policy for every D input, real and generated (see diffaugment.py); "" = none
    augment: str = ""
    seg_discriminator: bool = True       # dual-branch D (needs masks); False: image-only D
    # reconstruction aid (encoder.py, VAE-GAN): an encoder maps each real (photo, mask) to a posterior over z and
    # G.sample(z) must redraw it; loss recon_weight * (L1 image + recon_seg * CE mask + recon_kl * KL), both
    # reconstruction terms weighted per part by its inverse pixel share (losses.inverse_share_weights). 0: off
    recon_weight: float = 0.0
    recon_seg: float = 0.1
    recon_kl: float = 0.01
    # the G and D passes' arithmetic (toolchain/precision.py): auto = bf16 autocast on CUDA and on CPUs with native
    # bf16, float32 elsewhere; the regularisers' double-backward passes always run in float32
    precision: str = "auto"
    seed: int = 0
    snapshot_every: int = 1000
    # G_ema's weights are also kept every this many steps (``kept/step_NNNNNN.safetensors``) so a build can pick
    # the snapshot that draws the most faces: face64 runs of one recipe swing severalfold in faces between
    # nearby steps (12/32 samples at step 3,500, 4/32 at 4,500). 0: only the last weights
    keep_every: int = 0
    sample_every: int = 500
    log_every: int = 50
    n_samples: int = 16

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# The small-data recipe, a little faster than tiny_official (smoke G_real stage 297 s vs 329 s for 1000 steps; two
# 33-step runs of benchmarks/results/gan.md put it 1-10 % ahead) but not what the smoke/cpu builds use: its G_real collapsed to one face by step 1000 and its pairs lost to tiny_official's
# in accuracy on both engines (README "The ablation on our data"). Set for small data and short runs
# (FIELD-NOTES, measured on the build's 800 photos): R1 near stylegan2-ada's
# 0.0002 * res^2 / batch instead of the official 10 / 1000, no path length and no style mixing (its cifar
# config), EMA with ramp-up, DiffAugment's geometric ops on every D input. Not its colour op: with it D no
# longer checks colours, G_real's faces drifted to grey-green and the smoke build's render distance fell
# from -35 % to -5.5 % vs the Baseline (the pairs must carry skin and hair colour).
_TINY = GANTrainConfig(iters=3000, batch_size=8, r1_img=0.05, r1_seg=0.5, lambda_mask=10.0, ema_half_life_img=2000.0,
                      ema_rampup=0.05, path_weight=0.0, mixing=0.0, augment="translation,cutout",
                      snapshot_every=250, sample_every=250, log_every=25, n_samples=32)

_TINY_OFFICIAL = replace(_TINY, r1_img=10.0, r1_seg=100.0, path_weight=0.5, mixing=0.3, augment="", ema_rampup=None)

TRAIN_PRESETS: dict[str, GANTrainConfig] = {
    "paper": GANTrainConfig(),
    "tiny": _TINY,
    # the tiny recipe before the small-data changes (2026-12-02): the official regularisers at full strength, no
    # augmentation, no EMA ramp-up; what the smoke and cpu builds use (toolchain/pipeline/config.py)
    "tiny_official": _TINY_OFFICIAL,
    # tiny_official + the reconstruction aid (encoder.py), part-weighted. Measured 2026-12-03 on the alter smoke build
    # (2 threads): G_real stage 435 s vs 329 s; its masks gain glasses and some eyes/mouths, its images get blurrier;
    # face-likeness 0/200, label consistency 0.263 (official 0.261), render distance -5.5 % vs the Baseline (official
    # -29.0 %), accuracy 0.269 (official 0.325): not used by any build preset (README, "The reconstruction aid")
    "tiny_recon": replace(_TINY_OFFICIAL, recon_weight=30.0, recon_seg=0.1, recon_kl=0.001),
    "small64": GANTrainConfig(iters=20_000, batch_size=16, r1_seg=100.0, lambda_mask=10.0, ema_half_life_img=5000.0),
}


def train_preset(name: str, **overrides: Any) -> GANTrainConfig:
    return lookup_preset(TRAIN_PRESETS, name, "training preset", **overrides)


def lr_at(tcfg: GANTrainConfig, step: int) -> float:
    """The base learning rate of step ``step`` (0-based), before the lazy-regularisation correction."""
    if tcfg.lr_drop_at > 0 and step >= tcfg.lr_drop_at:
        return tcfg.lr_after
    return tcfg.lr


def check_schedule(tcfg: GANTrainConfig) -> None:
    if tcfg.lr_drop_at < 0 or (tcfg.lr_drop_at > 0 and tcfg.lr_after <= 0):
        raise AvatarToolError(f"a learning-rate drop needs lr_drop_at > 0 and lr_after > 0 (got lr_drop_at="
                              f"{tcfg.lr_drop_at}, lr_after={tcfg.lr_after}); set both, e.g. lr_drop_at=2250 "
                              "lr_after=0.002, or lr_drop_at=0 for a constant lr")


def step_seed(seed: int, step: int) -> int:
    return (seed * 1_000_003 + step * 7919 + 12345) % (2 ** 63)


KEPT_DIR = "kept"


def kept_path(run_dir: str | Path, step: int) -> Path:
    """Where a run keeps G_ema's weights after ``step`` steps (``GANTrainConfig.keep_every``)."""
    return Path(run_dir) / KEPT_DIR / f"step_{step:06d}.safetensors"


def kept_snapshots(run_dir: str | Path) -> list[tuple[int, Path]]:
    """(step, weights) of every snapshot a run kept, in step order."""
    d = Path(run_dir) / KEPT_DIR
    found = [(int(p.stem.split("_")[1]), p) for p in d.glob("step_*.safetensors")] if d.is_dir() else []
    return sorted(found)


def ema_beta_at(tcfg: GANTrainConfig, images_seen: int) -> float:
    """EMA decay per step after ``images_seen`` images (with ramp-up, the half-life is capped by them)."""
    half_life = tcfg.ema_half_life_img
    if tcfg.ema_rampup is not None:
        half_life = min(half_life, images_seen * tcfg.ema_rampup)
    return 0.5 ** (tcfg.batch_size / max(half_life, 1e-8))


def to_model_mask(parts: torch.Tensor, n_parts: int) -> torch.Tensor:
    return F.one_hot(parts, n_parts).permute(0, 3, 1, 2).float() * 2 - 1


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - beta)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


# (G output, z, z2 or None, mixing pick or None) -> (loss, stats to log)
ExtraLoss = Callable[..., tuple[torch.Tensor, dict[str, float]]]


class SectionClock:
    """Wall time per named part of a training step: ``mark(name)`` books the time since the previous mark
    to ``name``. With ``totals=None`` it does nothing (the default, so the loop pays no clock reads)."""

    def __init__(self, totals: dict[str, float] | None):
        self.totals, self.last = totals, time.perf_counter()

    def mark(self, name: str) -> None:
        if self.totals is not None:
            now = time.perf_counter()
            self.totals[name] = self.totals.get(name, 0.0) + now - self.last
            self.last = now


def run_gan(data_dir: str | Path, out_dir: str | Path, gcfg: GeneratorConfig, tcfg: GANTrainConfig, *,
            init_generator: dict[str, torch.Tensor] | None = None, init_discriminator: dict[str, torch.Tensor] | None = None,
            extra_g_loss: ExtraLoss | None = None, freeze_local: bool = False, run_meta: dict | None = None,
            device: str | None = None, progress: ProgressFn | None = None, stop_after: int | None = None,
            images: np.ndarray | None = None, masks: np.ndarray | None = None,
            section_seconds: dict[str, float] | None = None) -> dict[str, Any]:
    """Train (or resume) a SemanticStyleGAN in ``out_dir``. ``stop_after`` ends early after that many steps
    (as a crash would; tests). ``images``/``masks`` may be passed pre-loaded instead of read from ``data_dir``.
    ``section_seconds``, when given, is filled with the wall time spent in each part of the steps (profiling)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dist = distributed.info()
    dev = distributed.device_for_rank(device) if dist.enabled else select_device(device)
    torch.set_flush_denormal(True)   # this thread at least (see torch_utils.configure_cpu_math for the workers)
    precision = resolve_precision(tcfg.precision, dev)
    amp = dict(device_type=dev.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    if images is None:
        images, masks = load_mask_folder(data_dir, gcfg, need_masks=tcfg.seg_discriminator)
    if tcfg.seg_discriminator and masks is None:
        raise AvatarToolError("the dual-branch discriminator needs masks; use an image-only discriminator")
    if tcfg.recon_weight > 0 and (masks is None or not tcfg.seg_discriminator):
        raise AvatarToolError("the reconstruction aid (recon_weight > 0) encodes photos with their masks: train on a "
                              "folder with masks and the dual-branch discriminator, or set recon_weight=0")
    check_schedule(tcfg)
    imgs_t = torch.from_numpy(images).to(dev)
    masks_t = torch.from_numpy(masks).to(dev) if masks is not None else None
    # what the weights depend on; iters and logging/snapshot cadence may change between resumes (extend a run)
    train_id = {k: v for k, v in tcfg.to_json().items() if k not in ("iters", "snapshot_every", "sample_every", "log_every")}
    train_id["precision"] = precision   # what ran, not "auto": the weights depend on it
    identity = {"generator": gcfg.to_json(), "train": train_id, "data": str(Path(data_dir).resolve()),
                "n_images": int(len(images)), **(run_meta or {})}

    torch.manual_seed(tcfg.seed)
    G = SemanticGenerator(gcfg).to(dev)
    D = DualBranchDiscriminator(gcfg, use_seg=tcfg.seg_discriminator).to(dev)
    if init_generator is not None:
        G.load_state_dict(init_generator)
    if init_discriminator is not None:
        D.load_state_dict(init_discriminator, strict=False)
    G_ema = copy.deepcopy(G).eval().requires_grad_(False)
    frozen = set(id(p) for p in (list(G.local.parameters()) + list(G.fourier.parameters()))) if freeze_local else set()
    g_params = [p for p in G.parameters() if id(p) not in frozen]
    for p in G.parameters():
        p.requires_grad_(id(p) not in frozen)
    g_ratio, d_ratio = tcfg.g_reg_every / (tcfg.g_reg_every + 1), tcfg.d_reg_every / (tcfg.d_reg_every + 1)
    g_opt = torch.optim.Adam(g_params, lr=tcfg.lr * g_ratio, betas=(0.0, 0.99 ** g_ratio))
    d_opt = torch.optim.Adam(D.parameters(), lr=tcfg.lr * d_ratio, betas=(0.0, 0.99 ** d_ratio))
    E = PhotoEncoder(gcfg).to(dev) if tcfg.recon_weight > 0 else None
    # eyes and mouths are a few pixels of a 32 px photo: unweighted, a reconstruction can drop them for free
    part_weight = losses.inverse_share_weights(masks_t, gcfg.n_parts) if E is not None else None
    e_opt = torch.optim.Adam(E.parameters(), lr=tcfg.lr, betas=(0.5, 0.99)) if E is not None else None
    mean_path = torch.zeros((), device=dev)
    start = 0
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=dev, weights_only=True)
        stored = dict(ck["identity"])
        if isinstance(stored.get("generator"), dict):  # fields added to the config since then: their defaults
            stored["generator"] = GeneratorConfig.from_json(stored["generator"]).to_json()
        if isinstance(stored.get("train"), dict):  # checkpoints from before the setting ran bf16 on CUDA only
            stored["train"] = {**stored["train"], "precision": stored["train"].get(
                "precision", "bf16" if dev.type == "cuda" else "fp32")}
            # fields added to the training config since then (the lr schedule): their defaults
            defaults = GANTrainConfig().to_json()
            stored["train"] = {**{k: defaults[k] for k in train_id if k not in stored["train"]}, **stored["train"]}
        if stored != identity:
            was = stored.get("train", {}).get("precision")
            if was != precision and {**stored, "train": {**stored["train"], "precision": precision}} == identity:
                raise AvatarToolError(f"{out} holds a checkpoint trained in {was}, and this run would continue in "
                                      f"{precision}; resume with precision={was} (on this machine 'auto' gives "
                                      f"{resolve_precision('auto', dev)}) or use another --out folder")
            raise AvatarToolError(f"{out} holds a checkpoint from another configuration or dataset; resume with the "
                                  "same options or use another --out folder")
        G.load_state_dict(ck["G"]), D.load_state_dict(ck["D"]), G_ema.load_state_dict(ck["G_ema"])
        g_opt.load_state_dict(ck["g_opt"]), d_opt.load_state_dict(ck["d_opt"])
        if E is not None:
            E.load_state_dict(ck["E"]), e_opt.load_state_dict(ck["e_opt"])
        mean_path, start = ck["mean_path"].to(dev), ck["step"]
    stats_path = out / "stats.jsonl"
    stats = [r for r in (read_jsonl(stats_path) if stats_path.exists() else []) if r["step"] <= start]
    # what the weights were made from (kept out of ``identity``: a resume check, not a provenance record)
    made_from = [o for o in (path_origin(data_dir), path_origin((run_meta or {}).get("real_generator"))) if o]
    identity_out = {**identity, "made_from": made_from}
    if dist.is_main:
        atomic_write_json(out / "run.json", {**identity_out, "status": "running", "device": str(dev)})
    distributed.broadcast_module(G), distributed.broadcast_module(D), distributed.broadcast_module(G_ema)
    if E is not None:
        distributed.broadcast_module(E)
    sample_z = torch.randn(tcfg.n_samples, gcfg.style_dim, generator=torch.Generator().manual_seed(tcfg.seed + 99)).to(dev)
    aug_ops = parse_policy(tcfg.augment)

    def d_view(img: torch.Tensor, seg: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What D sees: the augmented image and mask (the same policy for real and generated)."""
        if not aug_ops:
            return img, seg
        with noise_rows(b, rows):
            return diff_augment(img, seg, aug_ops)
    n, b, sd = len(images), tcfg.batch_size, gcfg.style_dim
    pb = max(1, b // tcfg.path_batch_shrink)
    # this rank's rows of the global batch (None: one process, all rows, the random draws untouched)
    rows = rows_p = None
    if dist.enabled:
        if tcfg.path_weight > 0 and pb < dist.world_size:
            raise AvatarToolError(f"batch size {b} is too small for {dist.world_size} processes: the path-length batch "
                                  f"(batch / {tcfg.path_batch_shrink}) needs a sample per process; raise the batch size")
        rows = torch.tensor(distributed.group_preserving_rows(b, dist.world_size, dist.rank, D.stddev_group))
        rows_p = torch.arange(pb)[distributed.rank_share(pb, dist.world_size, dist.rank)]
    pl_weight = 1.0 if rows_p is None else len(rows_p) * dist.world_size / pb  # DDP averages: weight by share

    def take(t: torch.Tensor | None, r: torch.Tensor | None) -> torch.Tensor | None:
        return t if t is None or r is None else t[r.to(t.device)]

    def g_trainable(flag: bool) -> None:
        for p in g_params:
            p.requires_grad_(flag)

    def latents(batch: int, r: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        z = torch.randn(batch, sd, device=dev)
        if torch.rand(()) < tcfg.mixing:
            return take(z, r), take(torch.randn(batch, sd, device=dev), r), take(G.mixing_pick(batch), r)
        return take(z, r), None, None

    def rank_mean(row: dict[str, float]) -> dict[str, float]:
        """Logged values averaged over ranks (equal shares: the global batch's values)."""
        if not dist.enabled:
            return row
        keys = sorted(row)
        vals = distributed.all_reduce_sum(torch.tensor([row[k] for k in keys], dtype=torch.float64)) / dist.world_size
        return dict(zip(keys, vals.tolist()))

    def save_snapshot(step: int) -> None:
        encoder = {"E": E.state_dict(), "e_opt": e_opt.state_dict()} if E is not None else {}
        save_checkpoint_atomic(ckpt_path, {"G": G.state_dict(), "D": D.state_dict(), "G_ema": G_ema.state_dict(),
                                "g_opt": g_opt.state_dict(), "d_opt": d_opt.state_dict(), "mean_path": mean_path.cpu(),
                                "step": step, "identity": identity, **encoder})
        atomic_write_jsonl(stats_path, stats)

    def reconstruction(real: torch.Tensor, parts: torch.Tensor, seg: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The reconstruction aid's loss on a real batch: part indices and their model mask (call inside noise_rows)."""
        mu, logvar = E(real, seg)
        eps = take(torch.randn(b, sd, device=dev), rows)
        rec = G.sample(mu + eps * (0.5 * logvar).exp())
        pixel_w = part_weight[parts]
        l1_img = ((rec.image.float() - real).abs().mean(1) * pixel_w).sum() / pixel_w.sum()
        ce_seg = F.cross_entropy(rec.seg.float() * losses.SEG_LOGIT_SCALE, parts, weight=part_weight)
        kl = kl_to_prior(mu, logvar)
        loss = tcfg.recon_weight * (l1_img + tcfg.recon_seg * ce_seg + tcfg.recon_kl * kl)
        return loss, {"recon_img": l1_img.item(), "recon_seg": ce_seg.item(), "kl": kl.item()}

    acc: dict[str, list[float]] = {}
    t_last, step_last = time.perf_counter(), start
    step = start
    clock = SectionClock(section_seconds)
    for step in range(start, tcfg.iters):
        clock.mark("log, samples, snapshots")
        torch.manual_seed(step_seed(tcfg.seed, step))
        idx = take(torch.randint(0, n, (b,)), rows)
        real = uint8_to_signed(imgs_t[idx.to(dev)])
        real_parts = masks_t[idx.to(dev)] if tcfg.seg_discriminator else None
        real_seg = to_model_mask(real_parts, gcfg.n_parts) if real_parts is not None else None
        row: dict[str, float] = {}

        for opt, ratio in ((g_opt, g_ratio), (d_opt, d_ratio), (e_opt, 1.0)):
            for group in (opt.param_groups if opt is not None else []):
                group["lr"] = lr_at(tcfg, step) * ratio
        clock.mark("batch")
        # --- discriminator ---
        g_trainable(False)
        D.requires_grad_(True)
        z, z2, pick = latents(b, rows)
        with torch.no_grad(), torch.autocast(**amp), noise_rows(b, rows):
            fake = G.sample(z, z2, pick=pick)
        with torch.autocast(**amp):
            real_pred = D(*d_view(real, real_seg))
            fake_pred = D(*d_view(fake.image.detach(), fake.seg.detach() if tcfg.seg_discriminator else None))
            d_loss = losses.d_logistic(real_pred.float(), fake_pred.float())
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        distributed.average_gradients(D.parameters())
        d_opt.step()
        row.update(d=d_loss.item(), real_score=real_pred.detach().mean().item(), fake_score=fake_pred.detach().mean().item())
        clock.mark("D step")
        if step % tcfg.d_reg_every == 0:
            inputs = [real.detach().requires_grad_(True)]
            if real_seg is not None:
                inputs.append(real_seg.detach().requires_grad_(True))
            pred = D(*inputs) if real_seg is not None else D(inputs[0])
            r1 = losses.r1_penalty(pred, inputs)
            reg = tcfg.r1_img / 2 * r1[0] + (tcfg.r1_seg / 2 * r1[1] if len(r1) > 1 else 0)
            d_opt.zero_grad(set_to_none=True)
            (reg * tcfg.d_reg_every + 0 * pred[0, 0]).backward()
            distributed.average_gradients(D.parameters())
            d_opt.step()
            row["r1_img"] = r1[0].item()
            if len(r1) > 1:
                row["r1_seg"] = r1[1].item()

        clock.mark("R1 (lazy)")
        # --- generator ---
        g_trainable(True)
        D.requires_grad_(False)
        z, z2, pick = latents(b, rows)
        with torch.autocast(**amp), noise_rows(b, rows):  # the colour loss's G_real sample too
            fake = G.sample(z, z2, pick=pick)
            fake_pred = D(*d_view(fake.image, fake.seg if tcfg.seg_discriminator else None))
            g_loss = losses.g_nonsaturating(fake_pred.float())
            mask_loss = losses.mask_consistency(fake.seg, fake.seg_coarse)
            total = g_loss + tcfg.lambda_mask * mask_loss
            if extra_g_loss is not None:
                extra, extra_stats = extra_g_loss(fake, z, z2, pick)
                total = total + extra
                row.update(extra_stats)
            if E is not None:
                rec_loss, rec_stats = reconstruction(real, real_parts, real_seg)
                total = total + rec_loss
                row.update(rec_stats)
        g_opt.zero_grad(set_to_none=True)
        if e_opt is not None:
            e_opt.zero_grad(set_to_none=True)
        total.backward()
        distributed.average_gradients(g_params)
        g_opt.step()
        if e_opt is not None:
            distributed.average_gradients(E.parameters())
            e_opt.step()
        row.update(g=g_loss.item(), mask=mask_loss.item())
        clock.mark("G step")
        if tcfg.path_weight > 0 and step % tcfg.g_reg_every == 0:
            with torch.no_grad():
                zp, zp2, ppick = latents(pb, rows_p)
                wplus = G.z_to_wplus(zp, zp2, pick=ppick)
            wplus.requires_grad_(True)
            with noise_rows(pb, rows_p):
                po = G.synthesize(wplus)
            path_noise = take(torch.randn(pb, *po.image.shape[1:], device=dev, dtype=po.image.dtype), rows_p)
            pl, mean_path, lengths = losses.path_length_penalty(
                po.image, wplus, mean_path, noise=path_noise,
                batch_mean=None if rows_p is None else lambda l: distributed.all_reduce_sum(l.sum()) / pb)
            g_opt.zero_grad(set_to_none=True)
            (tcfg.path_weight * tcfg.g_reg_every * pl * pl_weight + 0 * po.image[0, 0, 0, 0]
             + 0 * po.seg[0, 0, 0, 0]).backward()
            distributed.average_gradients(g_params)
            g_opt.step()
            row.update(path=pl.item(), path_length=lengths.mean().item())
        clock.mark("path length (lazy)")
        ema_update(G_ema, G, ema_beta_at(tcfg, (step + 1) * b))
        clock.mark("EMA")

        row = rank_mean(row)
        for k, v in row.items():
            acc.setdefault(k, []).append(v)
        done = step + 1
        if done % tcfg.log_every == 0 or done == tcfg.iters:
            now = time.perf_counter()
            stats.append({"step": done, **{k: float(np.mean(v)) for k, v in acc.items()},
                          "it_per_s": (done - step_last) / max(now - t_last, 1e-9)})
            acc, t_last, step_last = {}, now, done
        if progress and dist.is_main:
            progress("train", done, tcfg.iters, {"d": row["d"], "g": row["g"]})
        if dist.is_main and (done % tcfg.sample_every == 0 or done == tcfg.iters):
            save_png_atomic(out / "samples" / f"step_{done:06d}.png", sample_grid(G_ema, sample_z))
            # the raw generator too: early on it shows what the EMA average still hides
            save_png_atomic(out / "samples_raw" / f"step_{done:06d}.png", sample_grid(G, sample_z))
        if dist.is_main and tcfg.keep_every and done % tcfg.keep_every == 0:
            kept_path(out, done).parent.mkdir(parents=True, exist_ok=True)
            save_weights(kept_path(out, done), G_ema, gcfg, {"steps": done, "kept_snapshot": True})
        if done % tcfg.snapshot_every == 0 or done == tcfg.iters or (stop_after is not None and done >= stop_after):
            if dist.is_main:
                save_snapshot(done)
        if stop_after is not None and done >= stop_after:
            distributed.barrier()
            return {**identity, "status": "stopped", "steps_done": done}

    clock.mark("log, samples, snapshots")
    meta = {"steps": tcfg.iters, **{k: v for k, v in (run_meta or {}).items() if isinstance(v, (str, int, float))}}
    summary = {**identity_out, "status": "done", "steps_done": tcfg.iters, "device": str(dev),
               "final": stats[-1] if stats else {}}
    if dist.is_main:
        save_weights(out / "generator.safetensors", G_ema.cpu(), gcfg, meta)
        save_weights(out / "discriminator.safetensors", D.cpu(), gcfg, {**meta, "use_seg": tcfg.seg_discriminator})
        atomic_write_json(out / "run.json", summary)
    distributed.barrier()
    return summary


def train_real(data_dir: str | Path, out_dir: str | Path, gcfg: GeneratorConfig, tcfg: GANTrainConfig,
               **kw: Any) -> dict[str, Any]:
    """Train G_real on a folder of (image, mask) pairs (e.g. ``avatartool proxy --unlabelled``)."""
    return run_gan(data_dir, out_dir, gcfg, tcfg, run_meta={"role": "real"}, **kw)

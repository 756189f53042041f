"""Estimator training: paired datasets in, ``estimator.pt`` + ``stats.jsonl`` + per-epoch checkpoint out.

Resumes exactly: the data order and augmentation of epoch ``e`` depend only on ``(seed, e)``, and the
checkpoint written atomically after each epoch holds model, optimiser and scheduler state, so an
interrupted run continued from its checkpoint ends with the same weights as an uninterrupted one.

Under torchrun (toolchain/distributed.py) the model is wrapped in DistributedDataParallel with batch
statistics over all ranks, and every rank takes a contiguous share of the *same* global batch (batch_size
is global, not per GPU), drawing the augmentation for the whole batch and keeping its rows. Each rank's
loss is weighted by its share, so the averaged gradient is the gradient of the global batch's mean loss:
a step equals the one-process step up to float summation order, whatever the number of ranks, and a run
may resume on another number of ranks. Rank 0 validates and writes checkpoints and stats.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .. import distributed
from ..atomic_io import atomic_write_json, atomic_write_jsonl, read_jsonl
from ..data.paired_dataset import PairedDataset
from ..errors import AvatarToolError, LabelLeakError
from ..presets import lookup_preset
from ..provenance import dataset_origin, origin, walk
from ..torch_utils import save_checkpoint_atomic, select_device
from ..schema import AvatarSchema
from .losses import LossWeights, estimator_loss
from .metrics import evaluate_arrays
from .model import AvatarEstimator, EstimatorConfig, load_backbone_weights
from .predict import prepare_batch
from .small_map_conv import small_map_weight_grads


@dataclass
class TrainConfig:
    """Paper defaults (Adam, batch 256, 100 epochs, lr 1e-3 halved every 30 epochs, 224 px)."""

    epochs: int = 100
    batch_size: int = 256
    lr: float = 1e-3
    lr_step_epochs: int = 30
    lr_gamma: float = 0.5
    input_size: int = 224
    val_fraction: float = 0.1
    seed: int = 0
    augment: bool = True
    # with augment: the largest random unsharp-mask amount per training image (predict.unsharp); 0 = none
    sharpen: float = 0.0
    loss: LossWeights = field(default_factory=LossWeights)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrainConfig":
        d = dict(d)
        d["loss"] = LossWeights(**d.get("loss", {}))
        return cls(**d)


PRESETS: dict[str, TrainConfig] = {
    "paper": TrainConfig(),
    # CPU-sized: a few thousand renders trained in minutes on 2 cores.
    "small": TrainConfig(epochs=8, batch_size=32, lr=1e-3, lr_step_epochs=3, input_size=112),
    # Tests: seconds.
    "tiny": TrainConfig(epochs=2, batch_size=8, lr=1e-3, lr_step_epochs=1, input_size=64),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    return lookup_preset(PRESETS, name, "training config", **overrides)


def matched_budget(cfg: TrainConfig, n_samples: int, samples_seen: int) -> TrainConfig:
    """``cfg`` with the epochs that show ``samples_seen`` samples from a dataset of ``n_samples``, the
    learning-rate steps stretched with them: how two datasets of different sizes get one budget."""
    epochs = max(1, round(samples_seen / max(1, n_samples)))
    if epochs == cfg.epochs:
        return cfg
    return replace(cfg, epochs=epochs, lr_step_epochs=max(1, round(cfg.lr_step_epochs * epochs / cfg.epochs)))


ProgressFn = Callable[[str, int, int, dict], None]  # (phase, step, total, info)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def _load_datasets(dirs: Sequence[str | Path]) -> tuple[AvatarSchema, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    from ..proxy.eval_set import assert_not_eval_set
    if not dirs:
        raise AvatarToolError("no training dataset given")
    sets = []
    for d in dirs:
        assert_not_eval_set(d)
        ds = PairedDataset.open(d)
        # the whole chain, not just the dataset's own sources: renders, generators and their photos
        for node in walk([dataset_origin(ds.root)]):
            if Path(node["path"]).exists():
                assert_not_eval_set(node["path"])
            if any(s.get("stream") == "proxy-eval" for s in node.get("streams", [])):   # even if deleted since
                raise LabelLeakError(f"{d} was made from {node['kind']} {node['path']}, whose vectors are the labelled "
                                     "evaluation stream; evaluation labels must never be trained on")
        for source in ds.meta.get("sources", []):
            assert_not_eval_set(source)
        sets.append(ds)
    schema = sets[0].schema
    for ds in sets[1:]:
        if ds.schema.to_json() != schema.to_json():
            raise AvatarToolError(f"{ds.root} was made for engine '{ds.schema.engine}', {sets[0].root} for "
                                  f"'{schema.engine}' with another schema: train on one engine at a time")
    sources = [{"path": str(ds.root.resolve()), "count": len(ds), "meta": ds.meta, "origin": dataset_origin(ds.root)}
               for ds in sets]
    # datasets of other sizes (32 px pairs beside 64 px renders) meet at the largest: every image is resized to the
    # input size per batch anyway, so upsampling here loses nothing the training would have kept
    size = max(max(d.images.shape[1:3]) for d in sets)
    return (schema, np.concatenate([_at_size(d.images, size) for d in sets]),
            np.concatenate([d.continuous for d in sets]), np.concatenate([d.discrete for d in sets]), sources)


def _at_size(images: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """uint8 ``[N,H,W,3]`` at ``size`` x ``size`` (bilinear, antialiased); returned as is when already that size."""
    if images.shape[1:3] == (size, size):
        return images
    out = np.empty((len(images), size, size, 3), np.uint8)
    for i in range(0, len(images), chunk):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + chunk])).permute(0, 3, 1, 2).float()
        y = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i:i + chunk] = y.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_val = int(round(n * fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and n > 1 else 0), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def rank_batch_loss(net: torch.nn.Module, model: AvatarEstimator, arrays: tuple[np.ndarray, np.ndarray, np.ndarray],
                    batch: np.ndarray, schema: AvatarSchema, cfg: TrainConfig, dev: torch.device,
                    gen: torch.Generator | None, use_amp: bool, dist: distributed.DistInfo
                    ) -> tuple[torch.Tensor, float, int]:
    """This rank's share of the global ``batch`` through ``net``: (loss to back-propagate, its unweighted
    value, share size). DDP averages gradients over ranks, so the loss is weighted by the share: the
    averaged gradient is then that of the global batch's mean loss, shares equal or not."""
    images, cont, disc = arrays
    rows = distributed.rank_share(len(batch), dist.world_size, dist.rank)
    idx = batch[rows]
    x = prepare_batch(images[idx], model, cfg.input_size, dev, gen, rows=rows, global_batch=len(batch),
                      sharpen=cfg.sharpen)
    if use_amp:
        x = x.contiguous(memory_format=torch.channels_last)
    c = torch.from_numpy(cont[idx]).to(dev)
    d = torch.from_numpy(disc[idx]).to(dev)
    with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
        out = net(x)
    if not len(idx):  # a last batch smaller than the world: this rank still joins the gradient all-reduce
        return sum(o.float().sum() for o in out.values()) * 0.0, 0.0, 0
    loss, _ = estimator_loss(out, c, d, schema, cfg.loss)
    value = float(loss.detach())
    if dist.enabled:
        loss = loss * (len(idx) * dist.world_size / len(batch))
    return loss, value, len(idx)


def train(datasets: Sequence[str | Path], out_dir: str | Path, cfg: TrainConfig, backbone_weights: str | Path | None = None,
          device: str | None = None, progress: ProgressFn | None = None, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train (or resume) an estimator. Returns the run summary also written to ``out_dir/run.json``.

    ``stop_after_epoch`` ends the run early after that epoch, as a crash would (used by tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist = distributed.info()
    dev = distributed.device_for_rank(device) if dist.enabled else select_device(device)
    schema, images, cont, disc, sources = _load_datasets(datasets)
    train_idx, val_idx = _split(len(images), cfg.val_fraction, cfg.seed)
    if len(train_idx) == 0:
        raise AvatarToolError("the dataset is too small to train on")

    torch.manual_seed(cfg.seed)
    model = AvatarEstimator(EstimatorConfig(input_size=cfg.input_size, schema=schema.to_json()))
    ckpt_path = out_dir / "checkpoint.pt"
    start_epoch = 0
    run_path = out_dir / "run.json"
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
        if ckpt["train_config"] != cfg.to_json() or ckpt["sources"] != [s["path"] for s in sources]:
            raise AvatarToolError(f"{out_dir} holds a checkpoint from another configuration or dataset; resume with "
                                  "the same options or use another --out folder")
        model.load_state_dict(ckpt["model"])
        start_epoch = ckpt["epoch"] + 1
        backbone_report = json.loads(run_path.read_text())["backbone"] if run_path.exists() else {"pretrained": None}
    else:
        backbone_report = load_backbone_weights(model, backbone_weights)
    model.to(dev)
    use_amp = dev.type == "cuda"
    if use_amp:
        model = model.to(memory_format=torch.channels_last)
    net = model  # what is trained through: the DDP wrapper under torchrun, the model itself otherwise
    if dist.enabled:
        model = distributed.sync_batchnorm(model, dev)
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dev.index] if dev.type == "cuda" else None)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    if start_epoch:
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        if use_amp and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])

    stats_path = out_dir / "stats.jsonl"
    stats = [s for s in (read_jsonl(stats_path) if stats_path.exists() else []) if s["epoch"] < start_epoch]
    provenance = origin("estimator", out_dir / "estimator.pt", made_from=[s["origin"] for s in sources])
    summary = {"schema": schema.to_json(), "train_config": cfg.to_json(), "sources": sources, "provenance": provenance,
               "backbone": backbone_report,
               "device": str(dev), "amp": use_amp, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
               "warnings": [backbone_report["warning"]] if backbone_report.get("warning") else []}
    if dist.is_main:
        atomic_write_json(run_path, {**summary, "status": "running"})
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = _epoch_generator(cfg.seed, epoch)
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        t0, running, seen = time.perf_counter(), 0.0, 0
        with small_map_weight_grads(model):   # layer4's weight gradients at 64 px: a quarter of a CPU step
            for step in range(steps_per_epoch):
                batch = np.sort(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
                loss, local_loss, n_local = rank_batch_loss(net, model, (images, cont, disc), batch, schema, cfg, dev,
                                                            gen if cfg.augment else None, use_amp, dist)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                running += local_loss * n_local
                seen += n_local
                if progress and dist.is_main:
                    progress("train", epoch * steps_per_epoch + step + 1, cfg.epochs * steps_per_epoch,
                             {"epoch": epoch + 1, "loss": running / seen})
        lr = opt.param_groups[0]["lr"]
        sched.step()
        running, seen = (float(v) for v in distributed.all_reduce_sum(torch.tensor([running, float(seen)], dtype=torch.float64)))
        row = {"epoch": epoch, "lr": lr, "train_loss": running / max(seen, 1), "seconds": time.perf_counter() - t0}
        if dist.is_main:
            if len(val_idx):
                row["val"] = evaluate_arrays(model, images[val_idx], cont[val_idx], disc[val_idx], cfg.input_size, dev)
            state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "epoch": epoch, "train_config": cfg.to_json(), "sources": [s["path"] for s in sources]}
            if use_amp:
                state["scaler"] = scaler.state_dict()
            save_checkpoint_atomic(ckpt_path, state)
            stats.append(row)
            atomic_write_jsonl(stats_path, stats)
        distributed.barrier()  # every rank sees this epoch's checkpoint before going on (or stopping)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {**summary, "status": "stopped", "epochs_done": epoch + 1}
    if dist.is_main:
        final = {"config": model.config.to_json(),
                 "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                 "backbone": backbone_report, "sources": [s["path"] for s in sources], "provenance": provenance}
        save_checkpoint_atomic(out_dir / "estimator.pt", final)
    summary.update(status="done", epochs_done=cfg.epochs, final=stats[-1] if stats else {})
    if dist.is_main:
        atomic_write_json(run_path, summary)
    distributed.barrier()
    return summary

"""Estimator training: paired datasets in, ``estimator.pt`` + ``stats.jsonl`` + per-epoch checkpoint out.

Resumes exactly: the data order and augmentation of epoch ``e`` depend only on ``(seed, e)``, and the
checkpoint written atomically after each epoch holds model, optimiser and scheduler state, so an
interrupted run continued from its checkpoint ends with the same weights as an uninterrupted one.
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
import torch.nn.functional as F

from ..atomic_io import atomic_write_bytes, atomic_write_json, atomic_write_jsonl, read_jsonl
from ..data.paired_dataset import PairedDataset
from ..errors import AvatarToolError
from ..schema import AvatarSchema
from .losses import LossWeights, estimator_loss
from .model import CONTINUOUS_HEAD, AvatarEstimator, EstimatorConfig, load_backbone_weights


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
    if name not in PRESETS:
        raise AvatarToolError(f"unknown training config '{name}' (choose from {', '.join(PRESETS)})")
    return replace(PRESETS[name], **{k: v for k, v in overrides.items() if v is not None})


ProgressFn = Callable[[str, int, int, dict], None]  # (phase, step, total, info)


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def prepare_batch(images: np.ndarray, model: AvatarEstimator, size: int, device: torch.device,
                  generator: torch.Generator | None) -> torch.Tensor:
    """uint8 [B,H,W,3] → normalised float [B,3,size,size]; with a generator, a random zoom/shift and a
    mild brightness/contrast jitter (no flips: many assets are asymmetric)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    b = x.shape[0]
    if generator is not None:
        scale = 0.85 + 0.15 * torch.rand(b, generator=generator)
        shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * (1 - scale).unsqueeze(1)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0] = scale
        theta[:, 1, 1] = scale
        theta[:, :, 2] = shift
        grid = F.affine_grid(theta, (b, 3, size, size), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        bright = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.2
        contrast = 1 + (torch.rand(b, 1, 1, 1, generator=generator) - 0.5) * 0.2
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contrast + mean) * bright
        x = x.clamp_(0, 1)
    elif x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.to(device)
    return (x - model.mean) / model.std


def _load_datasets(dirs: Sequence[str | Path]) -> tuple[AvatarSchema, np.ndarray, np.ndarray, np.ndarray, list[dict]]:
    from ..proxy.eval_set import assert_not_eval_set
    if not dirs:
        raise AvatarToolError("no training dataset given")
    sets = []
    for d in dirs:
        assert_not_eval_set(d)
        ds = PairedDataset.open(d)
        for source in ds.meta.get("sources", []):
            assert_not_eval_set(source)
        sets.append(ds)
    schema = sets[0].schema
    for ds in sets[1:]:
        if ds.schema.to_json() != schema.to_json():
            raise AvatarToolError(f"{ds.root} was made for engine '{ds.schema.engine}', {sets[0].root} for "
                                  f"'{schema.engine}' with another schema: train on one engine at a time")
    sources = [{"path": str(ds.root.resolve()), "count": len(ds), "meta": ds.meta} for ds in sets]
    return (schema, np.concatenate([d.images for d in sets]), np.concatenate([d.continuous for d in sets]),
            np.concatenate([d.discrete for d in sets]), sources)


def _split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng([seed, 7]).permutation(n)
    n_val = int(round(n * fraction)) if n > 1 else 0
    n_val = min(max(n_val, 1 if fraction > 0 and n > 1 else 0), n - 1)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


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


def parameter_metrics(schema: AvatarSchema, pred_c: np.ndarray, pred_d: np.ndarray, continuous: np.ndarray,
                      discrete: np.ndarray) -> dict[str, Any]:
    """Per-parameter accuracy (discrete) and MAE in parameter units (continuous), plus their means."""
    metrics: dict[str, Any] = {"accuracy": {}, "mae": {}}
    for i, p in enumerate(schema.discrete):
        metrics["accuracy"][p.name] = float((pred_d[:, i] == discrete[:, i]).mean())
    for i, p in enumerate(schema.continuous):
        metrics["mae"][p.name] = float(np.abs(pred_c[:, i] - continuous[:, i]).mean() * (p.high - p.low))
    if metrics["accuracy"]:
        metrics["mean_accuracy"] = float(np.mean(list(metrics["accuracy"].values())))
    if metrics["mae"]:
        metrics["mean_mae"] = float(np.mean(list(metrics["mae"].values())))
    return metrics


def evaluate_arrays(model: AvatarEstimator, images: np.ndarray, continuous: np.ndarray, discrete: np.ndarray,
                    size: int, device: torch.device) -> dict[str, Any]:
    pc, pd, _ = predict_arrays(model, images, size, device)
    return parameter_metrics(model.schema, pc, pd, continuous, discrete)


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def train(datasets: Sequence[str | Path], out_dir: str | Path, cfg: TrainConfig, backbone_weights: str | Path | None = None,
          device: str | None = None, progress: ProgressFn | None = None, stop_after_epoch: int | None = None) -> dict[str, Any]:
    """Train (or resume) an estimator. Returns the run summary also written to ``out_dir/run.json``.

    ``stop_after_epoch`` ends the run early after that epoch, as a crash would (used by tests).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
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
    summary = {"schema": schema.to_json(), "train_config": cfg.to_json(), "sources": sources, "backbone": backbone_report,
               "device": str(dev), "amp": use_amp, "n_train": int(len(train_idx)), "n_val": int(len(val_idx)),
               "warnings": [backbone_report["warning"]] if backbone_report.get("warning") else []}
    atomic_write_json(run_path, {**summary, "status": "running"})
    steps_per_epoch = math.ceil(len(train_idx) / cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        gen = _epoch_generator(cfg.seed, epoch)
        order = train_idx[torch.randperm(len(train_idx), generator=gen).numpy()]
        t0, running, seen = time.perf_counter(), 0.0, 0
        for step in range(steps_per_epoch):
            idx = np.sort(order[step * cfg.batch_size:(step + 1) * cfg.batch_size])
            x = prepare_batch(images[idx], model, cfg.input_size, dev, gen if cfg.augment else None)
            if use_amp:
                x = x.contiguous(memory_format=torch.channels_last)
            c = torch.from_numpy(cont[idx]).to(dev)
            d = torch.from_numpy(disc[idx]).to(dev)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=use_amp):
                out = model(x)
            loss, _ = estimator_loss(out, c, d, schema, cfg.loss)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            running += float(loss.detach()) * len(idx)
            seen += len(idx)
            if progress:
                progress("train", epoch * steps_per_epoch + step + 1, cfg.epochs * steps_per_epoch,
                         {"epoch": epoch + 1, "loss": running / seen})
        lr = opt.param_groups[0]["lr"]
        sched.step()
        row = {"epoch": epoch, "lr": lr, "train_loss": running / max(seen, 1), "seconds": time.perf_counter() - t0}
        if len(val_idx):
            row["val"] = evaluate_arrays(model, images[val_idx], cont[val_idx], disc[val_idx], cfg.input_size, dev)
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                 "epoch": epoch, "train_config": cfg.to_json(), "sources": [s["path"] for s in sources]}
        if use_amp:
            state["scaler"] = scaler.state_dict()
        _save_checkpoint(ckpt_path, state)
        stats.append(row)
        atomic_write_jsonl(stats_path, stats)
        if stop_after_epoch is not None and epoch >= stop_after_epoch:
            return {**summary, "status": "stopped", "epochs_done": epoch + 1}
    final = {"config": model.config.to_json(), "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "backbone": backbone_report, "sources": [s["path"] for s in sources]}
    _save_checkpoint(out_dir / "estimator.pt", final)
    summary.update(status="done", epochs_done=cfg.epochs, final=stats[-1] if stats else {})
    atomic_write_json(run_path, summary)
    return summary


def load_estimator(path: str | Path, device: str | torch.device = "cpu") -> tuple[AvatarEstimator, dict[str, Any]]:
    """Load ``estimator.pt`` safely (``weights_only=True``); returns the model and the file's metadata."""
    path = Path(path)
    if not path.is_file():
        raise AvatarToolError(f"--model {path}: no such file (train one with `avatartool train` or `avatartool baseline`)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        model = AvatarEstimator(EstimatorConfig.from_json(blob["config"]))
        model.load_state_dict(blob["state_dict"])
    except (KeyError, RuntimeError, TypeError) as exc:
        raise AvatarToolError(f"{path} is not an avatartool estimator file: {exc}") from None
    return model.to(device).eval(), {k: v for k, v in blob.items() if k != "state_dict"}

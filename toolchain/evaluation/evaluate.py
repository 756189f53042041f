"""Evaluate an estimator on a labelled set (the photo proxy, a render set, or a user's real photos).

Reports per-parameter accuracy (discrete) and MAE (continuous: in each parameter's units and as a share of
its range, the mean over the normalised ones only), and render-space distances: the
predicted and the ground-truth vectors are rendered by the engine and compared with a weight-free
masked pixel distance, and with LPIPS when backbone weights are supplied. Writes ``eval.json``,
``eval.md`` and ``grid.png`` (input | predicted avatar | ground-truth avatar).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from ..atomic_io import atomic_write_json, atomic_write_text, save_png_atomic
from ..contact_sheet import contact_sheet
from ..engines.registry import create_engine
from ..errors import AvatarToolError, LabelLeakError
from ..estimator.io import load_estimator
from ..estimator.metrics import parameter_metrics
from ..estimator.predict import predict_arrays
from .confusion import confusion_markdown, confusion_matrices, save_confusion_png, shift_sentence
from ..provenance import Origin, content_leak, estimator_origin, find_leak, render_folder_origin, set_origin
from ..proxy.eval_set import EvalSet, compute_set_id, load_eval_set
from ..render.folder import RenderFolder, is_render_folder

RENDER_METRIC_SIZE = 128


def masked_l1(a: np.ndarray, b: np.ndarray, mask_a: np.ndarray | None, mask_b: np.ndarray | None) -> float:
    """Mean absolute RGB difference in [0, 1] over the pixels that either render marks as avatar
    (non-background); the whole image when masks are missing. Weight-free: always available."""
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / 255.0
    if mask_a is None or mask_b is None:
        return float(diff.mean())
    fg = (mask_a > 0) | (mask_b > 0)
    return float(diff[fg].mean()) if fg.any() else 0.0


def _lpips_metric(weights: str | Path | None) -> tuple[Callable[[np.ndarray, np.ndarray], float] | None, dict[str, Any]]:
    if weights is None:
        return None, {"available": False, "reason": "no --lpips-weights given (LPIPS backbones cannot be downloaded "
                                                    "here); the masked pixel distance is reported instead"}
    from ..metrics.lpips_metric import load_lpips
    fn = load_lpips(weights)
    return fn, {"available": True, "weights": str(weights)}


def _load_images(paths: list[Path], size: int) -> np.ndarray:
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, p in enumerate(paths):
        with Image.open(p) as im:
            from PIL import ImageOps
            im = ImageOps.exif_transpose(im).convert("RGB")
            out[i] = np.asarray(im.resize((size, size), Image.BILINEAR))
    return out


def load_labelled_set(set_dir: str | Path) -> EvalSet:
    """An evaluation set folder, or a render folder (``avatartool render`` output: held-out renders)."""
    root = Path(set_dir)
    if is_render_folder(root) and not (root / "set.json").exists():
        folder = RenderFolder.open(root)
        rendered = folder.items()
        if not rendered:
            raise AvatarToolError(f"{root} holds no rendered images")
        items = [(path, vector) for _, path, vector in rendered]
        names = [(path.name, vector) for path, vector in items]
        # Labelled with the engine's own name; the spec and working folder re-open it for rendering.
        return EvalSet(root=root, engine=folder.engine_name, set_id=compute_set_id(folder.engine, names),
                       kind="engine-renders", items=items, masks=[folder.mask_path(i) for i, _, _ in rendered],
                       meta={"engine_spec": folder.engine, "engine_cwd": folder.engine_cwd})
    return load_eval_set(root)


def labelled_set_origin(eval_set: EvalSet) -> Origin:
    """The provenance record of a set ``load_labelled_set`` returned (render folder or set.json folder)."""
    if eval_set.kind == "engine-renders":
        return render_folder_origin(eval_set.root)
    return set_origin(eval_set.root, eval_set.meta, eval_set.set_id, len(eval_set))


def evaluate(model_path: str | Path, set_dir: str | Path, out_dir: str | Path, lpips_weights: str | Path | None = None,
             engine: str | None = None, grid_rows: int = 16, device: str = "cpu",
             progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    out_dir = Path(out_dir)
    model, meta = load_estimator(model_path, device)
    eval_set = load_labelled_set(set_dir)
    set_root = str(Path(set_dir).resolve())
    schema = model.schema
    leak = find_leak([estimator_origin(model_path, meta)], labelled_set_origin(eval_set))
    leak = leak or content_leak([estimator_origin(model_path, meta)], schema, [v for _, v in eval_set.items])
    if leak:
        raise LabelLeakError(f"refusing to evaluate {model_path} on {set_root}: {leak}, so its scores would be "
                             "meaningless; evaluate on a set made from other data (another seed, another folder)")
    engine_spec = engine or eval_set.meta.get("engine_spec") or eval_set.engine
    engine_cwd = None if engine else eval_set.meta.get("engine_cwd")
    if schema.engine != eval_set.engine and engine is None:
        raise AvatarToolError(f"the model predicts for engine '{schema.engine}' but the set {set_root} is labelled for "
                              f"engine '{eval_set.engine}': evaluate on a set of '{schema.engine}', or, if it is the "
                              f"same engine under another name, pass --engine SPEC (the engine to render with)")
    paths = [p for p, _ in eval_set.items]
    vectors = [schema.validate(v) for _, v in eval_set.items]
    size = model.config.input_size
    images = _load_images(paths, max(size, RENDER_METRIC_SIZE))
    pc, pd, probs = predict_arrays(model, images, size, torch.device(device))
    gt_c, gt_d = schema.encode(vectors)
    metrics = parameter_metrics(schema, pc, pd, gt_c, gt_d)
    predicted = schema.decode(pc, pd)

    lpips_fn, lpips_info = _lpips_metric(lpips_weights)
    distances, lp_values = [], []
    renders_pred, renders_gt = [], []
    with create_engine(engine_spec, cwd=engine_cwd) as eng:
        for k in range(0, len(vectors), 16):
            a = eng.render(predicted[k:k + 16], size=RENDER_METRIC_SIZE, masks=True)
            b = eng.render(vectors[k:k + 16], size=RENDER_METRIC_SIZE, masks=True)
            for j in range(len(a)):
                ma = None if a.masks is None else a.masks[j]
                mb = None if b.masks is None else b.masks[j]
                distances.append(masked_l1(a.images[j], b.images[j], ma, mb))
                if lpips_fn is not None:
                    lp_values.append(lpips_fn(a.images[j], b.images[j]))
            if len(renders_pred) < grid_rows:
                renders_pred += list(a.images[: grid_rows - len(renders_pred)])
                renders_gt += list(b.images[: grid_rows - len(renders_gt)])
            if progress:
                progress(min(k + 16, len(vectors)), len(vectors))
    metrics["render_distance"] = {
        "masked_l1": {"mean": float(np.mean(distances)),
                      "what": "mean |RGB| difference in [0,1] between the renders of predicted and ground-truth "
                              "vectors, over pixels either render marks as avatar (weight-free)"},
        "lpips": ({"mean": float(np.mean(lp_values)), **lpips_info} if lp_values else lpips_info),
    }
    confidence = [float(p.max(1).mean()) for p in probs]
    report = {"model": str(model_path), "set": set_root, "set_id": eval_set.set_id, "set_kind": eval_set.kind,
              "engine": engine_spec, "n": len(vectors), "metrics": metrics,
              "mean_confidence": dict(zip([p.name for p in schema.discrete], confidence)),
              "model_backbone": meta.get("backbone", {})}
    if schema.discrete:
        report["confusion"] = confusion_matrices(schema, pd, gt_d)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "eval.json", report)
    atomic_write_text(out_dir / "eval.md", _markdown(report))
    if schema.discrete:
        save_confusion_png({"": report["confusion"]}, out_dir / "confusion.png")
    rows = min(grid_rows, len(vectors))
    tiles, labels = [], []
    for i in range(rows):
        tiles += [images[i], renders_pred[i], renders_gt[i]]
        labels += [f"input #{i}", "predicted", "ground truth"]
    save_png_atomic(out_dir / "grid.png", np.asarray(contact_sheet(tiles, labels, columns=6, thumb=128)))
    return report


def _markdown(report: dict[str, Any]) -> str:
    m = report["metrics"]
    lines = [f"# Evaluation on {report['set_kind']} set ({report['n']} images, engine {report['engine']})", "",
             f"model: `{report['model']}`", "", "| parameter | metric | value |", "|---|---|---|"]
    for name, acc in m["accuracy"].items():
        lines.append(f"| {name} | accuracy | {acc:.3f} |")
    nmae = m.get("normalised_mae", {})
    for name, mae in m["mae"].items():
        lines.append(f"| {name} | MAE (its units; share of its range) | {mae:.4f} ({nmae[name]:.2%}) |")
    if "mean_accuracy" in m:
        lines.append(f"| **mean** | accuracy | **{m['mean_accuracy']:.3f}** |")
    if m.get("mean_normalised_mae") is not None:
        lines.append(f"| **mean** | MAE as a share of each range | **{m['mean_normalised_mae']:.2%}** |")
    rd = m["render_distance"]
    lines += ["", f"Render distance, masked pixel L1 (weight-free): {rd['masked_l1']['mean']:.4f}"]
    lp = rd["lpips"]
    lines.append(f"LPIPS: {lp['mean']:.4f}" if "mean" in lp else f"LPIPS: not computed — {lp['reason']}")
    if report["model_backbone"].get("warning"):
        lines += ["", f"Warning from training: {report['model_backbone']['warning']}"]
    if report.get("confusion"):
        lines += ["", "## Answers per option", "",
                  f"Largest gaps between how often an option is true and how often it is answered: "
                  f"{shift_sentence(report['confusion'])}. Row per option (recall: the share of its images answered "
                  "with it); the full matrices are in eval.json (`confusion`) and confusion.png.", ""]
        lines += confusion_markdown(report["confusion"])
    return "\n".join(lines) + "\n"

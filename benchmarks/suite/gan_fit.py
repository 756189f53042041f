"""Can the build's G_real configuration draw its own training photos? (the fitting probe, toolchain/generators/
fit_probe.py): reconstruction error, per-part mask IoU and the face finder's share on the fits over steps, beside
the same photos' own share at the generator's size."""
from __future__ import annotations

import torch

from sdk_python.errors import AvatarSDKError
from toolchain.generators.config import generator_preset
from toolchain.generators.fit_probe import fit_photos
from toolchain.generators.mask_folder import load_mask_folder

from .common import BuildRun, Table, image_rows_figure

N_PHOTOS = 64


def run(build: BuildRun, quick: bool) -> Table:
    from toolchain.evaluation.face_likeness import FaceCounter
    c = build.cfg.real
    gcfg = generator_preset(c.generator_config)
    photos_dir = build.output("real_generator").get("photos")
    if not photos_dir:
        return Table("gan_fit", {"skipped": "the build's G_real came from a file: no training photos to fit"},
                     ["probe"], [["skipped: the build's G_real came from a file (no training photos in the run)"]])
    images, masks = load_mask_folder(photos_dir, gcfg, limit=N_PHOTOS)
    steps = 16 if quick else 1500
    at = (8,) if quick else (250, 500, 1000)
    checkpoints = fit_photos(gcfg, images, masks, steps, at=at)
    try:
        with FaceCounter() as fc:
            photo_faces = fc.count(images)
            found = [fc.count(cp.images) for cp in checkpoints]
        no_faces = None
    except AvatarSDKError as exc:   # no face models on this machine: the fit itself is still measured
        photo_faces, found, no_faces = None, [None] * len(checkpoints), str(exc)
    parts = [p for p in gcfg.parts if p != "background"]
    rows, data = [], {"config": c.generator_config, "size": gcfg.size, "n_photos": len(images), "steps": steps,
                      "threads": torch.get_num_threads(),
                      "photos_faces": None if photo_faces is None else photo_faces.to_json(), "checkpoints": []}
    if no_faces:
        data["faces_not_measured"] = no_faces
    for cp, faces in zip(checkpoints, found):
        iou = {k: (None if v != v else v) for k, v in cp.part_iou.items()}   # NaN: the part is in no photo
        data["checkpoints"].append({"step": cp.step, "image_l1": cp.image_l1, "part_iou": iou,
                                    "faces": None if faces is None else faces.to_json(), "seconds": cp.seconds})
        rows.append([cp.step, f"{cp.seconds:.0f}", f"{cp.image_l1:.4f}",
                     *("-" if iou[p] is None else f"{iou[p]:.2f}" for p in parts),
                     *(("not measured",) * 2 if faces is None else
                       (f"{faces.found}/{faces.n}", f"{photo_faces.found}/{photo_faces.n}"))])
    notes = (f"A fresh `{c.generator_config}` generator ({gcfg.size} px) and one free W+ code per photo fitted by "
             "regression (image L1 + a mask cross-entropy weighing each part by its inverse pixel share; Adam, batch 16, "
             f"{torch.get_num_threads()} torch threads) to {len(images)} of "
             "the build's training photos: no discriminator and no prior, so this bounds what a GAN of this size "
             "samples after as many steps. Part IoU: the fit's segmentation against the photos' masks. Faces: the "
             "SDK's face finder (upscaled as in the pair measures) on the fits, and on the photos themselves at the "
             "generator's size (the most a perfect fit could reach).")
    if no_faces:
        notes += f" Faces were not counted: {no_faces}"
    per_row = 8
    fig = image_rows_figure([("photos", images[:per_row])]
                            + [(f"fit, step {cp.step}", cp.images[:per_row]) for cp in checkpoints])
    return Table("gan_fit", data, ["step", "s", "image L1", *(f"IoU {p}" for p in parts), "faces in fits",
                                   "faces in photos"], rows, notes=notes, plots={"gan_fit": fig})

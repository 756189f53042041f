"""What the build's pairs carry, measured afresh from its generators, pairs and oracle: face-likeness of G_real's
samples and of the pairs' faces (between noise and held-out photos), and label consistency (the oracle trained on
labelled proxy photos reading the pairs' faces, beside its accuracy on the held-out photos)."""
from __future__ import annotations

from sdk_python.errors import AvatarSDKError
from toolchain.evaluation.face_likeness import UPSCALE_PX, folder_images
from toolchain.evaluation.pair_measures import face_likeness, label_consistency

from .common import BuildRun, Table


def _share(d: dict) -> str:
    return f"{d['found']}/{d['n']} ({100 * d['rate']:.1f} %)"


def run(build: BuildRun, quick: bool) -> Table:
    real, pairs, held = build.output("real_generator"), build.output("pairs"), build.output("heldout")
    measured = build.output("pair_measures")
    n = 40 if quick else 200
    ceiling_dir = build.root / "pair_measures" / "ceiling_photos"
    photos = folder_images(ceiling_dir) if ceiling_dir.is_dir() else folder_images(held["set"])
    try:
        fl = face_likeness(real["generator"], pairs["dataset"], photos, int(real["size"]), n=n)
    except AvatarSDKError as exc:   # no face models on this machine: say so, measure the rest
        fl, why = None, str(exc)
    rows = [] if fl is None else [["face-likeness", "G_real samples", _share(fl["g_real"]), _pct(fl["g_real_vs_ceiling"])],
            ["face-likeness", "pairs' realistic faces", _share(fl["pairs"]), _pct(fl["pairs_vs_ceiling"])],
            ["face-likeness", "ceiling: held-out photos", _share(fl["ceiling"]), ""],
            ["face-likeness", "floor: noise", _share(fl["floor"]), ""]]
    if fl is None:
        rows.append(["face-likeness", "not measured", "—", why[:200]])
    pick = real.get("pick") or {}
    for sc in pick.get("scores", []):    # as the build scored them (its own sample seed), not measured again here
        rows.append(["G_real snapshot pick", f"step {sc['step']}", _share(sc),
                     "picked" if sc["step"] == pick["step"] else ""])
    if pick.get("how") == "last":
        rows.append(["G_real snapshot pick", "last weights", "—", pick.get("why", "")])
    lc = None
    if measured.get("oracle"):
        lc = label_consistency(measured["oracle"]["model"], pairs["dataset"], held["set"], n=150 if quick else 600)
        for p, a in lc["pairs"]["accuracy"].items():
            rows.append(["label consistency", p, f"{a:.3f}",
                         f"held-out {lc['heldout']['accuracy'][p]:.3f}, majority {lc['majority_rate'][p]:.3f}"])
        for p, e in lc["pairs"]["normalised_mae"].items():
            rows.append(["label consistency", f"{p} (MAE / range)", f"{e:.4f}",
                         f"held-out {lc['heldout']['normalised_mae'][p]:.4f}"])
        if lc.get("ratio") is not None:
            rows.append(["label consistency", "mean", f"{lc['pairs']['mean_accuracy']:.3f}",
                         f"held-out {lc['heldout']['mean_accuracy']:.3f} ({100 * lc['ratio']:.0f} % of the ceiling)"])
    notes = (f"Face-likeness: the SDK's face finder (short-range detector + human-face checks) on {n} images each, upscaled "
             f"from {real['size']} px to {UPSCALE_PX} px; ceiling photos resized to G_real's size first. Label "
             "consistency: the build's oracle (an estimator trained on labelled proxy photos) reads the pairs' realistic "
             "images; agreement with each pair's vector vs its accuracy on the held-out photos; 'majority' is the share "
             "of the most common option among the pairs (what reading blurs would score)."
             + ("" if lc else f" Label consistency: {measured.get('label_consistency_note', 'not measured')}.")
             + (f" G_real snapshot pick: faces in {pick['n']} samples of each kept snapshot, drawn from the pick's own "
                "seed, as the build scored them; the face-likeness rows measure the picked one on other samples."
                if pick.get("how") == "faces" else ""))
    return Table("pair_measures", {"face_likeness": fl, "label_consistency": lc}, ["measure", "images / parameter",
                                                                                   "value", "reference"], rows, notes)


def _pct(r: float | None) -> str:
    return "—" if r is None else f"{100 * r:.0f} % of the ceiling"

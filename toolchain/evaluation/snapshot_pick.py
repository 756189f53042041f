"""Choosing which of G_real's kept snapshots becomes the build's G_real: the one whose samples the SDK's face
finder accepts most often.

A GAN's last weights are not its best. Two face64 trainings of one recipe drew faces in 6 % and 23 % of the
ceiling's rate, and within one run the share swung from 12/32 samples at step 3,500 to 4/32 at 4,500. Every
later stage inherits G_real's faces (G_avatar is finetuned from it, the pairs' faces are its images), so the
build scores each snapshot the training kept (``GANTrainConfig.keep_every``) and keeps the best.

The score uses samples drawn from a seed of its own (:data:`PICK_SEED`), never the pair measures' seed, so the
face-likeness the report gives for G_real is measured on samples the choice never saw; no held-out photo is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

from .face_likeness import FaceCounter
from .pair_measures import generator_samples

PICK_SEED = 7_919


def pick_by_faces(snapshots: Sequence[tuple[int, Path]], n: int = 128,
                  model_for: Callable[[str], Path] | None = None,
                  progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Score every ``(step, weights)`` by the faces in ``n`` of its samples; the most faces wins, a tie goes
    to the later step (more training). Returns the choice, every score, and the scores of the chosen
    (``best``) and the last (``last``) snapshots.

    Raises:
        ValueError: no snapshots.
        sdk_python.errors.DetectorModelUnavailableError: the face models are missing (the message says how
            to get them).
    """
    if not snapshots:
        raise ValueError("no snapshots to pick from")
    scores = []
    with FaceCounter(model_for) as fc:
        for i, (step, path) in enumerate(snapshots):
            share = fc.count(generator_samples(path, n, seed=PICK_SEED))
            scores.append({"step": int(step), "weights": str(path), **share.to_json()})
            if progress:
                progress(i + 1, len(snapshots))
    best = max(scores, key=lambda s: (s["found"], s["step"]))
    return {"how": "faces", "step": best["step"], "weights": best["weights"], "n": n, "seed": PICK_SEED,
            "scores": scores, "best": best, "last": scores[-1]}

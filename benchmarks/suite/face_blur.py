"""How sharp must a generated face be before the face finder sees it? The face-likeness measure's own tolerance.

Face-likeness (toolchain/evaluation/face_likeness.py) counts the images in which the SDK's face finder finds a
face. A generator that draws a face slightly blurred scores as if it drew none when the finder needs crisp eyes,
so a face-likeness of 0 has to be read against this table: the share of the build's own training photos found
after box-reducing them to the G_real size (and to twice and four times that size) and blurring them with a
Gaussian of each radius, upscaled as in the pair measures.
"""
from __future__ import annotations

import numpy as np

from sdk_python.errors import AvatarSDKError
from toolchain.generators.config import generator_preset

from .common import BuildRun, Table, image_rows_figure

N_PHOTOS = 100
RADII = (0.0, 0.5, 0.7, 1.0, 1.5, 2.0)


def blurred(images: np.ndarray, radius: float) -> list[np.ndarray]:
    """``images`` (uint8 [n,s,s,3]) after a Gaussian blur of ``radius`` px (PIL's, in the image's own pixels)."""
    from PIL import Image, ImageFilter
    if radius <= 0:
        return list(images)
    return [np.asarray(Image.fromarray(im).filter(ImageFilter.GaussianBlur(radius))) for im in images]


def run(build: BuildRun, quick: bool) -> Table:
    from toolchain.evaluation.face_likeness import UPSCALE_PX, FaceCounter, at_size, folder_images
    c = build.cfg.real
    photos_dir = build.output("real_generator").get("photos")
    if not photos_dir:
        return Table("face_blur", {"skipped": "the build's G_real came from a file: no training photos"},
                     ["probe"], [["skipped: the build's G_real came from a file (no training photos in the run)"]])
    base = generator_preset(c.generator_config).size
    sizes = (base, 2 * base) if quick else tuple(s for s in (base, 2 * base, 4 * base) if s <= UPSCALE_PX)
    radii = (0.0, 1.0) if quick else RADII
    n = 4 if quick else N_PHOTOS
    data = {"config": c.generator_config, "n_photos": n, "radii_px": list(radii), "sizes": {}}
    rows, strip = [], []
    originals = folder_images(photos_dir, n)
    try:
        fc = FaceCounter()
    except AvatarSDKError as exc:   # the table is nothing but face counts: say why there are none
        return Table("face_blur", {"skipped": f"no face models: {exc}"}, ["probe"],
                     [[f"skipped: the face finder's models are not on this machine ({exc})"]])
    with fc:
        for size in sizes:
            reduced = np.stack(list(at_size(originals, size)))   # as the pair measures reduce their ceiling photos
            blurs = [blurred(reduced, r) for r in radii]
            shares = [fc.count(images) for images in blurs]
            data["sizes"][str(size)] = [s.to_json() for s in shares]
            rows.append([size, *(f"{s.found}/{s.n}" for s in shares)])
            if size == base:
                strip = [(f"blur {r:g} px", images[:8]) for r, images in zip(radii, blurs)]
    notes = (f"{n} of the build's G_real training photos, box-reduced to each size, blurred with a Gaussian of the "
             f"given radius in that size's pixels, upscaled to {UPSCALE_PX} px and passed to the SDK's face finder "
             "(the face-likeness measure). Column 'blur 0' is the measure's ceiling at that size; the other columns "
             "show how little blur drops a face, in the picture at the G_real size.")
    return Table("face_blur", data, ["size (px)", *(f"blur {r:g} px" for r in radii)], rows, notes=notes,
                 plots={"face_blur": image_rows_figure(strip)})

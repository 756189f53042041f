"""The canonical framing (sdk_python/framing.py) against the engines' drawing, and the aligned crop."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from sdk_python.framing import CANONICAL_KEYPOINTS, align, alignment_transform, canonical_points


def test_canonical_points_are_face_art_geometry():
    from toolchain.engines.face_art import CX, EYE_Y, FaceSpec, _Geometry
    g = _Geometry.of(FaceSpec())
    expect = {"right_eye": (CX - g.eye_dx, EYE_Y), "left_eye": (CX + g.eye_dx, EYE_Y),
              "nose_tip": (CX, g.nose_bottom), "mouth": (CX, g.mouth_y)}
    for k, (x, y) in expect.items():
        assert np.allclose(np.array(CANONICAL_KEYPOINTS[k]) * 256, (x, y)), k
    import toolchain.framing as tf
    assert tf.CANONICAL_KEYPOINTS is CANONICAL_KEYPOINTS  # one definition, re-exported


@pytest.mark.parametrize("engine_name", ["alter", "morph"])
def test_canonical_points_match_rendered_masks(engine_name):
    """Eye and mouth mask centroids of default-geometry renders sit within a few pixels of the framing."""
    from toolchain.engines.registry import create_engine
    engine = create_engine(engine_name)
    schema = engine.schema
    vectors = []
    for seed in range(6):
        v = schema.sample_one(123, seed)
        for p in schema.continuous:   # default geometry: the framing is defined at the neutral face
            v[p.name] = p.default
        if "glasses" in v:
            v["glasses"] = 0          # lenses cover the eye masks
        vectors.append(v)
    batch = engine.render(vectors, size=256, masks=True)
    eyes, mouth = schema.parts.index("eyes"), schema.parts.index("mouth")
    for m in batch.masks:
        ys, xs = np.nonzero(m == eyes)
        left = xs < 128
        got = {"right_eye": (xs[left].mean(), ys[left].mean()), "left_eye": (xs[~left].mean(), ys[~left].mean())}
        ys, xs = np.nonzero(m == mouth)
        got["mouth"] = (xs.mean(), ys.mean())
        for k, (x, y) in got.items():
            cx, cy = np.array(CANONICAL_KEYPOINTS[k]) * 256
            assert math.hypot(x - cx, y - cy) < 5.0, (engine_name, k, (x, y), (cx, cy))


def test_align_inverts_a_known_similarity():
    """Warp a render by a known rotation/scale/shift into a bigger canvas; aligning with the warped
    canonical points gives back the render."""
    from toolchain.engines.registry import create_engine
    engine = create_engine("alter")
    img = engine.render([engine.schema.default_vector()], size=256).images[0]
    theta, s, tx, ty = math.radians(17), 1.7, 150.0, 90.0
    R = np.array([[s * math.cos(theta), -s * math.sin(theta)], [s * math.sin(theta), s * math.cos(theta)]])
    inv = np.linalg.inv(R)
    coeffs = (*inv[0], -(inv[0] @ [tx, ty]), *inv[1], -(inv[1] @ [tx, ty]))
    big = np.asarray(Image.fromarray(img).transform((800, 700), Image.AFFINE, coeffs, resample=Image.BILINEAR,
                                                    fillcolor=(200, 200, 200)))
    pts = canonical_points(256) @ R.T + [tx, ty]
    crop = align(big, pts, 256)
    M = alignment_transform(pts, 256)
    assert np.allclose(M[:, :2], inv, atol=1e-9)
    inner = (slice(60, 200), slice(60, 200))   # away from the canvas border
    assert np.abs(crop[inner].astype(int) - img[inner].astype(int)).mean() < 6.0


def test_align_downscales_without_aliasing_and_pads_edges():
    img = np.zeros((3000, 3000, 3), np.uint8)
    img[:, ::2] = 255                      # 1-px stripes: aliasing would give stripes, box filter gives grey
    pts = canonical_points(256) * 10       # a huge face: ~10x downscale
    crop = align(img, pts, 64)
    assert crop.shape == (64, 64, 3)
    assert abs(float(crop.mean()) - 127.5) < 10 and crop.std() < 20
    corner = align(np.full((100, 100, 3), 50, np.uint8), canonical_points(256) * 0.3 - 20, 64)  # face off the edge
    assert (corner == 50).all()


def test_align_window_is_that_part_of_the_crop():
    """A window of the crop resamples the same pixels as the whole crop (a measurement on a few cheek
    pixels must see what the estimator's crop shows); a window outside the crop is refused."""
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (400, 500, 3), dtype=np.uint8)
    theta = math.radians(12)
    R = 1.3 * np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    pts = canonical_points(256) @ R.T + [-40.0, 30.0]   # partly off the left edge: the padded path too
    whole = align(img, pts, 128)
    for win in ((42, 50, 86, 92), (0, 0, 128, 20), (100, 90, 128, 128)):
        x0, y0, x1, y1 = win
        assert np.array_equal(align(img, pts, 128, window=win), whole[y0:y1, x0:x1]), win
    with pytest.raises(ValueError, match="window"):
        align(img, pts, 128, window=(10, 10, 140, 40))

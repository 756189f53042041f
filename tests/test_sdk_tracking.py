"""VIDEO mode follows the face with the face mesh (detect once, then track), falls back to the detector when
the face is lost or leaves the frame, and aligns crops on mesh keypoints that frame faces like the training
renders (measured against the proxy faces' masks, as tests/test_sdk_framing.py measures the framing)."""
from __future__ import annotations

import numpy as np
import pytest

from sdk_python import AvatarEstimator, AvatarEstimatorOptions, NoFaceError
from sdk_python.face_mesh import MESH_TO_DETECTOR, Roi, alignment_keypoints, face_frame_offsets



def _shifted(img: np.ndarray, dx: int) -> np.ndarray:
    """``img`` moved ``dx`` px to the right on a grey canvas of the same size (a face walking out of the frame)."""
    out = np.full_like(img, 128)
    w = img.shape[1]
    if dx < w:
        out[:, dx:] = img[:, :w - dx]
    return out


def _crop_shift(a: dict, b: dict, size: int = 256) -> float:
    """How far (px of a ``size`` crop) the corners of the crop aligned on ``b`` sit from those of ``a``'s."""
    from sdk_python.framing import alignment_transform
    Ma, Mb = (np.vstack([alignment_transform(k, size), [0, 0, 1]]) for k in (a, b))
    corners = np.array([[0, 0, 1], [size, 0, 1], [0, size, 1], [size, size, 1]], np.float64).T
    moved = Mb @ np.linalg.inv(Ma) @ corners
    return float(np.hypot(*(moved[:2] - corners[:2])).max())


def _video(tiny_export, detector_model, **kw) -> AvatarEstimator:
    return AvatarEstimator.create_from_options(AvatarEstimatorOptions(
        bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb",
        running_mode="video", detector="short", **kw))


def test_tracks_after_one_detection_and_redetects_on_schedule(tiny_export, detector_model, astronaut):
    with _video(tiny_export, detector_model, redetect_every=4) as e:
        results = [e.estimate_for_video(astronaut, 33 * i) for i in range(11)]
    # detected, 4 tracked, detected (the safety net), 4 tracked, detected
    assert [r.tracked for r in results] == [False, True, True, True, True, False, True, True, True, True, False]
    for r in results:
        assert (r.detectors == ()) == r.tracked
        assert r.face.landmarks is not None and r.face.landmarks.shape == (468, 3) and r.face.presence > 0.5
        assert (r.timings.detection_ms == 0.0) == r.tracked
    # a still frame: the crop does not jump when tracking takes over (the detection frame's mesh is settled on
    # its own landmarks' region: corners within 2 px of a 256 px crop; 2.9 px without), nor while tracking
    assert _crop_shift(results[0].face.keypoints, results[1].face.keypoints) < 2.0
    assert max(_crop_shift(a.face.keypoints, b.face.keypoints) for a, b in zip(results[1:4], results[2:5])) < 1.0
    with _video(tiny_export, detector_model, tracking=False) as e:
        assert not any(e.estimate_for_video(astronaut, 33 * i).tracked for i in range(3))


def test_tracking_falls_back_to_detection_when_the_face_leaves_and_reacquires_within_one_frame(
        tiny_export, detector_model, astronaut):
    """The astronaut walks right, 24 px a frame, out of the frame and back. While visible she is tracked; once
    the tracked region leaves the frame the detector runs again in that same frame; on the way back the first
    frame where the detector alone (IMAGE mode) finds her, VIDEO mode finds her too."""
    shifts = list(range(0, 480, 24)) + list(range(480, -1, -24))
    frames = [_shifted(astronaut, dx) for dx in shifts]
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(
            bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb",
            detector="short")) as still:
        findable = []
        for f in frames:
            try:
                still.estimate(f)
                findable.append(True)
            except NoFaceError:
                findable.append(False)
    assert findable[0] and not all(findable)          # she does leave the frame
    got, misses = [], []
    with _video(tiny_export, detector_model, redetect_every=0) as e:
        for i, f in enumerate(frames):
            try:
                r = e.estimate_for_video(f, 33 * i)
                got.append("tracked" if r.tracked else "detected")
            except NoFaceError:
                got.append(None)
            misses.append(e.tracker.last_miss)
    assert got[0] == "detected" and got[1:4] == ["tracked"] * 3
    assert "tracked" in got[len(got) // 2:]           # followed again after she came back
    assert {"left the frame", "lost"} & set(misses)    # tracking let go of her...
    for i, (seen, ok) in enumerate(zip(got, findable)):
        if ok:                                          # ...and wherever the detector can find her, VIDEO mode does
            assert seen is not None, (i, shifts[i], got)
        if i and seen == "detected" and got[i - 1] == "tracked":
            assert misses[i] is None                    # a detection after tracking: the tracker handed over


def test_tracker_resets_after_a_timestamp_gap(tiny_export, detector_model, astronaut):
    with _video(tiny_export, detector_model, reset_after_ms=500) as e:
        assert not e.estimate_for_video(astronaut, 0).tracked
        assert e.estimate_for_video(astronaut, 33).tracked
        assert not e.estimate_for_video(astronaut, 33 + 2000).tracked   # a long gap: detect again


def test_tracked_frames_reuse_the_streams_grayscale_flag(tiny_export, detector_model, astronaut, monkeypatch):
    """The black-and-white check runs on detection frames only: tracked frames of the stream reuse its answer
    (a grey stream keeps its warning), and the safety-net detection measures again."""
    import sdk_python.estimator as E
    calls = []

    def counting(image, *a, **kw):
        calls.append(1)
        return real(image, *a, **kw)
    real = E.is_grayscale
    monkeypatch.setattr(E, "is_grayscale", counting)
    grey = np.repeat(astronaut.mean(axis=2, keepdims=True).astype(np.uint8), 3, axis=2)
    with _video(tiny_export, detector_model, redetect_every=3) as e:
        results = [e.estimate_for_video(grey, 33 * i) for i in range(6)]
    assert [r.tracked for r in results] == [False, True, True, True, False, True]
    assert len(calls) == 2                              # the two detection frames
    assert all(r.avatars[0].quality.grayscale and any("black-and-white" in w for w in r.avatars[0].quality.warnings)
               for r in results)
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(
            bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb",
            detector="short")) as still:               # IMAGE mode: every photo is measured
        still.estimate(astronaut)
        assert not still.estimate(astronaut).avatars[0].quality.grayscale
    assert len(calls) == 4


def test_mesh_offsets_round_trip():
    """face_frame_offsets measures exactly what alignment_keypoints adds back."""
    rng = np.random.default_rng(0)
    pts = rng.uniform(100, 300, (468, 3))
    offsets = {"right_eye": (0.03, -0.01), "left_eye": (-0.02, 0.04), "nose_tip": (0.0, 0.1), "mouth": (0.05, 0.2)}
    target = alignment_keypoints(pts, offsets)
    got = face_frame_offsets(pts, target)
    for k, (x, y) in offsets.items():
        assert got[k] == pytest.approx((x, y), abs=1e-9)
    roi = Roi.from_landmarks(pts)
    M = roi.transform(192)
    centre = M @ np.array([roi.cx, roi.cy, 1.0])
    assert centre == pytest.approx((96, 96))


def test_mesh_keypoints_frame_proxy_faces_like_the_training_renders(detector_model, face_mesh_model):
    """Aligned on the face mesh's keypoints (with the offsets the SDK ships), proxy faces' eye and mouth mask
    centroids land within 3 px (of a 256 px crop) of the canonical framing on average, and no farther than with
    the refined detector keypoints."""
    from benchmarks.mesh_keypoints import evaluate, measure, samples
    items = [s for s in samples(8, seed=3) if s["domain"] == "proxy"]
    rows = measure(items)["rows"]
    assert sum(r["found"] for r in rows) >= 6
    ev = evaluate(rows, MESH_TO_DETECTOR)["framing_px"]
    assert ev["mesh"]["all_mean"] < 3.0 and ev["mesh_detection_roi"]["all_mean"] < 3.0
    assert ev["mesh_detection_roi"]["all_mean"] <= ev["refined"]["all_mean"] + 0.25

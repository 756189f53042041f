"""Issue 15 in the SDK: short/full/auto detection, the human-face checks, faces too small, input-quality
feedback, and `avatartool predict` on folders without native log noise. The detector tests run the real
BlazeFace models on generated images (a few ms each); the geometry and quality tests need no model."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from sdk_python import AvatarEstimator, AvatarEstimatorOptions, FaceTooSmallError, NoFaceError
from sdk_python.face_check import geometry, implausible, plausible
from sdk_python.face_finder import FaceFinder, tiles
from sdk_python.framing import keypoints_from_canonical
from sdk_python.quality import THRESHOLDS, assess, color_parameters, head_pose, is_grayscale
from sdk_python.result import FaceBox, FaceDetection


ROOT = Path(__file__).resolve().parent.parent


def _canonical_face(size: float = 256.0, angle_deg: float = 0.0, nose_shift: float = 0.0) -> FaceDetection:
    """A detection laid out like the training framing, optionally rotated about the image centre and
    with the nose moved along the eye line (as a turned head moves it)."""
    kp = keypoints_from_canonical(size)
    eye_d = kp["left_eye"][0] - kp["right_eye"][0]
    kp["nose_tip"] = (kp["nose_tip"][0] + nose_shift * eye_d, kp["nose_tip"][1])
    c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
    mid = size / 2
    rot = {k: (mid + c * (x - mid) - s * (y - mid), mid + s * (x - mid) + c * (y - mid)) for k, (x, y) in kp.items()}
    return FaceDetection(FaceBox(size * 0.3, size * 0.35, eye_d / 0.44, eye_d / 0.44), rot, 0.9)


# ----- geometry and pose (no model) ------------------------------------------------------------------
def test_face_geometry_accepts_faces_and_rejects_scrambled_layouts():
    assert plausible(_canonical_face())
    assert plausible(_canonical_face(angle_deg=25)) and plausible(_canonical_face(nose_shift=0.3))
    assert any("roll" in w for w in implausible(_canonical_face(angle_deg=70)))
    f = _canonical_face()
    k = dict(f.keypoints)
    k["mouth"], k["nose_tip"] = k["nose_tip"], k["mouth"]           # mouth above the nose
    assert not plausible(FaceDetection(f.box, k, f.score))
    k = dict(f.keypoints)
    k["mouth"] = (k["mouth"][0], k["mouth"][1] + 3 * (k["left_eye"][0] - k["right_eye"][0]))  # chin far below
    assert not plausible(FaceDetection(f.box, k, f.score))
    assert not plausible(FaceDetection(f.box, {}, 0.9))              # no keypoints: cannot be judged a face


def test_head_pose_from_keypoints():
    yaw, pitch, roll = head_pose(_canonical_face())
    assert abs(yaw) < 1 and abs(roll) < 1 and abs(pitch) < 15
    assert head_pose(_canonical_face(angle_deg=30))[2] == pytest.approx(30, abs=0.5)
    y_left, y_right = head_pose(_canonical_face(nose_shift=0.2))[0], head_pose(_canonical_face(nose_shift=-0.2))[0]
    assert y_left > 20 and y_right < -20 and y_left == pytest.approx(-y_right)
    assert geometry(_canonical_face(angle_deg=30)).eye_to_box == pytest.approx(0.44, abs=0.01)


def test_tiles_hold_every_face_up_to_half_a_tile():
    rng = np.random.default_rng(0)
    for h, w, side in ((900, 1280, 640), (1100, 1500, 320), (700, 2000, 640)):
        corners = tiles(h, w, side)
        assert all(0 <= x <= w - side and 0 <= y <= h - side for x, y in corners)
        for _ in range(200):
            fw = int(rng.integers(8, side // 2 + 1))
            fx, fy = int(rng.integers(0, w - fw)), int(rng.integers(0, h - fw))
            assert any(x <= fx and fx + fw <= x + side and y <= fy and fy + fw <= y + side for x, y in corners)


def test_color_parameters_come_from_the_schema():
    named = {"params": [{"name": "hair_color"}, {"name": "skin_tone"}, {"name": "glasses"}]}
    assert color_parameters(named) == ("hair_color", "skin_tone")
    flagged = {"params": [{"name": "hair_color", "color": False}, {"name": "paint", "color": True}]}
    assert color_parameters(flagged) == ("paint",)    # an explicit flag wins over the names


# ----- quality (no model: the proxy face's keypoints are the canonical ones) --------------------------
@pytest.fixture(scope="module")
def proxy_face():
    from toolchain.engines.registry import create_engine
    from toolchain.proxy import render_photo
    engine = create_engine("alter")
    img, _ = render_photo(engine, engine.schema.default_vector(), seed=1, size=256)
    return img


def test_quality_warns_on_degraded_copies_only(proxy_face):
    face = _canonical_face()
    clean = assess(proxy_face, face, ("hair_color", "skin_tone"))
    assert clean.size_px > THRESHOLDS["min_size_px"] and clean.blur > THRESHOLDS["min_blur"]
    assert not clean.grayscale and not clean.unreliable_parameters
    assert not [w for w in clean.warnings if "blurred" in w or "dark" in w or "black-and-white" in w]
    blurred = assess(np.asarray(Image.fromarray(proxy_face).filter(ImageFilter.GaussianBlur(4))), face)
    assert blurred.blur < clean.blur / 4 and any("blurred" in w for w in blurred.warnings)
    dark = assess((proxy_face * 0.2).astype(np.uint8), face)
    assert dark.brightness < THRESHOLDS["min_brightness"] and any("dark" in w for w in dark.warnings)
    assert dark.blur > THRESHOLDS["min_blur"]            # contrast-normalised: dark is not blurred
    gray_img = np.asarray(Image.fromarray(proxy_face).convert("L").convert("RGB"))
    assert is_grayscale(gray_img) and not is_grayscale(proxy_face)
    gray = assess(gray_img, face, ("hair_color", "skin_tone"))
    assert gray.unreliable_parameters == ("hair_color", "skin_tone")
    assert any("hair_color, skin_tone cannot be judged" in w for w in gray.warnings)
    tilted = assess(proxy_face, _canonical_face(angle_deg=35))
    assert any("roll +35" in w for w in tilted.warnings)
    json.dumps(clean.to_json())


# ----- detectors (real models) -----------------------------------------------------------------------
def _finder(mode, detector_model, full_range_model, **kw):
    from sdk_python.detector_models import fetch_model
    models = {"short": detector_model, "full": full_range_model, "mesh": fetch_model("mesh")}
    return FaceFinder(mode, models.__getitem__, **kw)


def test_noise_textures_and_animals_give_no_face(detector_model, full_range_model):
    from benchmarks.face_corpus import cartoon_animal, noise_blobs, noise_float_png, noise_uniform, texture
    finder = _finder("auto", detector_model, full_range_model)
    before = _finder("short", detector_model, full_range_model, min_confidence=0.5, checks=False, tile_size=0)
    hits_before = 0
    for fn, seeds in ((noise_uniform, 4), (noise_float_png, 4), (noise_blobs, 12), (texture, 4)):
        for i in range(seeds):
            img = fn(np.random.default_rng([5, i]))
            assert not finder.find(img).faces, (fn.__name__, i)
            hits_before += bool(before.find(img).faces)
    assert hits_before >= 1   # blobs fool the unchecked short-range detector: the test would catch a regression
    # a drawn animal with a blue face: the layout of a face, not the colour of one
    animal = cartoon_animal(np.random.default_rng([0, 7, 2]))
    res = finder.find(animal)
    assert not res.faces
    finder.close()
    before.close()


def test_detector_modes_on_portraits_and_a_group_scene(detector_model, full_range_model, astronaut, grace_hopper):
    from benchmarks.face_corpus import group_scene
    scene, placed = group_scene(0)
    found = {}
    for mode in ("short", "full", "auto"):
        f = _finder(mode, detector_model, full_range_model)
        for img in (astronaut, grace_hopper):
            assert len(f.find(img).faces) == 1, mode
        res = f.find(scene)
        found[mode] = len(res.faces)
        assert res.detectors == {"short": ["short"], "full": ["full"], "auto": ["short", "full"]}[mode]
        f.close()
    assert found["short"] == 0 and found["auto"] >= 3 and found["full"] >= 3   # short-range cannot see them
    assert found["auto"] <= len(placed)


def test_estimator_reports_counts_sizes_and_quality(tiny_export, detector_model, full_range_model, astronaut):
    base = dict(bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model,
                full_range_model_path=full_range_model, color_order="rgb")
    head = astronaut[40:260, 130:330]
    two = np.ascontiguousarray(np.concatenate([head, head[:, ::-1]], axis=1))
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base)) as e:
        r = e.estimate(two)
        assert r.faces_found == 2 and len(r.avatars) == 1 and r.detectors == ("short",)
        q = r.avatars[0].quality
        assert q is not None and q.size_px > 60 and not q.grayscale
        gray = np.asarray(Image.fromarray(astronaut).convert("L").convert("RGB"))
        rg = e.estimate(gray)
        assert set(rg.avatars[0].quality.unreliable_parameters) == {"hair_color", "skin_tone"}
        assert rg.to_json()["avatars"][0]["quality"]["grayscale"] is True
        with pytest.raises(NoFaceError, match=r"no face found .*detector short\+full"):
            e.estimate(np.full((1100, 1500, 3), 128, np.uint8))   # nothing: auto tries the full-range model too
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base, min_face_size=150)) as e:
        with pytest.raises(FaceTooSmallError, match="move closer") as info:
            e.estimate(astronaut)
        assert 60 < info.value.size_px < 150 and info.value.min_size_px == 150


def test_auto_without_full_range_model_falls_back_to_short(tiny_export, detector_model, astronaut, tmp_path,
                                                           monkeypatch):
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "empty"))
    monkeypatch.delenv("SWIFTAVATAR_FACE_DETECTOR_FULL", raising=False)
    with pytest.warns(UserWarning, match="short-range only"):
        e = AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", detector_model_path=detector_model,
                                               color_order="rgb")
    with e:
        assert e.estimate(astronaut).detectors == ("short",)
    from sdk_python.errors import DetectorModelUnavailableError
    with pytest.raises(DetectorModelUnavailableError, match="SWIFTAVATAR_FACE_DETECTOR_FULL"):
        AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", detector_model_path=detector_model,
                                           detector="full")


# ----- CLI ---------------------------------------------------------------------------------------------
def test_expand_inputs(tmp_path):
    from toolchain.cli.predict import expand_inputs
    from toolchain.errors import AvatarToolError
    for n in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / n).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.webp").write_bytes(b"x")
    assert expand_inputs([tmp_path]) == [tmp_path / "a.jpg", tmp_path / "b.png"]
    assert expand_inputs([str(tmp_path / "**" / "*.webp")]) == [tmp_path / "sub" / "c.webp"]
    assert expand_inputs([tmp_path / "missing.jpg"]) == [tmp_path / "missing.jpg"]   # reported per image later
    with pytest.raises(AvatarToolError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.gif")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(AvatarToolError, match="holds no images"):
        expand_inputs([tmp_path / "empty"])


def test_cli_predict_folder_quietly(tiny_export, detector_model, full_range_model, astronaut, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(astronaut).save(folder / "a.png")
    Image.fromarray(astronaut).convert("L").save(folder / "b_gray.png")
    Image.new("RGB", (120, 120), (90, 90, 90)).save(folder / "c_blank.png")
    env = {**os.environ, "SWIFTAVATAR_FACE_DETECTOR": str(detector_model),
           "SWIFTAVATAR_FACE_DETECTOR_FULL": str(full_range_model), "COLUMNS": "200", "NO_COLOR": "1"}
    for k in ("TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel"):
        env.pop(k, None)
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "predict", "--bundle",
                           str(tiny_export / "estimator.onnx"), str(folder), "--json", "--detector", "short"],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=180)
    assert proc.returncode == 1, proc.stderr[-2000:]          # the blank image has no face
    res = json.loads(proc.stdout)
    assert [Path(r["image"]).name for r in res] == ["a.png", "b_gray.png", "c_blank.png"]
    assert res[0]["result"]["faces_found"] == 1 and res[0]["result"]["avatars"][0]["quality"]["size_px"] > 60
    assert res[1]["result"]["avatars"][0]["quality"]["unreliable_parameters"] == ["hair_color", "skin_tone"]
    assert res[2]["error_type"] == "NoFaceError"
    noise = [ln for ln in proc.stderr.splitlines() if ln.startswith(("INFO:", "W0000", "I0000", "WARNING: All log"))]
    assert not noise, proc.stderr[-2000:]
    assert "tensorflow" not in proc.stderr.lower()


def test_detector_in_cyclic_garbage_is_closed_later_not_by_the_collector(detector_model):
    """A MediaPipe graph closed from inside the garbage collector can deadlock MediaPipe's dispatcher: the
    wrapper must only queue it, and the next safe point closes it."""
    import gc

    from sdk_python import detector as det_mod
    d = det_mod.FaceDetector(detector_model, runtime="mediapipe")
    graph = d._det
    cycle = [d]
    cycle.append(cycle)
    d.cycle = cycle
    del d, cycle
    gc.collect()
    assert graph in det_mod._PENDING_CLOSE and id(graph) in det_mod._GRAPHS   # queued, still open
    other = det_mod.FaceDetector(detector_model, runtime="mediapipe")         # a safe point
    assert graph not in det_mod._PENDING_CLOSE and id(graph) not in det_mod._GRAPHS
    assert other.detect(np.zeros((64, 64, 3), np.uint8)) == []
    other.close()


def test_schema_color_flag_round_trips_and_drives_the_quality_flag():
    from toolchain.schema import AvatarSchema, ContinuousParam, DiscreteParam
    schema = AvatarSchema(engine="t", params=(DiscreteParam("fur", ("red", "blue"), color=True),
                                              ContinuousParam("hue_shift", 0.0, 1.0, 0.5, color=True),
                                              DiscreteParam("hair_color", ("a", "b"))))
    data = schema.to_json()
    assert data["params"][0]["color"] is True and "color" not in data["params"][2]
    assert AvatarSchema.from_json(data) == schema
    # marked parameters win over the name rule ("hair_color" is not marked here)
    assert color_parameters(data) == ("fur", "hue_shift")


def test_grayscale_allows_a_few_coloured_pixels_only():
    """A black-and-white photo with a coloured speck (a stamp, JPEG chroma noise) is still grayscale; one
    with a coloured patch over a few percent of it is not."""
    rng = np.random.default_rng(1)
    gray = np.repeat(rng.integers(0, 256, (300, 400, 1), dtype=np.uint8), 3, axis=2)
    assert is_grayscale(gray)
    speck, patch = gray.copy(), gray.copy()
    speck[:20, :20] = (200, 40, 40)      # 0.3 % of the image
    patch[:60, :80] = (200, 40, 40)      # 4 %
    assert is_grayscale(speck) and not is_grayscale(patch)


def test_refinement_runs_only_where_it_sees_the_face_larger():
    """The second detection pass is skipped for a face that fills the image (the first pass saw it at the
    window's scale) and runs for a face small in a large image."""
    from sdk_python.detector import MIN_REFINE_GAIN, FaceDetector
    det = FaceDetector.__new__(FaceDetector)      # no MediaPipe graph: only the decision is under test
    calls = []
    det._refine_once = lambda image, face, context: calls.append(face) or face
    big_face = FaceDetection(FaceBox(100, 100, 250, 250), keypoints_from_canonical(256), 0.9)
    image = np.zeros((480, 640, 3), np.uint8)       # window 2.2 x 250 = 550 px: 640 / 550 < MIN_REFINE_GAIN
    assert 640 < MIN_REFINE_GAIN * 2.2 * 250
    assert det.refine(image, big_face) is big_face and not calls
    small_face = FaceDetection(FaceBox(100, 100, 60, 60), keypoints_from_canonical(256), 0.9)
    det.refine(image, small_face)
    assert calls == [small_face]
    det.refine(image, big_face, mirror_average=True)   # mirror averaging needs the pass on both images
    assert len(calls) == 3


def test_face_mesh_presence_rejects_a_drawn_animal_the_layout_checks_pass(detector_model, full_range_model,
                                                                          astronaut):
    """A drawn animal with a human layout and skin-coloured fur passes geometry and skin; the face-mesh
    model does not take it for a face. Portraits keep their face; in video a tracked face is not re-asked."""
    from benchmarks.face_corpus import cartoon_animal
    animal = cartoon_animal(np.random.default_rng([0, 7, 18]))
    finder = _finder("auto", detector_model, full_range_model)
    assert finder.presence is not None and finder.presence_unavailable is None
    res = finder.find(animal)
    assert not res.faces and any("face-mesh presence" in w for _, why in res.rejected for w in why)
    without = _finder("auto", detector_model, full_range_model)
    without.presence.close()
    without.presence = None                      # geometry and skin only: the animal passes
    assert len(without.find(animal).faces) == 1
    assert len(finder.find(astronaut).faces) == 1
    calls = []
    run = finder.presence.run
    finder.presence.run = lambda img, roi: calls.append(1) or run(img, roi)
    finder.track = True
    for _ in range(3):
        assert len(finder.find(astronaut).faces) == 1
    assert len(calls) == 1                      # asked when the face appeared, not on every frame
    finder.track = False
    finder.find(astronaut)
    assert len(calls) == 2
    finder.close()
    without.close()

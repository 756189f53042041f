"""The reference SDK end to end: detection -> aligned crop -> backends -> result, bad inputs, policies,
VIDEO mode, bundles, the CLI. Uses a tiny random-init estimator (agreement between backends does not
need trained weights) and the real photos that ship with scikit-image and matplotlib."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ._ci import skip_unless_ci

from sdk_python import (AvatarEstimator, AvatarEstimatorOptions, AvatarSDKError, BackendUnavailableError,
                        BundleError, BundleVersionError, EstimatorClosedError, FaceTooSmallError, ImageTooLargeError,
                        ImageTooSmallError, InvalidImageError, MultipleFacesError, NoFaceError, RunningMode,
                        RunningModeError, TimestampError, UnsupportedImageFormatError)
from sdk_python.decode import RawEstimate
from sdk_python.smoothing import VideoSmoother


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def est(tiny_export, detector_model):
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(
            bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb")) as e:
        yield e


def _two_faces(img):
    """Two copies of the astronaut's head side by side (the short-range detector wants faces that
    fill a good part of the frame)."""
    head = img[40:260, 130:330]
    return np.ascontiguousarray(np.concatenate([head, head[:, ::-1]], axis=1))


# ----- real photos through every backend ------------------------------------------------------------
def test_real_photos_detect_crop_estimate(est, astronaut, grace_hopper):
    for img in (astronaut, grace_hopper):
        r = est.estimate(img)
        assert len(r.avatars) == 1 and r.face.score > 0.8
        assert set(r.face.keypoints) >= {"right_eye", "left_eye", "nose_tip", "mouth"}
        assert set(r.vector) == {p["name"] for p in est.schema["params"]}
        for p in r.parameters.values():
            assert p.kind == "discrete" and 0 < p.confidence <= 1 and p.label is not None
            assert p.confidence == pytest.approx(max(p.probabilities))
        t = r.timings
        assert t.total_ms >= t.detection_ms + t.crop_ms + t.inference_ms > 0
        json.dumps(r.to_json())
    # the astronaut's face is at ~(177..272, 82..177): the box must be there
    b = est.estimate(astronaut).face.box
    assert 150 < b.x + b.width / 2 < 300 and 60 < b.y + b.height / 2 < 200


def test_backends_agree_on_real_photos(tiny_export, detector_model, astronaut, grace_hopper):
    results = {}
    for backend in ("onnxruntime", "torch"):
        with AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", backend=backend,
                                                detector_model_path=detector_model) as e:
            assert e.backend_name == backend
            results[backend] = [e.estimate(img, color_order="rgb") for img in (astronaut, grace_hopper)]
    for a, b in zip(results["onnxruntime"], results["torch"]):
        assert a.vector == b.vector
        for k in a.parameters:
            assert a.parameters[k].confidence == pytest.approx(b.parameters[k].confidence, abs=1e-4)


@pytest.mark.slow
def test_litert_backend_agrees(tflite_export, detector_model, astronaut, grace_hopper):
    """fp16 TFLite made by the exporter (onnx2tf: NHWC input, outputs mapped by the recorded output map) gives
    onnxruntime's answers on real photos: every option's probability and continuous value within fp16 rounding."""
    folder, _ = tflite_export
    out = {}
    for backend, precision in (("onnxruntime", "fp32"), ("litert", "fp16")):
        with AvatarEstimator.create_from_bundle(folder, backend=backend, precision=precision,
                                                detector_model_path=detector_model) as e:
            assert e.backend.precision == precision
            out[backend] = [e.estimate(img, color_order="rgb") for img in (astronaut, grace_hopper)]
    for ref, got in zip(out["onnxruntime"], out["litert"]):
        want, have = ref.avatars[0].parameters, got.avatars[0].parameters
        assert set(want) == set(have)
        for name, w in want.items():
            if w.kind == "discrete":   # random weights: near-tie choices may flip, probabilities may not move
                np.testing.assert_allclose(have[name].probabilities, w.probabilities, atol=5e-3, err_msg=name)
            else:   # raw: the head's output in [0, 1]
                assert abs(have[name].raw - w.raw) < 0.02, name


def test_crop_is_robust_to_position_and_scale(est):
    """Proxy-domain faces pasted at random positions and scales into larger scenes: the keypoints
    the aligned crop is built from, mapped back to the original image, agree with the original's
    within a small fraction of the eye distance."""
    from toolchain.engines.registry import create_engine
    from toolchain.proxy.photo_style import render_photo
    engine = create_engine("alter")
    rng = np.random.default_rng(3)
    names = ("right_eye", "left_eye", "nose_tip", "mouth")
    errors = []
    for i in range(6):
        face, _ = render_photo(engine, engine.schema.sample_one(5, i), seed=i, size=256)
        ref = est.detector.refine(face, est.detector.detect(face)[0]).keypoints
        scale = rng.uniform(0.8, 1.6)
        small = Image.fromarray(face).resize((int(256 * scale),) * 2, Image.BILINEAR)
        W, H = int(small.width * rng.uniform(1.3, 2.0)), int(small.height * rng.uniform(1.2, 1.8))
        scene = Image.new("RGB", (W, H), tuple(int(v) for v in rng.integers(0, 255, 3)))
        ox, oy = int(rng.integers(0, W - small.width + 1)), int(rng.integers(0, H - small.height + 1))
        scene.paste(small, (ox, oy))
        arr = np.asarray(scene)
        got = est.detector.refine(arr, est.detector.detect(arr)[0]).keypoints
        k = small.width / 256
        eye_dist = np.hypot(*np.subtract(ref["left_eye"], ref["right_eye"]))
        err = [np.hypot((got[n][0] - ox) / k - ref[n][0], (got[n][1] - oy) / k - ref[n][1]) / eye_dist for n in names]
        errors.append(float(np.mean(err)))
    assert max(errors) < 0.15 and np.mean(errors) < 0.1, errors


# ----- bad inputs: typed errors, and the detector survives them ----------------------------------------
def test_bad_inputs_then_good_one_is_still_answered(est, astronaut, tmp_path):
    jpg = tmp_path / "cut.jpg"
    Image.fromarray(astronaut).save(jpg, quality=90)
    jpg.write_bytes(jpg.read_bytes()[:5000])
    bad = [
        (np.zeros((1, 1, 3), np.uint8), ImageTooSmallError),
        (np.broadcast_to(np.zeros((1, 1, 3), np.uint8), (20_000, 20_000, 3)), ImageTooLargeError),
        (np.full((64, 64, 3), np.nan, np.float32), InvalidImageError),
        (np.zeros((64, 64, 3), np.int32), InvalidImageError),
        (np.zeros((0, 0, 3), np.uint8), InvalidImageError),
        (jpg, UnsupportedImageFormatError),
        (np.zeros((64, 64, 2), np.uint8), InvalidImageError),
    ]
    for image, err in bad:
        with pytest.raises(err):
            est.estimate(image)
    rebuilds = est.detector.rebuilds
    assert est.estimate(astronaut).face.score > 0.8
    assert est.detector.rebuilds == rebuilds   # validation kept every bad input away from MediaPipe


def test_detector_rebuilds_after_a_mediapipe_error(tiny_export, detector_model, astronaut):
    import mediapipe as mp
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(
            bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb",
            detector_runtime="mediapipe")) as est:
        assert est.detector.runtime == "mediapipe"
        with pytest.raises(Exception):  # break the graph behind the wrapper's back
            est.detector._det.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=np.zeros((0, 0, 3), np.uint8)))
        before = est.detector.rebuilds
        assert est.estimate(astronaut).face.score > 0.8
        assert est.detector.rebuilds == before + 1


def test_no_face(est):
    from skimage import data
    with pytest.raises(NoFaceError, match="no face found"):
        est.estimate(data.coffee())
    with pytest.raises(NoFaceError):
        est.estimate(np.full((300, 300, 3), 127, np.uint8))


def test_multiple_face_policies(tiny_export, detector_model, astronaut):
    two = _two_faces(astronaut)
    base = dict(bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model, color_order="rgb")
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base, multiple_faces="error")) as e:
        with pytest.raises(MultipleFacesError, match="2 faces") as info:
            e.estimate(two)
        assert info.value.count == 2
        e.estimate(astronaut)
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base, multiple_faces="all")) as e:
        r = e.estimate(two)
        assert len(r.avatars) == 2
        assert r.avatars[0].face.box.area >= r.avatars[1].face.box.area
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base, multiple_faces="largest")) as e:
        assert len(e.estimate(two).avatars) == 1
        with pytest.raises(FaceTooSmallError, match="min_face_size"):
            AvatarEstimator.create_from_options(AvatarEstimatorOptions(**base, min_face_size=400)).estimate(astronaut)


def test_unsupported_backend_and_bad_options(tiny_export, detector_model):
    if sys.platform != "darwin":
        with pytest.raises(BackendUnavailableError, match="macOS"):
            AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", backend="coreml",
                                               detector_model_path=detector_model)
    with pytest.raises(BackendUnavailableError, match="no .* model for backend 'litert'"):
        AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", backend="litert",
                                           detector_model_path=detector_model)
    with pytest.raises(AvatarSDKError, match="unknown backend"):
        AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", backend="tensorrt")
    with pytest.raises(AvatarSDKError, match="running_mode"):
        AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", running_mode="live")


def test_bundle_errors(tiny_export, tmp_path):
    import onnx
    proto = onnx.load(str(tiny_export / "estimator.onnx"))
    meta = json.loads(next(p.value for p in proto.metadata_props if p.key == "swiftavatar"))
    meta["metadata_version"] = 7
    next(p for p in proto.metadata_props if p.key == "swiftavatar").value = json.dumps(meta)
    onnx.save(proto, str(tmp_path / "estimator.onnx"))
    with pytest.raises(BundleVersionError, match="upgrade the SDK"):
        AvatarEstimator.create_from_bundle(tmp_path / "estimator.onnx", detection="none")
    with pytest.raises(BundleError, match="no such"):
        AvatarEstimator.create_from_bundle(tmp_path / "missing.swiftavatar")
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(BundleError, match="not a loadable ONNX"):
        AvatarEstimator.create_from_bundle(tmp_path / "junk.onnx")


def _write_bundle(tiny_export, detector_model, path, version=None):
    from converters.bundle_writer import write_bundle
    import onnx
    meta = json.loads(next(p.value for p in onnx.load(str(tiny_export / "estimator.onnx")).metadata_props
                           if p.key == "swiftavatar"))
    manifest = {"created_by": meta["created_by"], "engine": meta["engine"], "schema": meta["schema"],
                "input": meta["input"], "outputs": meta["outputs"],
                "models": [{"format": "onnx", "precision": "fp32", "file": "estimator.onnx"}],
                "face_detector": {"file": "face_detector.tflite"}}
    members = {"estimator.onnx": (tiny_export / "estimator.onnx").read_bytes(),
               "face_detector.tflite": Path(detector_model).read_bytes()}
    write_bundle(path, manifest, members)
    if version:  # rewrite the manifest with another format version
        with zipfile.ZipFile(path) as z:
            items = {n: z.read(n) for n in z.namelist()}
        m = json.loads(items["manifest.json"])
        m["format_version"] = version
        items["manifest.json"] = json.dumps(m).encode()
        with zipfile.ZipFile(path, "w") as z:
            for n, d in items.items():
                z.writestr(n, d)


def test_swiftavatar_bundle_with_detector(tiny_export, detector_model, astronaut, tmp_path):
    b = tmp_path / "alter.swiftavatar"
    _write_bundle(tiny_export, detector_model, b)
    with AvatarEstimator.create_from_bundle(b) as e:   # detector comes from the bundle
        assert e.estimate(astronaut, color_order="rgb").face.score > 0.8
    newer = tmp_path / "newer.swiftavatar"
    _write_bundle(tiny_export, detector_model, newer, version="2.0")
    with pytest.raises(BundleVersionError, match="upgrade the SDK"):
        AvatarEstimator.create_from_bundle(newer)
    broken = tmp_path / "broken.swiftavatar"
    broken.write_bytes(b.read_bytes()[:4000])
    with pytest.raises(BundleError):
        AvatarEstimator.create_from_bundle(broken)


# ----- modes, lifecycle, smoothing ---------------------------------------------------------------------
def test_running_mode_and_close(tiny_export, detector_model, astronaut):
    opts = AvatarEstimatorOptions(bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model,
                                  running_mode=RunningMode.VIDEO, color_order="rgb")
    e = AvatarEstimator.create_from_options(opts)
    with pytest.raises(RunningModeError):
        e.estimate(astronaut)
    r = e.estimate_for_video(astronaut, 0)
    assert r.timestamp_ms == 0
    e.estimate_for_video(astronaut, 33)
    for bad in (33, 10, 40.5, "50", True):
        with pytest.raises(TimestampError):
            e.estimate_for_video(astronaut, bad)
    e.estimate_for_video(astronaut, np.int64(66))
    with pytest.raises(NoFaceError):                 # a lost face resets smoothing, timestamps still count
        e.estimate_for_video(np.full((200, 200, 3), 90, np.uint8), 100)
    with pytest.raises(TimestampError):
        e.estimate_for_video(astronaut, 100)
    e.close()
    e.close()
    with pytest.raises(EstimatorClosedError):
        e.estimate_for_video(astronaut, 200)


def _raw(p_a: float, cont: float = 0.5) -> RawEstimate:
    return RawEstimate(np.array([cont]), {"x": np.array([p_a, 1 - p_a])})


def test_smoothing_hysteresis_and_reset():
    s = VideoSmoother(tau_ms=100, hysteresis=0.15, reset_after_ms=500)
    _, c = s.update(_raw(0.6), 0)
    assert c["x"] == 0
    # flicker around 50/50: the choice must not flip back and forth
    flips, last = 0, 0
    for i, p in enumerate([0.45, 0.55, 0.42, 0.58, 0.44, 0.56, 0.43] * 3):
        _, c = s.update(_raw(p), 33 * (i + 1))
        flips += c["x"] != last
        last = c["x"]
    assert flips == 0
    # a sustained change does switch, within a few frames
    ts = 33 * 30
    for k in range(10):
        ts += 33
        _, c = s.update(_raw(0.1), ts)
        if c["x"] == 1:
            break
    assert c["x"] == 1 and k <= 4
    # continuous values are low-passed: a step moves part of the way
    s2 = VideoSmoother(tau_ms=100)
    s2.update(_raw(0.5, cont=0.0), 0)
    st, _ = s2.update(_raw(0.5, cont=1.0), 33)
    assert 0.2 < st.continuous[0] < 0.35          # 1 - exp(-33/100) = 0.28
    st, _ = s2.update(_raw(0.5, cont=1.0), 33 + 600 + 500)   # long gap: restart at the new value
    assert st.continuous[0] == 1.0


@pytest.fixture(scope="module")
def input_sensitive_onnx(tmp_path_factory) -> Path:
    """The tiny random estimator with its output layers scaled up: a random model's choices hardly
    depend on the photo, so without this two different people would get the same vector (and a
    flicker test would compare 0 with 0)."""
    import torch
    from converters.metadata import build_metadata
    from converters.onnx_export import export_onnx
    from toolchain.engines.alter import ALTER_SCHEMA
    from toolchain.estimator.model import AvatarEstimator, EstimatorConfig
    torch.manual_seed(0)
    model = AvatarEstimator(EstimatorConfig(input_size=32, head_hidden=16, schema=ALTER_SCHEMA.to_json())).eval()
    with torch.no_grad():
        for head in model.heads.values():
            head[-1].weight.mul_(200.0)
    out = tmp_path_factory.mktemp("sensitive") / "estimator.onnx"
    export_onnx(model, out, build_metadata(model))
    return out


def test_video_mode_smooths_flicker(input_sensitive_onnx, detector_model, astronaut, grace_hopper):
    """Alternating two different people, the smoothed choices change less often than the raw ones."""
    frames = [astronaut if i % 2 == 0 else grace_hopper for i in range(12)]
    common = dict(bundle_path=input_sensitive_onnx, detector_model_path=detector_model, color_order="rgb")
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**common)) as e:
        raw = [e.estimate(f).vector for f in frames]
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**common, running_mode="video")) as e:
        smooth = [e.estimate_for_video(f, 40 * i).vector for i, f in enumerate(frames)]
    changes = lambda seq: sum(a != b for x, y in zip(seq, seq[1:]) for a, b in zip(x.values(), y.values()))  # noqa: E731
    assert changes(raw) >= len(frames) - 1            # the raw choices flip on every frame...
    assert changes(smooth) < changes(raw) // 2         # ...the smoothed ones much less often


def test_detection_none_for_preframed_renders(tiny_export):
    from toolchain.engines.registry import create_engine
    engine = create_engine("alter")
    img = engine.render([engine.schema.default_vector()], size=128).images[0]
    with AvatarEstimator.create_from_bundle(tiny_export / "estimator.onnx", detection="none") as e:
        r = e.estimate(img, color_order="rgb")
        # no detector was built or run: the whole image is the face, with full confidence
        assert e.detector is None and r.face.score == 1.0
        assert (r.face.box.x, r.face.box.y, r.face.box.width, r.face.box.height) == (0.0, 0.0, 128.0, 128.0)


# ----- library manners ---------------------------------------------------------------------------------
_CREATE_AND_ESTIMATE = """
import sys
from sdk_python import AvatarEstimator
with AvatarEstimator.create_from_bundle(sys.argv[1], precision="fp32") as est:
    est.estimate(sys.argv[2])
"""


def test_python_create_and_estimate_print_nothing(tiny_export, detector_model, astronaut, tmp_path):
    """Used as a library (no CLI, no silencing call by the host), creating an estimator and estimating one
    image writes nothing to file descriptors 1 or 2; SWIFTAVATAR_NATIVE_LOGS=1 brings the runtimes' lines back."""
    import os
    bundle, photo = tmp_path / "alter.swiftavatar", tmp_path / "astronaut.png"
    _write_bundle(tiny_export, detector_model, bundle)
    Image.fromarray(astronaut).save(photo)
    env = {k: v for k, v in os.environ.items()
           if k not in ("SWIFTAVATAR_NATIVE_LOGS", "TF_CPP_MIN_LOG_LEVEL", "GLOG_minloglevel", "ABSL_MIN_LOG_LEVEL")}
    env["PYTHONPATH"] = str(ROOT)

    def child(**extra):
        return subprocess.run([sys.executable, "-c", _CREATE_AND_ESTIMATE, str(bundle), str(photo)],
                              capture_output=True, text=True, env={**env, **extra}, cwd=tmp_path, timeout=180)
    quiet = child()
    assert quiet.returncode == 0, quiet.stderr[-2000:]
    assert (quiet.stdout, quiet.stderr) == ("", "")
    loud = child(SWIFTAVATAR_NATIVE_LOGS="1")
    assert loud.returncode == 0 and loud.stderr.strip(), "with SWIFTAVATAR_NATIVE_LOGS=1 the runtimes' lines show"


def test_quiet_set_up_keeps_python_warnings_visible():
    """Hiding fd 2 around native set-up must not swallow what Python itself writes to stderr (run in a child:
    pytest replaces sys.stderr and the warning machinery)."""
    code = ("import os, sys, warnings\n"
            "from sdk_python.native_logs import quiet_stderr\n"
            "with quiet_stderr(True):\n"
            "    os.write(2, b'native line\\n')\n"
            "    warnings.warn('a python warning')\n"
            "    print('a python line', file=sys.stderr)\n"
            "os.write(2, b'native after\\n')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "native line" not in err and "a python warning" in err and "a python line" in err and "native after" in err


def test_estimate_accepts_load_image_as_is(tiny_export, detector_model, astronaut, tmp_path):
    """The array load_image() returns carries its channel order: estimate() takes it with no color_order, even
    when the options' default is 'bgr'; a derived array (channels swapped) must state its order again."""
    from sdk_python import load_image
    photo = tmp_path / "astronaut.jpg"
    Image.fromarray(astronaut).save(photo, quality=95)
    decoded = load_image(photo)
    assert decoded.color_order == "rgb" and decoded[..., ::-1].color_order is None
    common = dict(bundle_path=tiny_export / "estimator.onnx", detector_model_path=detector_model)
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**common)) as e:
        a = e.estimate(load_image(photo))
        assert a.vector == e.estimate(photo).vector
        with pytest.raises(InvalidImageError, match="channel order"):
            e.estimate(np.ascontiguousarray(decoded[..., ::-1]))
        with pytest.raises(InvalidImageError, match="came from load_image"):
            e.estimate(decoded, color_order="bgr")
    with AvatarEstimator.create_from_options(AvatarEstimatorOptions(**common, color_order="bgr")) as e:
        assert e.estimate(decoded).vector == a.vector


# ----- CLI ---------------------------------------------------------------------------------------------
def test_cli_predict(tiny_export, detector_model, astronaut, tmp_path):
    photo = tmp_path / "astronaut.png"
    Image.fromarray(astronaut).save(photo)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 100), (90, 90, 90)).save(blank)
    import os
    env = {**os.environ, "SWIFTAVATAR_FACE_DETECTOR": str(detector_model)}
    proc = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "predict", "--bundle",
                           str(tiny_export / "estimator.onnx"), str(photo), str(blank), "--json", "--render",
                           "--out", str(tmp_path / "out")], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 1, proc.stderr[-2000:]          # one image had no face
    res = json.loads(proc.stdout)
    assert res[0]["result"]["avatars"][0]["vector"] and Path(res[0]["render"]).is_file()
    assert res[1]["error"].startswith("NoFaceError")


def test_detector_model_fetch_and_missing_model_message(tmp_path, monkeypatch):
    import hashlib
    from sdk_python.detector import MODEL_SHA256, fetch_detector_model, resolve_detector_model
    from sdk_python.errors import DetectorModelUnavailableError
    monkeypatch.delenv("SWIFTAVATAR_FACE_DETECTOR", raising=False)
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "cache"))
    with pytest.raises(DetectorModelUnavailableError, match=r"fetch_model\('short'\)"):
        resolve_detector_model()                       # nothing here, and nothing is downloaded implicitly
    try:
        path = fetch_detector_model()
    except DetectorModelUnavailableError as exc:
        skip_unless_ci(f"package index unreachable: {exc}")
    assert path.parent == tmp_path / "cache" and hashlib.sha256(path.read_bytes()).hexdigest() == MODEL_SHA256
    assert resolve_detector_model() == path

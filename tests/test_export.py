"""Export: the formats table, ONNX / TFLite / CoreML exports on a tiny model, output mapping by name,
calibration with the network blocked, the face detector, and the whole export → bundle path."""
from __future__ import annotations

import hashlib
import platform
import re
import socket
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from converters import parity as P
from converters.formats import Target, parse_targets
from converters.metadata import build_metadata, output_name
from converters.tflite_export import tflite_output_map
from toolchain.engines.registry import create_engine
from toolchain.errors import AvatarToolError
from toolchain.estimator.model import AvatarEstimator, EstimatorConfig

from ._sdk_fixtures import noise_image_folder

ROOT = Path(__file__).resolve().parent.parent
SIZE = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A random-init morph estimator (continuous + discrete heads) at 32 px, saved like estimator.pt."""
    torch.manual_seed(0)
    model = AvatarEstimator(EstimatorConfig(input_size=SIZE, schema=create_engine("morph").schema.to_json())).eval()
    path = tmp_path_factory.mktemp("model") / "estimator.pt"
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, path)
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32))
    return model, path, x


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return noise_image_folder(tmp_path_factory.mktemp("imgs"), 24)


# ----- the formats table ---------------------------------------------------------------------------------------
def test_formats_table_and_rejections():
    assert parse_targets("onnx,coreml") == [Target("onnx", "fp32"), Target("coreml", "fp16"), Target("coreml", "int8")]
    assert [t.precision for t in parse_targets("tflite")] == ["fp32", "fp16", "dynamic_int8", "int8"]
    assert [t.key for t in parse_targets("tflite,coreml", ["fp16"])] == ["tflite:fp16", "coreml:fp16"]
    assert parse_targets("tflite:int8")[0].filename == "estimator_int8.tflite"
    with pytest.raises(AvatarToolError, match=r"'onnx' does not support precision 'int8' \(it accepts: fp32\)"):
        parse_targets("onnx:int8")
    with pytest.raises(AvatarToolError, match=r"'coreml' does not support precision 'fp32' \(it accepts: fp16, int8\)"):
        parse_targets("coreml:fp32")
    with pytest.raises(AvatarToolError, match="unknown format 'keras'"):
        parse_targets("keras")
    with pytest.raises(AvatarToolError, match="unknown precision 'int4'"):
        parse_targets("tflite:int4")
    with pytest.raises(AvatarToolError, match="supports none of the precisions int8"):
        parse_targets("onnx", ["int8"])


# ----- ONNX ---------------------------------------------------------------------------------------------------
def test_onnx_named_outputs_dynamic_batch_metadata(tiny, tmp_path):
    import json
    from converters.onnx_export import export_onnx, onnx_session, read_onnx_metadata, run_onnx
    model, path, x = tiny
    meta = build_metadata(model, path)
    rep = export_onnx(model, tmp_path / "m.onnx", meta)
    assert rep["outputs"] == [output_name(h) for h in model.head_names] and rep["checker"] == "passed"
    embedded = json.loads(read_onnx_metadata(tmp_path / "m.onnx")["swiftavatar"])
    assert embedded["input"]["normalization"]["mean"] == list(model.config.mean)
    assert embedded["outputs"]["continuous"]["parameters"][0] == "face_width"
    sess = onnx_session(tmp_path / "m.onnx")
    with torch.no_grad():
        ref = model(x)
    for batch in (1, 4):  # dynamic batch
        got = run_onnx(sess, x[:batch].numpy())
        for h in model.head_names:
            np.testing.assert_allclose(got[output_name(h)], ref[h][:batch].numpy(), atol=1e-5)


# ----- TFLite output mapping (no conversion needed) -------------------------------------------------------------
ONNX_NAMES = ["continuous", "logits_hair_style", "logits_glasses", "logits_skin_tone"]


def test_output_map_by_identity_names_in_any_order():
    rng = np.random.default_rng(1)
    names = ["Identity", "Identity_1", "Identity_2", "Identity_3"]
    shuffled = [names[i] for i in rng.permutation(4)]
    m = tflite_output_map({}, shuffled, ONNX_NAMES)
    assert m == {"signature": None, "outputs": dict(zip(ONNX_NAMES, names))}
    # names that are ONNX names map to themselves
    assert tflite_output_map({}, list(reversed(ONNX_NAMES)), ONNX_NAMES)["outputs"] == {n: n for n in ONNX_NAMES}


def test_output_map_by_signature_when_int8_reorders_tensors():
    # int8 files list tensors as PartitionedCall:k in another order; the signature's output_i is ONNX output i
    sig = {"serving_default": {"inputs": ["input"], "outputs": ["output_2", "output_0", "output_3", "output_1"]}}
    tensors = ["PartitionedCall:2", "PartitionedCall:0", "PartitionedCall:3", "PartitionedCall:1"]
    m = tflite_output_map(sig, tensors, ONNX_NAMES)
    assert m["signature"] == "serving_default"
    assert m["outputs"] == {"continuous": "output_0", "logits_hair_style": "output_1", "logits_glasses": "output_2",
                            "logits_skin_tone": "output_3"}


def test_output_map_refuses_positional_guessing():
    with pytest.raises(AvatarToolError, match="cannot map TFLite outputs"):
        tflite_output_map({}, ["StatefulPartitionedCall:0", "foo", "bar", "baz"], ONNX_NAMES)
    with pytest.raises(AvatarToolError, match="cannot map TFLite outputs"):
        tflite_output_map({}, ["Identity", "Identity_1"], ONNX_NAMES)


# ----- network guard ------------------------------------------------------------------------------------------
def test_onnx2tf_runner_blocks_network():
    code = ("from converters._onnx2tf_main import block_network, NetworkBlocked\nimport socket\nblock_network()\n"
            "for f in (lambda: socket.create_connection(('93.184.216.34', 443), timeout=1),\n"
            "          lambda: socket.socket().connect(('93.184.216.34', 443))):\n"
            "    try:\n        f()\n    except NetworkBlocked:\n        print('blocked')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.stdout.split() == ["blocked", "blocked"], out.stderr


# ----- TFLite conversions (onnx2tf) ---------------------------------------------------------------------------
def _shared_export_reference(folder: Path):
    """The torch estimator the shared TFLite export (tests/conftest.py) was made from, a batch of 4 inputs and
    its outputs on them."""
    from toolchain.estimator.io import load_estimator
    model = load_estimator(folder.parent / "estimator.pt")[0].eval()
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(4, 3, SIZE, SIZE)).astype(np.float32))
    with torch.no_grad():
        return model, x, model(x)


def test_tflite_fp32_shuffled_outputs_map_by_name(tflite_export):
    """ONNX outputs exported in a shuffled order (the shared export's head order): TFLite outputs, read by name,
    still match the torch heads."""
    import onnx

    from converters.tflite_export import TFLiteRunner, nchw_to_nhwc, read_metadata
    folder, report = tflite_export
    model, x, ref = _shared_export_reference(folder)
    onnx_order = [o.name for o in onnx.load(str(folder / "estimator.onnx")).graph.output]
    assert sorted(onnx_order) == sorted(output_name(h) for h in model.head_names)
    assert onnx_order != [output_name(h) for h in model.head_names]
    rec = report["records"]["tflite:fp32"]
    assert rec["input_layout"] == "NHWC"
    tflite = folder / parse_targets("tflite:fp32")[0].filename
    got = TFLiteRunner(tflite, rec["output_map"])(nchw_to_nhwc(x.numpy()))
    for h in model.head_names:
        np.testing.assert_allclose(got[output_name(h)], ref[h].numpy(), atol=1e-4, err_msg=h)
    embedded = read_metadata(tflite)
    assert embedded["input"]["normalization"]["std"] == list(model.config.std)
    assert embedded["output_map"] == rec["output_map"] and embedded["input_layout"] == "NHWC"


@pytest.mark.slow
def test_onnx2tf_converts_a_simplified_copy_and_makes_only_the_files_asked_for(tflite_export):
    """onnx2tf converts a copy (simplified once here, its own three onnxsim runs off) and skips the TFLite files
    nobody asked for; the exported ONNX stays the file the parity check read (onnxsim would have added its
    shape annotations to it in place)."""
    import onnx
    folder, _ = tflite_export
    log = (folder / "onnx2tf.log").read_text()
    assert "simplified the model once with onnxsim" in log
    skipped = set(re.findall(r"skipped onnx2tf's (\w+) conversion", log))
    assert skipped == {"full_int8", "int16_activations", "full_int16_activations"}   # fp32, fp16, dynamic, int8 asked
    assert not onnx.load(str(folder / "estimator.onnx"), load_external_data=False).graph.value_info


def test_onnx2tf_conversions_are_told_apart_by_their_settings():
    """The settings onnx2tf gives each of its seven converters name the file it makes (``conversion_kind``)."""
    import tensorflow as tf
    from converters._onnx2tf_main import KNOWN_KINDS, conversion_kind, parse

    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def double(x):
        return 2.0 * x
    c = tf.lite.TFLiteConverter.from_concrete_functions([double.get_concrete_function()])
    kinds = [conversion_kind(c)]
    c.optimizations = [tf.lite.Optimize.DEFAULT]
    c.target_spec.supported_types = [tf.float16]
    kinds.append(conversion_kind(c))
    c.target_spec.supported_types = []
    kinds.append(conversion_kind(c))
    c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8, tf.lite.OpsSet.SELECT_TF_OPS]
    c.representative_dataset = lambda: iter(())
    kinds.append(conversion_kind(c))
    c.inference_input_type = c.inference_output_type = tf.int8
    kinds.append(conversion_kind(c))
    c.target_spec.supported_ops = [tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]
    c.inference_input_type = c.inference_output_type = tf.float32
    kinds.append(conversion_kind(c))
    c.inference_input_type = c.inference_output_type = tf.int16
    kinds.append(conversion_kind(c))
    assert tuple(kinds) == KNOWN_KINDS
    assert parse(["--keep", "fp32,int8", "--", "-i", "m.onnx"]) == ({"fp32", "int8"}, ["-i", "m.onnx"])
    assert parse(["-i", "m.onnx"]) == (None, ["-i", "m.onnx"])
    with pytest.raises(SystemExit, match="int9: unknown"):
        parse(["--keep", "fp32,int9", "--", "-i", "m.onnx"])


def test_int8_calibration_offline_and_signature_mapping(tflite_export):
    """Full-integer int8 with our calibration images, the network blocked, outputs mapped through the signature."""
    from converters.tflite_export import TFLiteRunner, make_interpreter, nchw_to_nhwc
    folder, report = tflite_export
    model, x, ref = _shared_export_reference(folder)
    log = (folder / "onnx2tf.log").read_text()
    assert "calibration_image_sample_data" not in log and "NetworkBlocked" not in log
    rec = report["records"]["tflite:int8"]
    assert rec["output_map"]["signature"] == "serving_default"
    int8 = folder / parse_targets("tflite:int8")[0].filename
    tensor_names = [d["name"] for d in make_interpreter(int8).get_output_details()]
    assert all(n.startswith("PartitionedCall") for n in tensor_names)  # positions are not the ONNX order
    got = TFLiteRunner(int8, rec["output_map"])(nchw_to_nhwc(x.numpy()))
    for h in model.head_names:  # by name: each output is closest to its own torch head
        assert got[output_name(h)].shape == tuple(ref[h].shape)
        assert np.abs(got[output_name(h)] - ref[h].numpy()).max() < 0.25, h


@pytest.mark.slow
def test_int8_auto_float_layers_are_measured_written_and_recorded(tflite_export):
    """A target plain int8 cannot reach: export ranks the weight layers by measurement on calibration-source images
    it did not calibrate on, rewrites the int8 file with the chosen ones in float and records the choice. The
    export is the suite's shared one (tests/conftest.py), whose int8 row is set up for this: target 1.0, 16
    calibration and 8 selection images, at most 2 float layers, two candidate layers ranked."""
    from converters.int8_quant import float_op_count
    from sdk_python import contract
    folder, report = tflite_export
    quant = report["records"]["tflite:int8"]["quantization"]
    choice = quant["float_layers_choice"]
    assert choice["mode"] == "auto" and not choice["reached"] and {
        k: choice["selection"][k] for k in ("images", "disjoint_from_calibration", "target")} == {
        "images": 8, "disjoint_from_calibration": True, "target": 1.01}
    assert choice["selection"]["objective"].startswith("the worst discrete head") and choice["base"]["worst_head"]
    assert "first_try" in choice["steps"][0]          # the heads' output layers were tried as one set first
    assert [s["k"] for s in choice["steps"][1:]] == [1, 2] and choice["ranked_layers"] >= 2
    # the target is out of reach, so the best set measured is kept: the output layers or a scanned set
    ranked = [r["layer"] for r in choice["ranking"]]
    sets = [choice["steps"][0]["first_try"], *(ranked[:s["k"]] for s in choice["steps"][1:])]
    best = max(s["agreement"] for s in choice["steps"])
    assert choice["agreement"] == best and quant["float_layers"] == choice["float_layers"]
    assert quant["float_layers"] in [fl for fl, s in zip(sets, choice["steps"]) if s["agreement"] == best]
    data = (folder / "estimator_int8.tflite").read_bytes()
    assert float_op_count(data)["float"] >= len(quant["float_layers"])   # those layers really compute in float
    row = next(r for r in report["rows"] if r["precision"] == "int8")
    assert row["agreement"] is not None and row["n_images"] == 24        # the rewritten file was gated
    assert row["status"] == contract.BELOW and row["bundled"] is False   # below its target: not in the bundle
    assert quant["calibration"]["images"] == 16


def test_int8_without_calibration_is_refused(tiny, tmp_path):
    from converters.export import ExportOptions, export_model
    _, path, _ = tiny
    with pytest.raises(AvatarToolError, match="--int8-calibration"):
        export_model(path, tmp_path, ExportOptions(targets=parse_targets("tflite:int8")))


def test_too_few_calibration_images_are_refused(tiny, tmp_path, images):
    from converters.export import ExportOptions, export_model
    _, path, _ = tiny
    with pytest.raises(AvatarToolError, match="has 24 images; int8 calibration needs at least 300"):
        export_model(path, tmp_path, ExportOptions(targets=parse_targets("tflite:int8"), int8_calibration=images))


# ----- CoreML -------------------------------------------------------------------------------------------------
def test_coremltools_imports_after_torch_in_a_fresh_process():
    code = ("from converters.coreml_export import import_coremltools\nimport sys\nct = import_coremltools()\n"
            "mods = list(sys.modules)\nassert mods.index('torch') < mods.index('coremltools')\nprint(ct.__version__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1].startswith(("8.", "9."))


def test_coreml_int8_spec_and_metadata(tiny, tmp_path):
    from converters.coreml_export import dir_size, export_coreml, validate_coreml_spec
    model, path, _ = tiny
    meta = build_metadata(model, path)
    rec = export_coreml(model, tmp_path / "e.mlpackage", meta, "int8")
    spec = validate_coreml_spec(tmp_path / "e.mlpackage", [output_name(h) for h in model.head_names], SIZE)
    assert spec["inputs"] == ["image"] and {"swiftavatar", "schema", "output_map"} <= set(spec["metadata_keys"])
    assert "int8" in rec["quantization"]["weights"]
    assert dir_size(tmp_path / "e.mlpackage") < 0.3 * 4 * sum(p.numel() for p in model.parameters())
    with pytest.raises(AvatarToolError, match="outputs"):
        validate_coreml_spec(tmp_path / "e.mlpackage", ["continuous"], SIZE)


@pytest.mark.skipif(platform.system() != "Darwin", reason="CoreML prediction runs on macOS only; on Linux the "
                    "saved spec is validated instead (test_coreml_int8_spec_and_metadata)")
def test_coreml_predicts_like_torch_on_macos(tiny, tmp_path):  # pragma: no cover - macOS
    from converters.coreml_export import export_coreml, predict_coreml
    model, path, _ = tiny
    export_coreml(model, tmp_path / "e.mlpackage", build_metadata(model, path), "fp16")
    imgs = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    from converters.images import normalise
    ref = P.torch_reference(model, normalise(imgs, model.config.mean, model.config.std))
    for i, pred in enumerate(predict_coreml(tmp_path / "e.mlpackage", imgs)):
        for name in ref:
            assert np.asarray(pred[name]).reshape(-1).argmax() == ref[name][i].argmax() or name == "continuous"


# ----- face detector ------------------------------------------------------------------------------------------
def _fake_tflite(path: Path) -> Path:
    path.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))
    return path


def test_face_detector_sources(tmp_path, monkeypatch):
    from converters import face_detector as F
    from sdk_python import contract
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SWIFTAVATAR_FACE_DETECTOR", raising=False)
    with pytest.raises(AvatarToolError, match="no short-range face detector.*--face-detector PATH"):
        F.find_face_detector(allow_download=False)
    (tmp_path / "x.bin").write_bytes(b"nope")
    with pytest.raises(AvatarToolError, match="not a TFLite model"):
        F.find_face_detector(tmp_path / "x.bin")
    det = F.find_face_detector(_fake_tflite(tmp_path / "mine.tflite"))
    assert "Apache License" in det.license_text and "user-supplied" in det.source
    # the one fetcher (the SDK's) checks the wheel member against the contract's sha256
    pin = contract.detector("short")

    def fake_pip(cmd, **kw):
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl", "w") as zf:
            zf.writestr(pin.wheel_member, _fake_tflite(tmp_path / "w.tflite").read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(subprocess, "run", fake_pip)
    with pytest.raises(AvatarToolError, match="unexpected sha256"):
        F.find_face_detector()
    assert not (tmp_path / "cache" / pin.file).exists()
    # a detector already in the cache is used without pip
    (tmp_path / "cache").mkdir(exist_ok=True)
    _fake_tflite(tmp_path / "cache" / pin.file)
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run when the model is cached"))
    det = F.find_face_detector()
    assert det.path == tmp_path / "cache" / pin.file and contract.DETECTOR_WHEEL in det.source


# ----- the whole path: export → parity → bundle ---------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(tiny, images, tmp_path_factory):
    from converters.export import ExportOptions, export_model
    _, path, _ = tiny
    out = tmp_path_factory.mktemp("export")
    det = _fake_tflite(out.parent / "face_detection_short_range.tflite")
    report = export_model(path, out, ExportOptions(targets=parse_targets("onnx,coreml:fp16"), eval_set=images,
                                                   face_detector=det))
    return out, report


def test_export_report_parity_and_bundle(exported):
    from sdk_python.bundle import open_bundle
    out, report = exported
    rows = {(r["format"], r["precision"]): r for r in report["rows"]}
    assert rows[("onnx", "fp32")]["status"] == P.VALIDATED and rows[("onnx", "fp32")]["agreement"] == 1.0
    assert rows[("onnx", "fp32")]["cont_max_abs"] < 1e-5 and rows[("onnx", "fp32")]["n_images"] == 24
    assert rows[("coreml", "fp16")]["status"] == P.NOT_RUN and "macOS" in rows[("coreml", "fp16")]["reason"]
    assert report["passed"] and (out / "parity.md").read_text().count("| onnx |") == 1
    with open_bundle(out / "morph.swiftavatar") as b:
        b.verify()
        m = b.manifest
        # a file saved without a training record: the bundle names the estimator, made from nothing known
        assert m["provenance"] == {"kind": "estimator", "path": str(Path(report["model"]).resolve()), "id": None,
                                   "streams": [], "made_from": []}
        assert m["engine"] == "morph" and m["input"]["size"] == SIZE
        assert m["face_detector"]["license"] == "Apache-2.0"
        assert set(m["face_detectors"]) == {"short", "full", "mesh"}   # both detectors and the face-mesh check travel
        assert b.read(m["face_detectors"]["full"]["file"])[4:8] == b"TFL3"
        assert b.read("LICENSES/face_detection_short_range.tflite.txt").startswith(b"face_detection_short_range")
        assert set(m["outputs"]) == {output_name(h) for h in ["continuous"] + [p["name"] for p in m["schema"]["params"]
                                                                            if p["kind"] == "discrete"]}
        onnx_entry = b.model("onnx", "fp32")
        with zipfile.ZipFile(out / "morph.swiftavatar") as z:   # the bytes as stored, not through the reader
            stored = z.read(onnx_entry["file"])
        assert m["members"][onnx_entry["file"]]["sha256"] == hashlib.sha256(stored).hexdigest()
        assert onnx_entry.get("sha256", m["members"][onnx_entry["file"]]["sha256"]) == hashlib.sha256(stored).hexdigest()
        assert stored == (out / "estimator.onnx").read_bytes()     # the model the parity table measured
        assert b.model("coreml", "fp16")["file"] == "estimator_fp16.mlpackage.zip"
        assert m["parity"][0]["agreement"] == 1.0


def test_export_without_detector_warns_and_marks_bundle(tiny, tmp_path, monkeypatch):
    from converters.export import ExportOptions, export_model
    from sdk_python.bundle import open_bundle
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "empty-cache"))
    _, path, _ = tiny
    with pytest.warns(UserWarning, match="WITHOUT the short-range face detector"):
        report = export_model(path, tmp_path, ExportOptions(targets=parse_targets("onnx"), fetch_face_detector=False,
                                                            no_parity=True))
    assert report["face_detector"] is False and any("WITHOUT" in w for w in report["warnings"])
    with open_bundle(tmp_path / "morph.swiftavatar") as b:
        assert not b.has_face_detector and b.verify()


def test_below_threshold_fails_the_export(tiny, tmp_path, images):
    from converters.export import ExportOptions, export_model
    _, path, _ = tiny
    report = export_model(path, tmp_path, ExportOptions(targets=parse_targets("onnx"), eval_set=images, bundle=False,
                                                        thresholds={"fp32": 1.01}))
    assert not report["passed"] and report["rows"][0]["status"] == P.BELOW
    assert "discrete heads below 1.01 agreement" in report["rows"][0]["reason"]


def test_cli_export_rejects_bad_combination(tiny):
    _, path, _ = tiny
    out = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "export", "--model", str(path), "--formats",
                          "onnx:fp16"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 1 and "format 'onnx' does not support precision 'fp16'" in out.stderr

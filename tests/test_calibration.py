"""Confidence calibration: temperatures fitted at export on held-out labelled data, stored in the bundle,
applied by the SDK; top-k alternatives per parameter."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from converters.calibration import calibrate, ece, fit_temperature
from converters.export import ExportOptions, export_model
from converters.formats import parse_targets
from sdk_python import AvatarEstimator
from sdk_python.bundle import open_bundle
from toolchain.engines.registry import create_engine
from toolchain.estimator.model import AvatarEstimator as TorchEstimator, EstimatorConfig
from toolchain.proxy.eval_set import write_proxy_set


def _overconfident(n: int, k: int, scale: float, seed: int = 0):
    """Labels drawn from softmax(z) but logits reported as scale * z: calibrated at T = scale."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    labels = np.array([rng.choice(k, p=row) for row in p])
    return z * scale, labels


def _softmax(x):
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_temperature_recovers_overconfidence_and_lowers_ece():
    logits, labels = _overconfident(4000, 6, scale=4.0)
    t = fit_temperature(logits, labels)
    assert 3.3 < t < 4.8
    assert ece(_softmax(logits), labels) > 0.15                    # overconfident as reported
    assert ece(_softmax(logits / t), labels) < 0.03                # calibrated after scaling
    cal_logits, cal_labels = _overconfident(4000, 6, scale=1.0, seed=1)
    assert 0.8 < fit_temperature(cal_logits, cal_labels) < 1.25      # already calibrated: T stays near 1


def test_calibrate_splits_fit_and_evaluation():
    schema = {"params": [{"name": "a", "kind": "discrete", "options": list("xyzuvw")}]}
    logits, labels = _overconfident(400, 6, scale=3.0)
    cal = calibrate({"logits_a": logits}, [{"a": int(y)} for y in labels], schema)
    assert cal["fit_images"] == cal["eval_images"] == 200
    h = cal["per_head"]["a"]
    assert h["ece_after"] < h["ece_before"] and h["nll_after"] < h["nll_before"]
    assert h["top1"] <= h["top3"] <= 1.0 and cal["temperatures"]["a"] > 1.5
    assert "skipped" in calibrate({"logits_a": logits[:10]}, [{"a": 0}] * 10, schema)


@pytest.fixture(scope="module")
def export_with_labels(tmp_path_factory):
    root = tmp_path_factory.mktemp("cal")
    torch.manual_seed(0)
    schema = create_engine("alter").schema
    model = TorchEstimator(EstimatorConfig(input_size=32, schema=schema.to_json())).eval()
    with torch.no_grad():   # make it overconfident: scale every head's logits up
        for head in model.heads.values():
            head[-1].weight.mul_(25.0)
    path = root / "estimator.pt"
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, path)
    write_proxy_set("alter", root / "heldout", n=40, seed=0, size=32)
    det = root / "d.tflite"
    det.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    report = export_model(path, root / "export", ExportOptions(targets=parse_targets("onnx"),
                                                               eval_set=root / "heldout", face_detector=det))
    return root, report


def test_export_fits_temperatures_and_the_sdk_applies_them(export_with_labels):
    root, report = export_with_labels
    cal = report["confidence_calibration"]
    assert set(cal["temperatures"]) == {p.name for p in create_engine("alter").schema.discrete}
    assert all(t > 1.0 for t in cal["temperatures"].values())       # an overconfident model is cooled
    assert (root / "export" / "calibration.md").read_text().count("| ") > 6
    with open_bundle(report["bundle"]) as b:
        assert b.manifest["confidence_calibration"]["temperatures"] == cal["temperatures"]
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    with AvatarEstimator.create_from_bundle(report["bundle"], detection="none") as est:
        assert est.calibrated
        res = est.estimate(img, color_order="rgb")
        raw = est.backend.run(np.ascontiguousarray(est._normalise(img), np.float32))
    for name, t in cal["temperatures"].items():
        p = res.parameters[name]
        expected = _softmax(raw[f"logits_{name}"] / t)[0]
        assert np.allclose(p.probabilities, expected, atol=1e-5)
        assert p.value == int(np.argmax(raw[f"logits_{name}"][0]))            # the answer is unchanged
        assert [a[0] for a in p.alternatives] == list(np.argsort(-expected, kind="stable")[:3])
        assert p.alternatives[0][2] == pytest.approx(p.confidence) and p.alternatives[0][1] == p.label
    js = res.to_json()["avatars"][0]["parameters"]
    assert len(js[next(iter(cal["temperatures"]))]["alternatives"]) == 3
    json.dumps(js)


def test_an_unlabelled_evaluation_set_leaves_confidences_raw_with_a_warning(tmp_path):
    from ._sdk_fixtures import noise_image_folder
    torch.manual_seed(0)
    model = TorchEstimator(EstimatorConfig(input_size=32, schema=create_engine("alter").schema.to_json())).eval()
    path = tmp_path / "estimator.pt"
    torch.save({"config": model.config.to_json(), "state_dict": model.state_dict()}, path)
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    det = tmp_path / "d.tflite"
    det.write_bytes(b"\0\0\0\0TFL3" + b"\0" * 64)
    report = export_model(path, tmp_path / "export", ExportOptions(
        targets=parse_targets("onnx"), eval_set=noise_image_folder(imgs, 8), face_detector=det))
    assert "skipped" in report["confidence_calibration"]
    assert any("confidences not calibrated" in w for w in report["warnings"])
    with AvatarEstimator.create_from_bundle(report["bundle"], detection="none") as est:
        assert not est.calibrated

"""Evaluation command, render-space metrics, LPIPS loading and the label-leak guard."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from ._ci import import_or_skip_unless_ci
from toolchain.data.paired_dataset import PairedDatasetWriter
from toolchain.engines.registry import create_engine
from toolchain.errors import AvatarToolError, LabelLeakError
from toolchain.estimator.train import preset, train
from toolchain.evaluation.confusion import confusion_matrices, largest_shifts, option_rows, shift_sentence
from toolchain.evaluation.evaluate import evaluate, masked_l1
from toolchain.proxy.eval_set import write_proxy_set
from toolchain.render import RenderConfig, render_folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("model")
    engine = create_engine("alter")
    vectors = engine.sample(16, 3)
    batch = engine.render(vectors, size=48)
    with PairedDatasetWriter(root / "ds", engine.schema, meta={"kind": "test"}) as w:
        for img, v in zip(batch.images, vectors):
            w.add(img, v)
    cfg = preset("tiny", epochs=1, batch_size=8)
    cfg.input_size = 32
    with pytest.warns(UserWarning):
        train([root / "ds"], root / "run", cfg, device="cpu")
    return root / "run" / "estimator.pt"


def test_masked_l1():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0] = 255
    mask = np.zeros((4, 4), np.uint8)
    assert masked_l1(a, b, None, None) == pytest.approx(1 / 16)
    mask[0, :2] = 1  # two avatar pixels, one of them fully different
    assert masked_l1(a, b, mask, mask) == pytest.approx(0.5)
    assert masked_l1(a, a, mask, mask) == 0.0


def test_eval_on_proxy_set_writes_report(tiny_model, tmp_path):
    write_proxy_set("alter", tmp_path / "proxy", n=6, seed=0, size=64)
    report = evaluate(tiny_model, tmp_path / "proxy", tmp_path / "out")
    schema = create_engine("alter").schema
    m = report["metrics"]
    assert set(m["accuracy"]) == {p.name for p in schema.discrete}
    assert all(round(v * 6, 9).is_integer() for v in m["accuracy"].values())   # k of the 6 images right
    # an untrained model misses some parameters: its renders differ from the ground truth's, but not totally
    assert 0.0 < m["render_distance"]["masked_l1"]["mean"] < 0.5
    assert m["render_distance"]["lpips"]["available"] is False
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert saved["n"] == 6 and saved["set_kind"] == "photo-proxy"
    assert "LPIPS: not computed" in (tmp_path / "out" / "eval.md").read_text()
    assert (tmp_path / "out" / "grid.png").stat().st_size > 1000
    # where the answers go: one matrix per discrete parameter whose diagonal is the accuracy reported above
    conf = saved["confusion"]
    assert list(conf) == [p.name for p in schema.discrete]
    for p in schema.discrete:
        counts = np.asarray(conf[p.name]["counts"])
        assert conf[p.name]["options"] == list(p.options) and counts.shape == (len(p.options),) * 2
        assert counts.sum() == 6 and np.trace(counts) / 6 == pytest.approx(m["accuracy"][p.name])
    assert "## Answers per option" in (tmp_path / "out" / "eval.md").read_text()
    assert (tmp_path / "out" / "confusion.png").stat().st_size > 1000


def test_confusion_matrices_count_truth_against_answers():
    schema = create_engine("alter").schema
    names = [p.name for p in schema.discrete]
    g = names.index("glasses")
    truth = np.zeros((8, len(names)), np.int64)
    truth[:5, g] = 0           # five glasses-free images, three with option 2
    truth[5:, g] = 2
    answers = truth.copy()
    answers[:4, g] = 1         # four of the glasses-free ones answered with option 1
    conf = confusion_matrices(schema, answers, truth)
    counts = np.asarray(conf["glasses"]["counts"])
    assert counts[0, 0] == 1 and counts[0, 1] == 4 and counts[2, 2] == 3 and counts.sum() == 8
    rows = {r["option"]: r for r in option_rows(conf["glasses"])}
    none, opt1 = schema.discrete[g].options[0], schema.discrete[g].options[1]
    assert rows[none]["image_share"] == pytest.approx(5 / 8) and rows[none]["answer_share"] == pytest.approx(1 / 8)
    assert rows[none]["recall"] == pytest.approx(0.2) and rows[opt1]["recall"] is None
    # the two largest shifts are glasses 'none' (5/8 true, 1/8 answered) and option 1 (0 true, 4/8 answered)
    top = largest_shifts(conf, 2)
    assert {(r["parameter"], r["option"]) for r in top} == {("glasses", none), ("glasses", opt1)}
    assert f"glasses '{none}': 62 % of the images, 12 % of the answers" in shift_sentence(conf)
    with pytest.raises(ValueError, match="one column per discrete parameter"):
        confusion_matrices(schema, answers[:, :2], truth[:, :2])


def test_eval_on_render_folder(tiny_model, tmp_path):
    render_folder(RenderConfig(engine="alter", n=5, seed=99, size=64, workers=0), tmp_path / "r")
    report = evaluate(tiny_model, tmp_path / "r", tmp_path / "out")
    assert report["set_kind"] == "engine-renders" and report["n"] == 5


def test_eval_accuracy_reflects_labels(tiny_model, tmp_path):
    """Relabelling every image with the model's own prediction must give accuracy 1.0."""
    write_proxy_set("alter", tmp_path / "proxy", n=4, seed=1, size=64)
    first = evaluate(tiny_model, tmp_path / "proxy", tmp_path / "o1")
    from toolchain.estimator.io import load_estimator
    from toolchain.estimator.predict import predict_arrays
    from toolchain.evaluation.evaluate import _load_images, load_labelled_set
    model, _ = load_estimator(tiny_model)
    es = load_labelled_set(tmp_path / "proxy")
    imgs = _load_images([p for p, _ in es.items], 128)
    pc, pd, _ = predict_arrays(model, imgs, model.config.input_size, torch.device("cpu"))
    preds = model.schema.decode(pc, pd)
    lines = [json.dumps({"image": f"images/{p.name}", "vector": v}) for (p, _), v in zip(es.items, preds)]
    (tmp_path / "proxy" / "labels.jsonl").write_text("\n".join(lines) + "\n")
    meta = json.loads((tmp_path / "proxy" / "set.json").read_text())
    meta.pop("set_id", None)
    (tmp_path / "proxy" / "set.json").write_text(json.dumps(meta))
    second = evaluate(tiny_model, tmp_path / "proxy", tmp_path / "o2")
    assert second["metrics"]["mean_accuracy"] == 1.0
    assert second["metrics"]["render_distance"]["masked_l1"]["mean"] == 0.0
    # the first run's accuracy is the share of predictions equal to the original labels, per parameter
    expected = {p.name: np.mean([pr[p.name] == v[p.name] for pr, (_, v) in zip(preds, es.items)])
                for p in model.schema.discrete}
    assert first["metrics"]["accuracy"] == pytest.approx(expected)
    assert first["metrics"]["mean_accuracy"] == pytest.approx(np.mean(list(expected.values())))


def test_training_on_an_eval_set_is_refused(tmp_path):
    write_proxy_set("alter", tmp_path / "evalset", n=3, seed=0, size=48)
    schema = create_engine("alter").schema
    # a paired dataset written inside the eval set, and one that records the eval set as its source
    with PairedDatasetWriter(tmp_path / "evalset" / "ds", schema) as w:
        w.add(np.zeros((48, 48, 3), np.uint8), schema.default_vector())
    with PairedDatasetWriter(tmp_path / "ds2", schema, meta={"sources": [str(tmp_path / "evalset")]}) as w:
        w.add(np.zeros((48, 48, 3), np.uint8), schema.default_vector())
    cfg = preset("tiny")
    for ds in (tmp_path / "evalset" / "ds", tmp_path / "ds2"):
        with pytest.raises(LabelLeakError):
            train([ds], tmp_path / "run", cfg, device="cpu")


def test_eval_refuses_model_trained_on_the_set(tiny_model, tmp_path):
    blob = torch.load(tiny_model, weights_only=True)
    write_proxy_set("alter", tmp_path / "proxy", n=3, seed=0, size=48)
    blob["sources"] = [str(tmp_path / "proxy")]
    torch.save(blob, tmp_path / "leaky.pt")
    with pytest.raises(LabelLeakError):
        evaluate(tmp_path / "leaky.pt", tmp_path / "proxy", tmp_path / "out")


def test_lpips_loads_local_backbone(tmp_path):
    import_or_skip_unless_ci("lpips")
    from torchvision.models import alexnet
    from toolchain.metrics.lpips_metric import load_lpips
    torch.manual_seed(0)
    torch.save(alexnet(weights=None).state_dict(), tmp_path / "alex.pth")
    dist = load_lpips(tmp_path / "alex.pth")
    rng = np.random.default_rng(0)
    a = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    assert dist(a, a) == pytest.approx(0.0, abs=1e-6)
    assert dist(a, b) > 0
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(AvatarToolError, match="does not hold"):
        load_lpips(tmp_path / "bad.pth")


def test_cli_eval_and_missing_model(tiny_model, tmp_path):
    write_proxy_set("alter", tmp_path / "proxy", n=3, seed=0, size=64)
    ok = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "eval", "--model", str(tiny_model), "--set",
                         str(tmp_path / "proxy"), "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out" / "eval.json").exists()
    bad = subprocess.run([sys.executable, "-m", "toolchain.cli.main", "eval", "--model", str(tmp_path / "nope.pt"),
                          "--set", str(tmp_path / "proxy")], capture_output=True, text=True)
    assert bad.returncode == 1 and "no such file" in bad.stderr and "Traceback" not in bad.stderr

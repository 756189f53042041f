"""Estimator model, losses, paired dataset and training (tiny configs, CPU)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from toolchain.data.paired_dataset import DatasetError, PairedDataset, PairedDatasetWriter
from toolchain.engines.registry import create_engine
from toolchain.errors import AvatarToolError
from toolchain.estimator.losses import LossWeights, estimator_loss, symmetric_cross_entropy
from toolchain.estimator.model import CONTINUOUS_HEAD, AvatarEstimator, EstimatorConfig, load_backbone_weights
from toolchain.estimator.io import load_estimator
from toolchain.estimator.train import preset, train


def test_sce_matches_hand_computation():
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    target = torch.tensor([0, 1])
    alpha, beta = 0.3, 1.7
    expected = 0.0
    for row, y in zip(logits.tolist(), target.tolist()):
        exps = [math.exp(v) for v in row]
        p = [e / sum(exps) for e in exps]
        ce = -math.log(p[y])
        # reverse CE with log(0) clamped to log(1e-4): only the wrong classes contribute
        rce = -sum(pk * math.log(1.0 if k == y else 1e-4) for k, pk in enumerate(p))
        expected += alpha * ce + beta * rce
    expected /= 2
    got = symmetric_cross_entropy(logits, target, alpha=alpha, beta=beta)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sce_reverse_term_is_bounded_and_zero_when_confident():
    target = torch.tensor([1])
    confident = torch.tensor([[-20.0, 20.0, -20.0]])
    wrong = torch.tensor([[20.0, -20.0, -20.0]])
    assert symmetric_cross_entropy(confident, target, alpha=0, beta=1).item() == pytest.approx(0, abs=1e-4)
    # the reverse term saturates at -log(1e-4) = 9.21 however wrong the prediction is
    assert symmetric_cross_entropy(wrong, target, alpha=0, beta=1).item() == pytest.approx(-math.log(1e-4), rel=1e-3)


@pytest.mark.parametrize("engine_name", ["alter", "morph"])
def test_heads_built_from_schema(engine_name):
    schema = create_engine(engine_name).schema
    model = AvatarEstimator(EstimatorConfig(input_size=64, schema=schema.to_json()))
    out = model(torch.zeros(2, 3, 64, 64))
    expected = ({CONTINUOUS_HEAD} if schema.continuous else set()) | {p.name for p in schema.discrete}
    assert set(out) == expected
    for p in schema.discrete:
        assert out[p.name].shape == (2, len(p.options))
    if schema.continuous:
        assert out[CONTINUOUS_HEAD].shape == (2, len(schema.continuous))
    assert (CONTINUOUS_HEAD in out) == (engine_name == "morph")


def test_total_loss_weights_terms():
    schema = create_engine("morph").schema
    torch.manual_seed(0)  # before the model: its init must not depend on which tests ran first
    model = AvatarEstimator(EstimatorConfig(input_size=64, schema=schema.to_json()))
    # float64: the check subtracts two totals dominated by the SCE terms, which float32 rounds visibly
    out = {k: v.double() for k, v in model(torch.randn(3, 3, 64, 64)).items()}
    cont, disc = schema.encode(schema.sample(3, 1))
    c, d = torch.from_numpy(cont).double(), torch.from_numpy(disc)
    base, terms = estimator_loss(out, c, d, schema, LossWeights(lambda_c=1, lambda_d=10))
    doubled_c, _ = estimator_loss(out, c, d, schema, LossWeights(lambda_c=2, lambda_d=10))
    sce_sum = sum(v for k, v in terms.items() if k.startswith("sce/"))
    assert base.item() == pytest.approx(terms["l1"] + 10 * sce_sum, rel=1e-5)
    assert doubled_c.item() - base.item() == pytest.approx(terms["l1"], rel=1e-4)


def test_backbone_weights_loaded_or_warned(tmp_path):
    from torchvision.models import resnet18
    schema = create_engine("alter").schema
    model = AvatarEstimator(EstimatorConfig(input_size=64, schema=schema.to_json()))
    with pytest.warns(UserWarning, match="from scratch"):
        report = load_backbone_weights(model, None)
    assert report["pretrained"] is False and "backbone-weights" in report["warning"]
    ref = resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "r18.pth")
    report = load_backbone_weights(model, tmp_path / "r18.pth")
    assert report["pretrained"] is True
    assert torch.equal(model.backbone.conv1.weight, ref.conv1.weight)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(AvatarToolError, match="not a ResNet-18"):
        load_backbone_weights(model, tmp_path / "bad.pth")


def _tiny_dataset(root, n=24, size=48, seed=0, shard_size=10):
    engine = create_engine("alter")
    vectors = engine.sample(n, seed)
    batch = engine.render(vectors, size=size)
    with PairedDatasetWriter(root, engine.schema, meta={"kind": "test"}, shard_size=shard_size) as w:
        for img, v in zip(batch.images, vectors):
            w.add(img, v, provenance={"i": len(w)})
    return vectors, batch.images


def test_paired_dataset_round_trip_and_resume(tmp_path):
    vectors, images = _tiny_dataset(tmp_path / "ds", n=24, shard_size=10)
    ds = PairedDataset.open(tmp_path / "ds")
    assert len(ds) == 24 and np.array_equal(ds.images, images)
    assert ds.vectors() == vectors
    assert [p["i"] for p in ds.provenance] == list(range(24))
    # a writer reopened on the folder continues after the sealed shards
    engine = create_engine("alter")
    w = PairedDatasetWriter(tmp_path / "ds", engine.schema)
    assert len(w) == 24
    # an unlisted shard file (crash between shard write and index update) is ignored and overwritten
    (tmp_path / "ds" / "shard-000003.npz").write_bytes(b"garbage")
    assert len(PairedDataset.open(tmp_path / "ds")) == 24
    w.add(images[0], vectors[0])
    w.close()
    assert len(PairedDataset.open(tmp_path / "ds")) == 25
    with pytest.raises(DatasetError, match="another schema"):
        PairedDatasetWriter(tmp_path / "ds", create_engine("morph").schema)


def test_corrupt_shard_is_detected(tmp_path):
    _tiny_dataset(tmp_path / "ds", n=12, shard_size=6)
    shard = tmp_path / "ds" / "shard-000001.npz"
    data = bytearray(shard.read_bytes())
    data[-20] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="checksum"):
        PairedDataset.open(tmp_path / "ds")


def test_resume_gives_same_weights_as_uninterrupted(tmp_path):
    _tiny_dataset(tmp_path / "ds", n=20)
    cfg = preset("tiny", epochs=3, batch_size=6)
    cfg.input_size = 32
    with pytest.warns(UserWarning):
        full = train([tmp_path / "ds"], tmp_path / "full", cfg, device="cpu")
    assert full["status"] == "done"
    with pytest.warns(UserWarning):
        part = train([tmp_path / "ds"], tmp_path / "part", cfg, device="cpu", stop_after_epoch=0)
    assert part["status"] == "stopped"
    resumed = train([tmp_path / "ds"], tmp_path / "part", cfg, device="cpu")
    assert resumed["status"] == "done"
    a, _ = load_estimator(tmp_path / "full" / "estimator.pt")
    b, meta = load_estimator(tmp_path / "part" / "estimator.pt")
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka
    stats = [l for l in (tmp_path / "part" / "stats.jsonl").read_text().splitlines() if l]
    assert len(stats) == 3
    assert meta["backbone"]["pretrained"] is False
    # the from-scratch warning is recorded in the run's outputs
    import json
    run = json.loads((tmp_path / "part" / "run.json").read_text())
    assert any("from scratch" in w for w in run["warnings"])


def test_resume_refuses_other_config(tmp_path):
    _tiny_dataset(tmp_path / "ds", n=12)
    cfg = preset("tiny", epochs=2, batch_size=6)
    cfg.input_size = 32
    with pytest.warns(UserWarning):
        train([tmp_path / "ds"], tmp_path / "run", cfg, device="cpu", stop_after_epoch=0)
    with pytest.raises(AvatarToolError, match="another configuration"):
        train([tmp_path / "ds"], tmp_path / "run", preset("tiny", epochs=3, batch_size=6), device="cpu")


def test_training_learns_something(tmp_path):
    """On clean renders a few epochs should beat chance on the easy, large-area parameters."""
    _tiny_dataset(tmp_path / "ds", n=96, size=64)
    cfg = preset("tiny", epochs=6, batch_size=16)
    cfg.val_fraction = 0.0
    cfg.augment = False
    with pytest.warns(UserWarning):
        train([tmp_path / "ds"], tmp_path / "run", cfg, device="cpu")
    model, _ = load_estimator(tmp_path / "run" / "estimator.pt")
    ds = PairedDataset.open(tmp_path / "ds")
    from toolchain.estimator.metrics import evaluate_arrays
    m = evaluate_arrays(model, ds.images, ds.continuous, ds.discrete, 64, torch.device("cpu"))
    # skin tone (8 options, chance 0.125 under a uniform prior) is a large flat colour region
    assert m["accuracy"]["skin_tone"] > 0.3, m


def test_datasets_of_two_sizes_meet_at_the_larger_one(tmp_path):
    """32 px pairs beside 64 px renders (train.with_renders at smoke): the larger keep every pixel, the smaller are
    upsampled, and the labels stay with their images."""
    from toolchain.estimator.train import _load_datasets
    _, small = _tiny_dataset(tmp_path / "small", n=6, size=32, seed=1)
    _, large = _tiny_dataset(tmp_path / "large", n=5, size=48, seed=2)
    schema, images, cont, disc, sources = _load_datasets([tmp_path / "small", tmp_path / "large"])
    assert images.shape == (11, 48, 48, 3) and images.dtype == np.uint8 and len(cont) == len(disc) == 11
    assert np.array_equal(images[6:], large)
    up = torch.nn.functional.interpolate(torch.from_numpy(np.asarray(small)).permute(0, 3, 1, 2).float(), size=(48, 48),
                                         mode="bilinear", antialias=True, align_corners=False)
    assert np.abs(images[:6].astype(int) - up.permute(0, 2, 3, 1).round().numpy().astype(int)).max() <= 1
    assert np.array_equal(disc[6:], PairedDataset.open(tmp_path / "large").discrete)
    assert [s["count"] for s in sources] == [6, 5]


def test_load_estimator_errors(tmp_path):
    with pytest.raises(AvatarToolError, match="no such file"):
        load_estimator(tmp_path / "missing.pt")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(AvatarToolError, match="not an avatartool estimator"):
        load_estimator(tmp_path / "x.pt")


def test_unsharp_steepens_an_edge_and_leaves_flat_regions_alone():
    from toolchain.estimator.predict import unsharp
    x = torch.full((1, 3, 16, 16), 0.25)
    x[..., 8:] = 0.75
    y = unsharp(x, 1.0)
    assert torch.equal(unsharp(x, 0.0), x)
    assert torch.allclose(y[..., :4], x[..., :4]) and torch.allclose(y[..., 12:], x[..., 12:])   # far from the edge
    assert (y[..., 7] < 0.25 - 0.02).all() and (y[..., 8] > 0.75 + 0.02).all()              # steeper across it
    per_image = unsharp(torch.cat([x, x]), torch.tensor([0.0, 2.0]).view(2, 1, 1, 1))
    assert torch.equal(per_image[0], x[0]) and (per_image[1, :, :, 8] > y[0, :, :, 8]).all()


def test_sharpening_draws_after_the_other_jitter_and_only_when_asked():
    """A run without sharpening sees exactly what it saw before the option existed; with it, the same zoom,
    shift and colour jitter plus the unsharp mask."""
    from toolchain.estimator.predict import prepare_batch
    schema = create_engine("alter").schema
    model = AvatarEstimator(EstimatorConfig(input_size=32, schema=schema.to_json()))
    images = np.random.default_rng(0).integers(0, 256, (4, 40, 40, 3), dtype=np.uint8)
    g0, g1, g2 = (torch.Generator().manual_seed(3) for _ in range(3))
    plain = prepare_batch(images, model, 32, torch.device("cpu"), g0)
    again = prepare_batch(images, model, 32, torch.device("cpu"), g1, sharpen=0.0)
    sharp = prepare_batch(images, model, 32, torch.device("cpu"), g2, sharpen=2.0)
    assert torch.equal(plain, again) and torch.equal(g0.get_state(), g1.get_state())
    assert not torch.equal(plain, sharp) and not torch.equal(g0.get_state(), g2.get_state())
    # sharpening raises the local contrast: the mean absolute difference to the neighbouring pixel grows
    def grain(t):
        return (t[..., 1:] - t[..., :-1]).abs().mean()
    assert grain(sharp) > grain(plain)


def test_the_sharpen_setting_reaches_every_estimator_of_a_build():
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.stages.train import estimator_train_config
    assert estimator_train_config(resolve_config("alter", "smoke")).sharpen == 0.0
    assert estimator_train_config(resolve_config("morph", "cpu")).sharpen == 2.0
    cfg = resolve_config("alter", "smoke", overrides=["train.sharpen=2"])
    assert estimator_train_config(cfg).sharpen == 2.0 and estimator_train_config(cfg, epochs=9).sharpen == 2.0


def test_the_training_seed_reaches_every_estimator_of_a_build_and_changes_what_it_learns(tmp_path):
    """`train.seed` gives a build's estimators another draw of init, split, order and augmentation; unset, the
    preset's seed 0 trains exactly what it trained before the setting existed."""
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.stages.train import estimator_train_config
    assert estimator_train_config(resolve_config("alter", "smoke")).seed == 0
    cfg = resolve_config("morph", "cpu", overrides=["train.seed=3"])
    assert estimator_train_config(cfg).seed == 3 and estimator_train_config(cfg, epochs=9).seed == 3
    _tiny_dataset(tmp_path / "ds", n=12)
    weights = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        tc = preset("tiny", epochs=1, batch_size=6, seed=seed)
        tc.input_size = 32
        with pytest.warns(UserWarning):
            train([tmp_path / "ds"], tmp_path / name, tc, device="cpu")
        weights.append(load_estimator(tmp_path / name / "estimator.pt")[0].state_dict())
    floats = [k for k in weights[0] if weights[0][k].is_floating_point()]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in floats)
    assert any(not torch.equal(weights[0][k], weights[2][k]) for k in floats)


def test_training_applies_the_sharpening_it_is_given(tmp_path):
    _tiny_dataset(tmp_path / "ds", n=12)
    weights = []
    for s in (0.0, 2.0):
        cfg = preset("tiny", epochs=1, batch_size=6, sharpen=s)
        cfg.input_size = 32
        with pytest.warns(UserWarning):
            train([tmp_path / "ds"], tmp_path / f"run{s}", cfg, device="cpu")
        weights.append(load_estimator(tmp_path / f"run{s}" / "estimator.pt")[0].state_dict())
    assert any(not torch.equal(weights[0][k], weights[1][k]) for k in weights[0] if weights[0][k].is_floating_point())

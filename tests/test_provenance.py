"""Provenance chains and the evaluation leak guard: one test per way a set can leak into a score.

The scenario builders use only the public API that existed before chains were recorded, so the same
scenarios can be replayed against older code (how the closing note's before/after table was made).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from toolchain.data.paired_dataset import PairedDatasetWriter
from toolchain.engines.registry import create_engine
from toolchain.errors import LabelLeakError
from toolchain.estimator.train import preset, train
from toolchain.evaluation.evaluate import evaluate
from toolchain.pipeline.baseline import renders_to_dataset
from toolchain.proxy.eval_set import write_proxy_set
from toolchain.render import RenderConfig, render_folder

TRAIN_SEED, OTHER_SEED, N = 0, 77, 12


def build_run(root: Path) -> Path:
    """A Baseline-shaped run: RUN/renders (seed 0) -> RUN/dataset -> RUN/train/estimator.pt."""
    run = root / "run"
    render_folder(RenderConfig(engine="alter", n=N, seed=TRAIN_SEED, size=48, workers=0, masks=False), run / "renders")
    renders_to_dataset(run / "renders", run / "dataset", N)
    cfg = preset("tiny", epochs=1, batch_size=8)
    cfg.input_size = 32
    with pytest.warns(UserWarning):   # no pretrained backbone here
        train([run / "dataset"], run / "train", cfg, device="cpu")
    return run


def _renders(out: Path, seed: int, n: int = 4) -> Path:
    render_folder(RenderConfig(engine="alter", n=n, seed=seed, size=48, workers=0, masks=False), out)
    return out


def _user_set(out: Path, images: list[Path], vectors: list[dict], extra: dict | None = None) -> Path:
    (out / "images").mkdir(parents=True)
    rows = []
    for i, (img, v) in enumerate(zip(images, vectors)):
        shutil.copy(img, out / "images" / f"{i:06d}.png")
        rows.append(json.dumps({"image": f"images/{i:06d}.png", "vector": v}))
    (out / "labels.jsonl").write_text("\n".join(rows) + "\n")
    (out / "set.json").write_text(json.dumps({"engine": "alter", "kind": "user", "role": "eval", **(extra or {})}))
    return out


def scenario_training_renders(run: Path, tmp: Path) -> Path:
    return run / "renders"


def scenario_inside_training_renders(run: Path, tmp: Path) -> Path:
    return _renders(run / "renders" / "heldout", OTHER_SEED)


def scenario_made_from_training_renders(run: Path, tmp: Path) -> Path:
    """A hand-made user set: the training renders' images and labels copied out (nothing records it)."""
    rows = [json.loads(line) for line in (run / "renders" / "vectors.jsonl").read_text().splitlines()[:6]]
    images = [run / "renders" / "images" / f"{r['index']:06d}.png" for r in rows]
    return _user_set(tmp / "copied", images, [r["vector"] for r in rows])


def scenario_declared_made_from_training_renders(run: Path, tmp: Path) -> Path:
    """A user set whose set.json says it was made from the training renders (its labels are new)."""
    other = _renders(tmp / "scratch", OTHER_SEED)
    rows = [json.loads(line) for line in (other / "vectors.jsonl").read_text().splitlines()]
    images = [other / "images" / f"{r['index']:06d}.png" for r in rows]
    made_from = [{"kind": "render-folder", "path": str((run / "renders").resolve())}]
    return _user_set(tmp / "declared", images, [r["vector"] for r in rows], {"made_from": made_from})


def scenario_same_vector_stream(run: Path, tmp: Path) -> Path:
    """Fresh renders elsewhere, same engine and seed: the same vectors as the training renders."""
    render_folder(RenderConfig(engine="alter", n=4, seed=TRAIN_SEED, size=64, workers=0, masks=False), tmp / "again")
    return tmp / "again"


def scenario_prefix_named_sibling(run: Path, tmp: Path) -> Path:
    """RUN/dataset-eval next to the training RUN/dataset: unrelated data that only shares a name prefix."""
    return _renders(run / "dataset-eval", OTHER_SEED)


def scenario_unrelated(run: Path, tmp: Path) -> Path:
    return _renders(tmp / "heldout", OTHER_SEED)


# (scenario, refused?) — what the guard must decide
SCENARIOS = [
    ("set is the training renders", scenario_training_renders, True),
    ("set is inside the training renders", scenario_inside_training_renders, True),
    ("set made from them (labels copied, unrecorded)", scenario_made_from_training_renders, True),
    ("set made from them (declared in set.json)", scenario_declared_made_from_training_renders, True),
    ("set shares the vector stream (engine+seed)", scenario_same_vector_stream, True),
    ("prefix-named sibling (RUN/dataset-eval)", scenario_prefix_named_sibling, False),
    ("unrelated held-out renders (control)", scenario_unrelated, False),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    return build_run(tmp_path_factory.mktemp("leak"))


@pytest.mark.parametrize("name,make,refused", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_eval_leak_guard(run, tmp_path, name, make, refused):
    set_dir = make(run, tmp_path)
    model = run / "train" / "estimator.pt"
    if refused:
        with pytest.raises(LabelLeakError, match="refusing to evaluate"):
            evaluate(model, set_dir, tmp_path / "out")
        assert not (tmp_path / "out" / "eval.json").exists()
    else:
        report = evaluate(model, set_dir, tmp_path / "out")
        assert report["n"] == 4


def test_chain_is_recorded_in_every_artefact(run):
    """The dataset, the run summary and the estimator file name the renders by path, seed and range."""
    from toolchain.estimator.io import load_estimator
    from toolchain.provenance import walk
    renders = str((run / "renders").resolve())
    index = json.loads((run / "dataset" / "index.json").read_text())
    (src,) = index["meta"]["made_from"]
    assert src["path"] == renders and src["streams"] == [
        {"engine": "alter", "stream": "render", "seed": TRAIN_SEED, "start": 0, "stop": N}]
    _, meta = load_estimator(run / "train" / "estimator.pt")
    run_json = json.loads((run / "train" / "run.json").read_text())
    for chain in (meta["provenance"], run_json["provenance"]):
        kinds = [(o["kind"], o["path"]) for o in walk([chain])]
        assert kinds[1:] == [("paired-dataset", str((run / "dataset").resolve())), ("render-folder", renders)]
        assert kinds[0][0] == "estimator"
        assert chain["made_from"][0]["id"].startswith("sha256:")


def test_legacy_model_without_chain_is_still_guarded(run, tmp_path):
    """A model saved before chains were recorded (paths only) is rebuilt from what its sources record."""
    import torch
    blob = torch.load(run / "train" / "estimator.pt", weights_only=True)
    blob.pop("provenance")
    torch.save(blob, tmp_path / "old.pt")
    with pytest.raises(LabelLeakError, match="render-folder"):
        evaluate(tmp_path / "old.pt", run / "renders", tmp_path / "out")


def test_find_leak_uses_real_paths_and_ranges(tmp_path):
    from toolchain.provenance import find_leak, origin, stream
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds-eval").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "ds")
    trained = [origin("paired-dataset", tmp_path / "ds", streams=[stream("alter", "render", 0, 0, 100)])]
    assert find_leak(trained, origin("user-set", tmp_path / "ds-eval")) is None
    assert "is" in find_leak(trained, origin("user-set", tmp_path / "link"))      # a symlink to it is it
    assert "contains" in find_leak(trained, origin("user-set", tmp_path))
    same_stream = lambda a, b, seed=0, engine="alter": origin(   # noqa: E731
        "render-folder", tmp_path / "r", streams=[stream(engine, "render", seed, a, b)])
    assert "vectors 99..99" in find_leak(trained, same_stream(99, 120))
    assert find_leak(trained, same_stream(100, 120)) is None      # disjoint range of the same stream
    assert find_leak(trained, same_stream(0, 10, seed=1)) is None
    assert find_leak(trained, same_stream(0, 10, engine="morph")) is None


def test_training_refuses_an_eval_set_deep_in_the_chain(tmp_path):
    """The old guard looked one level deep (the dataset's own sources); an eval set that reached a
    generator the pairs were made with is found too."""
    write_proxy_set("alter", tmp_path / "evalset", n=2, seed=0, size=48)
    schema = create_engine("alter").schema
    gen = {"kind": "generator", "path": str(tmp_path / "g" / "generator.safetensors"),
           "made_from": [{"kind": "proxy-set", "path": str(tmp_path / "evalset")}]}
    with PairedDatasetWriter(tmp_path / "ds", schema, meta={"made_from": [gen]}) as w:
        w.add(np.zeros((48, 48, 3), np.uint8), schema.default_vector())
    with pytest.raises(LabelLeakError, match="evalset"):
        train([tmp_path / "ds"], tmp_path / "run", preset("tiny"), device="cpu")


def test_content_check_discounts_chance_matches():
    """Copied labels are caught; a tiny all-discrete schema, where every vector is a training vector by
    chance, is left to the recorded chain instead of being refused for it."""
    from toolchain.provenance import content_leak, origin, stream
    from toolchain.schema import AvatarSchema
    alter = create_engine("alter").schema
    trained = [origin("render-folder", "/nowhere", streams=[stream("alter", "render", 0, 0, 500)])]
    copied = alter.sample(500, 0)[100:140]
    assert "40 of its 40" in content_leak(trained, alter, copied)
    assert content_leak(trained, alter, alter.sample(40, 1)) is None
    tiny = AvatarSchema.from_json({"format_version": 1, "engine": "coin", "parts": ["background", "coin"], "params": [
        {"name": "side", "kind": "discrete", "options": ["heads", "tails"], "default": 0},
        {"name": "metal", "kind": "discrete", "options": ["gold", "silver"], "default": 0}]})
    trained = [origin("render-folder", "/nowhere", streams=[stream("coin", "render", 0, 0, 100)])]
    assert content_leak(trained, tiny, tiny.sample(100, 0)[:20]) is None      # indistinguishable from chance
    assert content_leak(trained, tiny, tiny.sample(20, 5)) is None


def test_training_refuses_data_made_from_the_eval_stream_even_when_the_set_is_gone(tmp_path):
    """The chain remembers the labelled proxy stream after the set's folder was deleted."""
    schema = create_engine("alter").schema
    gone = {"kind": "proxy-set", "path": str(tmp_path / "deleted-set"), "id": "sha256:0",
            "streams": [{"engine": "alter", "stream": "proxy-eval", "seed": 0, "start": 0, "stop": 10}], "made_from": []}
    with PairedDatasetWriter(tmp_path / "ds", schema, meta={"made_from": [gone]}) as w:
        w.add(np.zeros((48, 48, 3), np.uint8), schema.default_vector())
    with pytest.raises(LabelLeakError, match="labelled evaluation stream"):
        train([tmp_path / "ds"], tmp_path / "run", preset("tiny"), device="cpu")

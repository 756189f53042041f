"""What the pairs carry: face-likeness (noise at the floor, photos near the ceiling), label consistency's
agreement, and the sample grids over steps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from toolchain.evaluation.face_likeness import FaceCounter, at_size, folder_images, noise_images
from toolchain.evaluation.pair_measures import _agreement, generator_samples, steps_strip
from toolchain.generators.config import generator_preset
from toolchain.generators.generator import SemanticGenerator
from toolchain.generators.grids import sample_grid
from toolchain.generators.io import save_weights
from toolchain.proxy.eval_set import write_proxy_set
from toolchain.atomic_io import save_png_atomic
from toolchain.schema import AvatarSchema


TINY = generator_preset("tiny")


@pytest.fixture(scope="module")
def counter(detector_model):   # noqa: F811
    with FaceCounter() as fc:
        yield fc


def test_an_untrained_generator_scores_at_the_noise_floor(tmp_path, counter):
    torch.manual_seed(0)
    save_weights(tmp_path / "g.safetensors", SemanticGenerator(TINY), TINY)
    samples = generator_samples(tmp_path / "g.safetensors", n=40)
    assert len(samples) == 40 and samples[0].shape == (32, 32, 3) and samples[0].dtype == np.uint8
    floor = counter.count(noise_images(40, 32))
    generated = counter.count(samples)
    assert floor.found <= 1 and generated.found <= 1


def test_proxy_photos_reach_the_ceiling(tmp_path, counter):
    write_proxy_set("alter", tmp_path / "photos", n=24, seed=3, size=128, role="unlabelled")
    photos = folder_images(tmp_path / "photos")
    at64 = counter.count(at_size(photos, 64))
    assert at64.n == 24 and at64.rate >= 0.5          # measured 0.75 on 60 such photos
    assert counter.count(noise_images(24, 64)).found <= 1


def test_agreement_counts_equal_options_and_range_normalised_error():
    schema = AvatarSchema.from_json({"engine": "t", "params": [
        {"name": "hair", "kind": "discrete", "options": ["a", "b", "c"]},
        {"name": "size", "kind": "continuous", "low": 0.0, "high": 10.0, "default": 5.0}]})
    disc = np.array([[0], [1], [2], [2]])
    cont = np.array([[0.0], [0.5], [1.0], [0.25]], np.float32)
    out = _agreement(schema, cont + np.array([[0.1], [0.1], [0.0], [0.0]], np.float32), np.array([[0], [1], [0], [2]]),
                     cont, disc)
    assert out["accuracy"] == {"hair": 0.75}
    assert out["normalised_mae"]["size"] == pytest.approx(0.05)


def test_steps_strip_has_one_row_per_checkpoint(tmp_path):
    torch.manual_seed(0)
    g = SemanticGenerator(TINY)
    z = torch.randn(16, TINY.style_dim)
    for step in (10, 20, 30):
        save_png_atomic(tmp_path / f"step_{step:06d}.png", sample_grid(g, z))
    strip = steps_strip(tmp_path, TINY.size, per_row=8)
    cell = 128                                        # 32 px shown 4x
    assert strip.shape[0] == 3 * cell and strip.shape[1] > 8 * cell
    assert steps_strip(tmp_path / "none", TINY.size) is None
    two = steps_strip(tmp_path, TINY.size, max_rows=2)
    assert two.shape[0] == 2 * cell


def test_g_real_size_benchmark_measures_and_resumes(tmp_path, detector_model):   # noqa: F811
    """`python -m benchmarks g-real-size`: trains, counts faces between ceiling and floor, draws the steps strip;
    a rerun resumes the run folder and trains nothing more."""
    import json
    from benchmarks.g_real_size import main
    args = ["--size", "32", "--steps", "4", "--photos", "16", "--measure-n", "12", "--run", str(tmp_path / "run"),
            "--out", str(tmp_path / "out"), "--set", "sample_every=2", "--set", "snapshot_every=2", "--set", "keep_every=2", "--name", "t",
            "--gen-set", "fourier_freqs=2"]
    main(args)
    first = json.loads((tmp_path / "out" / "g_real_size_32px_t.json").read_text())
    assert first["steps"] == 4 and first["steps_trained_now"] == 4
    assert first["g_real"]["n"] == first["ceiling"]["n"] == first["floor"]["n"] == 12
    assert first["ceiling"]["found"] > first["g_real"]["found"]     # 4 steps draw no faces; the photos do
    assert first["overrides"] == {"sample_every": 2, "snapshot_every": 2, "keep_every": 2}
    assert first["generator_overrides"] == {"fourier_freqs": 2} and first["generator"]["fourier_freqs"] == 2
    census = first["part_census"]
    assert census["photos"]["parts"]["skin"]["present"] == 1.0 and census["g_real"]["n"] == 12
    assert "| glasses |" in (tmp_path / "out" / "g_real_size_32px_t.md").read_text()
    over = first["faces_over_steps"]    # one row per saved grid (sample_every=2), its 32 EMA samples counted
    assert [r["step"] for r in over] == [2, 4] and {r["n"] for r in over} == {32} and over[-1]["found"] <= 32
    kept = first["kept_snapshots"]    # one row per kept snapshot: its faces and its parts' colour spread
    assert [r["step"] for r in kept] == [2, 4] and {r["faces"]["n"] for r in kept} == {12}
    assert set(kept[0]["parts"]) == {"hair", "skin", "glasses", "clothes"}
    assert "| 4 | " in (tmp_path / "out" / "g_real_size_32px_t.md").read_text().split("Kept snapshots")[1]
    assert (tmp_path / "out" / "g_real_size_32px_t.png").is_file()
    assert "G_real samples over steps" in (tmp_path / "out" / "g_real_size_32px_t.md").read_text()
    main(args)
    again = json.loads((tmp_path / "out" / "g_real_size_32px_t.json").read_text())
    assert again["steps_trained_now"] == 0 and again["g_real"] == first["g_real"]


def test_g_real_size_benchmark_refuses_a_malformed_override():
    from benchmarks.g_real_size import parse_sets
    assert parse_sets(["r1_img=0.1", "augment=translation"]) == {"r1_img": 0.1, "augment": "translation"}
    with pytest.raises(SystemExit, match="FIELD=VALUE"):
        parse_sets(["r1_img"])


def test_g_fit_benchmark_fits_each_variant_once(tmp_path, detector_model):   # noqa: F811
    """`python -m benchmarks g-fit`: one row per variant and checkpoint, the variant's own fields applied; a rerun
    reads every kept variant back and fits only a changed one."""
    import json
    from benchmarks.g_fit import main, parse_variant
    args = ["--size", "32", "--steps", "3", "--photos", "12", "--run", str(tmp_path / "run"), "--out",
            str(tmp_path / "out"), "--name", "t", "--gen-set", "fourier_freqs=2", "--variant", "base",
            "--variant", "wide:local_channel=48,coord_embedding=true"]
    main(args)
    first = json.loads((tmp_path / "out" / "g_fit_32px_t.json").read_text())
    base, wide = first["variants"]
    assert base["overrides"] == {"fourier_freqs": 2}
    assert wide["overrides"] == {"fourier_freqs": 2, "local_channel": 48, "coord_embedding": True}
    assert wide["key"]["generator"]["local_channel"] == 48 and wide["params"] > base["params"]
    assert [c["step"] for c in base["checkpoints"]] == [3] and base["photos_faces"]["n"] == 12
    assert not base["reused"] and not wide["reused"]
    md = (tmp_path / "out" / "g_fit_32px_t.md").read_text()
    assert "| wide, local_channel=48, coord_embedding=True |" in md and (tmp_path / "out" / "g_fit_32px_t.png").is_file()
    main(args[:-1] + ["wide:local_channel=40,channel_base=4096"])
    again = json.loads((tmp_path / "out" / "g_fit_32px_t.json").read_text())
    assert again["variants"][0]["reused"] and again["variants"][0]["checkpoints"] == base["checkpoints"]
    changed = again["variants"][1]["key"]["generator"]
    assert not again["variants"][1]["reused"] and changed["local_channel"] == 40 and changed["channel_base"] == 4096
    with pytest.raises(SystemExit, match="--size"):
        main(args[:-1] + ["big:size=64"])
    assert parse_variant("x:a=1,b=2") == ("x", ["a=1", "b=2"])
    with pytest.raises(SystemExit, match="needs a name"):
        parse_variant(":local_channel=64")


def test_part_census_counts_drawn_parts_and_their_colour_spread():
    from toolchain.evaluation.part_census import census
    images = np.zeros((4, 10, 10, 3), np.uint8)
    parts = np.zeros((4, 10, 10), np.int64)
    parts[:2, :5] = 1                 # 'hair' in two images only, 50 px each
    images[0, :5] = 100
    images[1, :5] = 200               # hair colours 100 and 200 -> spread 50
    parts[3, 0, 0] = 2                # one pixel: below a 2 % share, not drawn
    out = census(images, parts, ("background", "hair", "glasses"), min_share=0.02)
    assert out["parts"]["background"]["present"] == 1.0 and out["parts"]["background"]["colour_spread"] == 0.0
    assert out["parts"]["hair"] == {"present": 0.5, "colour_spread": 50.0}
    assert out["parts"]["glasses"] == {"present": 0.0, "colour_spread": None}


def test_a_given_g_real_is_measured_against_photos_drawn_as_the_default_g_reals(tmp_path):
    # not the held-out set: it is drawn at eval.size, where the painter's grain hides faces from the finder
    from types import SimpleNamespace
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.stages.pair_measures import CEILING_SEED_OFFSET, _ceiling_photos
    cfg = resolve_config("alter", "smoke", overrides=["real.generator=/some/g.safetensors", "real.proxy_size=48",
                                                      "eval.measure_n=3"])

    def no_heldout(name):
        raise AssertionError(f"read {name}: the ceiling must not come from the held-out set")

    ctx = SimpleNamespace(cfg=cfg, dir=tmp_path, output=no_heldout)
    photos, note = _ceiling_photos(ctx)
    write_proxy_set("alter", tmp_path / "expected", n=3, seed=cfg.real.proxy_seed + CEILING_SEED_OFFSET, size=48,
                    role="unlabelled")
    assert len(photos) == 3 and all(np.array_equal(a, b) for a, b in zip(photos, folder_images(tmp_path / "expected")))
    assert "given file" in note and "48 px" in note

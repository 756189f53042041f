"""GANs on small data: differentiable augmentation of D's inputs, the EMA ramp-up, and the machine-wide
G_real cache (keyed by photos, configs and code; damaged entries refused and retrained)."""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain.errors import AvatarToolError
from toolchain.generators import cache
from toolchain.generators.config import generator_preset
from toolchain.generators.diffaugment import diff_augment, parse_policy
from toolchain.generators.discriminator import DualBranchDiscriminator
from toolchain.generators.generator import SemanticGenerator
from toolchain.generators.io import save_weights
from toolchain.generators.train_real import ema_beta_at, train_preset
from toolchain.pipeline.build import build
from toolchain.pipeline.runner import read_record

from .test_build import Recorder, tiny_config
from .test_generators import _mask_folder


def _one_hot(parts: torch.Tensor, n: int) -> torch.Tensor:
    return torch.nn.functional.one_hot(parts, n).permute(0, 3, 1, 2).float() * 2 - 1


def test_translation_and_cutout_move_image_and_mask_together():
    torch.manual_seed(0)
    parts = torch.randint(0, 4, (6, 16, 16))
    img = torch.rand(6, 3, 16, 16) * 2 - 1
    # the image carries its own mask in the first channel, so any geometric op must keep them aligned
    img[:, 0] = parts.float() / 3
    seg = _one_hot(parts, 4)
    out_img, out_seg = diff_augment(img, seg, parse_policy("translation,cutout"))
    assert not torch.equal(out_img, img)
    labels = out_seg.argmax(1).float() / 3
    covered = out_seg.abs().sum(1) > 0              # cut-out pixels are zero in both
    moved_in = out_seg[:, 0] == 1                   # shifted-in border: background in the mask, zero in the image
    inside = covered & ~moved_in
    assert inside.any() and torch.allclose(out_img[:, 0][inside], labels[inside])
    assert torch.all(out_img[:, 0][~covered] == 0)


def test_colour_changes_the_image_only_and_gradients_flow():
    torch.manual_seed(1)
    img = (torch.rand(4, 3, 8, 8) * 2 - 1).requires_grad_(True)
    seg = _one_hot(torch.randint(0, 3, (4, 8, 8)), 3)
    out_img, out_seg = diff_augment(img, seg, parse_policy("color"))
    assert torch.equal(out_seg, seg) and not torch.allclose(out_img, img)
    out_img.sum().backward()
    assert img.grad is not None and img.grad.abs().sum() > 0


def test_empty_policy_is_identity_and_unknown_ops_are_refused():
    img, seg = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    a, b = diff_augment(img, seg, parse_policy(""))
    assert a is img and b is seg
    with pytest.raises(ValueError, match="unknown augmentation"):
        parse_policy("color,flip")


def test_ema_ramp_up_keeps_early_averages_close_to_the_trained_weights():
    t = train_preset("tiny", ema_half_life_img=2000.0, ema_rampup=0.05, batch_size=8)
    early, late = ema_beta_at(t, 8 * 10), ema_beta_at(t, 8 * 100_000)
    assert early < 0.5 < late       # after 10 steps half-life 4 images (beta 0.25); later the full 2,000
    assert late == pytest.approx(0.5 ** (8 / 2000))
    assert ema_beta_at(replace(t, ema_rampup=None), 80) == late


# ----- the cache ---------------------------------------------------------------------------------
TINY = generator_preset("tiny")


def test_cache_key_follows_photos_configs_and_code(tmp_path):
    photos = _mask_folder(tmp_path / "photos")
    train = train_preset("tiny").to_json()
    key, basis = cache.cache_key(photos, TINY, train, {"toolchain/generators": "abc"})
    assert cache.cache_key(photos, TINY, {**train, "log_every": 1}, {"toolchain/generators": "abc"})[0] == key
    assert cache.cache_key(photos, TINY, {**train, "iters": 7}, {"toolchain/generators": "abc"})[0] != key
    assert cache.cache_key(photos, replace(TINY, local_channel=16), train, {"toolchain/generators": "abc"})[0] != key
    assert cache.cache_key(photos, TINY, train, {"toolchain/generators": "abd"})[0] != key
    img = photos / "images" / "000000.png"
    data = bytearray(img.read_bytes())
    data[-20] ^= 1
    img.write_bytes(bytes(data))
    assert cache.cache_key(photos, TINY, train, {"toolchain/generators": "abc"})[0] != key


def _trained_dir(path: Path) -> Path:
    path.mkdir(parents=True)
    torch.manual_seed(0)
    save_weights(path / "generator.safetensors", SemanticGenerator(TINY), TINY)
    save_weights(path / "discriminator.safetensors", DualBranchDiscriminator(TINY), TINY)
    (path / "stats.jsonl").write_text('{"step": 1}\n')
    return path


def test_store_then_lookup_and_damaged_weights_are_refused(tmp_path):
    root = tmp_path / "cache"
    stored = cache.store("k1", {"x": 1}, _trained_dir(tmp_path / "gan"), source="test", root=root)
    hit, why = cache.lookup("k1", root)
    assert why is None and hit.path == stored and hit.entry["source"] == "test"
    assert cache.lookup("other", root) == (None, None)
    weights = stored / "generator.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    hit, why = cache.lookup("k1", root)
    assert hit is None and "damaged" in why and not stored.exists()   # moved aside: the next build retrains


def test_an_entry_without_its_discriminator_is_neither_stored_nor_used(tmp_path):
    """G_avatar's finetuning starts from G_real's discriminator, so an entry must bring it: one stored before the
    cache kept it is refused (and retrained), and a training folder without one is not stored."""
    root = tmp_path / "cache"
    stored = cache.store("k1", {"x": 1}, _trained_dir(tmp_path / "gan"), source="test", root=root)
    assert (stored / "discriminator.safetensors").read_bytes() == (tmp_path / "gan" / "discriminator.safetensors").read_bytes()
    entry = json.loads((stored / "entry.json").read_text())
    del entry["discriminator_sha256"]                      # the layout before the discriminator was kept
    (stored / "entry.json").write_text(json.dumps(entry))
    (stored / "discriminator.safetensors").unlink()
    hit, why = cache.lookup("k1", root)
    assert hit is None and "discriminator" in why and "retraining" in why and not stored.exists()
    (tmp_path / "gan" / "discriminator.safetensors").unlink()
    with pytest.raises(AvatarToolError, match="discriminator"):
        cache.store("k2", {"x": 1}, tmp_path / "gan", source="test", root=root)
    assert not (root / "k2").exists() and not list(root.glob(".k2.*"))   # no half-made entry left behind


def test_g_avatar_finetunes_the_same_whether_g_real_was_trained_or_restored(tmp_path, monkeypatch):
    """The first build trains G_real and stores it; the second restores it from the cache. Both hand G_avatar the
    same discriminator to start from, so both finetune the same weights (before, the restored run started
    G_avatar's discriminator fresh and its weights differed)."""
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    outs = {}
    for name in ("trained", "restored"):
        build(tiny_config("alter"), tmp_path / name, ui=Recorder(), stop_before="pairs")
        outs[name] = (read_record(tmp_path / name / "real_generator")["outputs"],
                      read_record(tmp_path / name / "avatar_generator")["outputs"])
    assert outs["trained"][0]["cache"]["reused"] is False and outs["restored"][0]["cache"]["reused"] is True
    for name, (real, avatar) in outs.items():
        assert avatar["discriminator_init"] == real["discriminator"] and Path(real["discriminator"]).is_file(), name
    from toolchain.generators.io import load_generator
    a, b = (load_generator(tmp_path / n / "avatar_generator" / "generator.safetensors")[0].state_dict() for n in outs)
    assert all(torch.equal(a[k], b[k]) for k in a)     # the files' metadata name their own run folders


def _real_generator_build(engine: str, run: Path, **kw):
    ui = Recorder()
    build(tiny_config(engine), run, ui=ui, stop_before="avatar_generator", **kw)
    return read_record(run / "real_generator")["outputs"], ui


def test_a_second_engine_reuses_the_cached_g_real_and_force_retrains(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    first, _ = _real_generator_build("alter", tmp_path / "alter")
    assert first["cache"]["reused"] is False and Path(first["cache"]["path"]).is_dir()
    second, _ = _real_generator_build("morph", tmp_path / "morph")
    assert second["cache"]["reused"] is True and second["cache"]["path"] == first["cache"]["path"]
    assert second["cache"]["trained_by"] == str((tmp_path / "alter").resolve())
    a = (tmp_path / "alter" / "real_generator" / "gan" / "generator.safetensors").read_bytes()
    b = (tmp_path / "morph" / "real_generator" / "gan" / "generator.safetensors").read_bytes()
    assert a == b and (tmp_path / "morph" / "real_generator" / "gan" / "samples").is_dir()
    forced, _ = _real_generator_build("morph", tmp_path / "morph", force=["real_generator"])
    assert forced["cache"]["reused"] is False


def test_a_copied_cache_entry_with_damaged_weights_is_refused_and_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    first, _ = _real_generator_build("alter", tmp_path / "a")
    entry = Path(first["cache"]["path"])
    # a cache copied from another machine, with its weights damaged on the way
    shutil.copytree(entry, tmp_path / "copy")
    shutil.rmtree(entry)
    shutil.copytree(tmp_path / "copy", entry)
    weights = entry / "generator.safetensors"
    weights.write_bytes(weights.read_bytes()[:-64])
    again, ui = _real_generator_build("alter", tmp_path / "b")
    assert again["cache"]["reused"] is False
    assert any("damaged" in w for w in ui.warnings)
    assert json.loads((entry / "entry.json").read_text())["source"] == str((tmp_path / "b").resolve())


def test_a_changed_proxy_misses_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    first, _ = _real_generator_build("alter", tmp_path / "a")
    ui = Recorder()
    build(tiny_config("alter", **{"real.proxy_seed": 1}), tmp_path / "b", ui=ui, stop_before="avatar_generator")
    other = read_record(tmp_path / "b" / "real_generator")["outputs"]
    assert other["cache"]["reused"] is False and other["cache"]["key"] != first["cache"]["key"]
    assert len([p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]) == 2


def test_the_cache_is_keyed_by_the_arithmetic_that_ran_not_by_auto(tmp_path, monkeypatch):
    from toolchain.precision import resolve_precision
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    keys = {}
    for p in ("fp32", "bf16"):
        build(tiny_config("alter", **{"real.precision": p}), tmp_path / p, ui=Recorder(), stop_before="avatar_generator")
        out = read_record(tmp_path / p / "real_generator")["outputs"]
        assert out["cache"]["reused"] is False and out["precision"] == p
        keys[p] = out["cache"]["key"]
    assert keys["fp32"] != keys["bf16"]
    build(tiny_config("alter", **{"real.precision": "auto"}), tmp_path / "auto", ui=Recorder(),
          stop_before="avatar_generator")
    auto = read_record(tmp_path / "auto" / "real_generator")["outputs"]
    assert auto["cache"]["reused"] is True and auto["cache"]["key"] == keys[resolve_precision("auto", "cpu")]


def test_the_opening_estimate_sees_a_cached_g_real_before_the_photos_are_drawn(tmp_path, monkeypatch):
    from toolchain.pipeline import calibrate
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", str(tmp_path / "cache"))
    # the estimate's timings stand still: 1 s a GAN step, 1,000 G_real steps, no photos
    monkeypatch.setattr(calibrate, "_gan_step_seconds", lambda cfg: (1.0, 1000, 10))
    monkeypatch.setattr(calibrate, "_proxy_seconds", lambda n, size: 0.0)
    morph = tiny_config("morph")
    assert calibrate.cached_g_real(morph) is None
    assert calibrate.calibrate_build(morph)["real_generator"] == 1000.0
    picked = tiny_config("morph", **{"real.pick": "faces", "real.keep_every": 250})
    assert calibrate.calibrate_build(picked)["real_generator"] == 1000.0 + 4 * calibrate.PICK_SECONDS_PER_SNAPSHOT
    first, _ = _real_generator_build("alter", tmp_path / "alter")
    entry = Path(first["cache"]["path"])
    # another engine draws the same photos with the same settings: its build will restore this entry
    assert calibrate.cached_g_real(morph) == entry
    est, line = calibrate.opening_estimate(morph, tmp_path / "morph")
    assert est["real_generator"] == calibrate.RESTORE_SECONDS
    assert f"real_generator ~5 s (cached G_real {entry.name})" in line and "left" not in line
    assert calibrate.cached_g_real(morph, force=["real_generator"]) is None
    est, line = calibrate.opening_estimate(morph, tmp_path / "morph", force=["real_generator"])
    assert est["real_generator"] == 1000.0 and "cached" not in line
    assert calibrate.cached_g_real(tiny_config("morph", **{"real.proxy_seed": 1})) is None
    assert calibrate.cached_g_real(tiny_config("morph", **{"real.iters": 7})) is None
    # an entry stored before recipes were kept is not claimed: its photos cannot be told apart
    meta = json.loads((entry / "entry.json").read_text())
    del meta["photos_recipe"]
    (entry / "entry.json").write_text(json.dumps(meta))
    assert calibrate.cached_g_real(morph) is None


def test_the_opening_estimate_of_a_resumed_build_leaves_out_what_is_done(tmp_path, monkeypatch):
    from toolchain.pipeline import calibrate
    monkeypatch.setenv("SWIFTAVATAR_GAN_CACHE", "off")
    monkeypatch.setattr(calibrate, "_gan_step_seconds", lambda cfg: (1.0, 1000, 10))
    monkeypatch.setattr(calibrate, "_proxy_seconds", lambda n, size: 0.0)
    run = tmp_path / "alter"
    fresh, _ = calibrate.opening_estimate(tiny_config("alter"), run)
    assert fresh["render"] > 0 and fresh["real_generator"] == 1000.0
    assert fresh["pair_measures"] > calibrate.PAIR_MEASURE_SECONDS      # the oracle's training counted too
    _real_generator_build("alter", run)
    est, line = calibrate.opening_estimate(tiny_config("alter"), run)
    assert est["render"] == est["real_generator"] == 0.0 and est["avatar_generator"] == 13.0
    assert "render done, real_generator done, avatar_generator ~13 s" in line and line.endswith(" left")
    assert sum(est.values()) < sum(fresh.values()) - 900     # G_real's 1,000 s gone; the rest is timed afresh
    # forcing a finished stage, or changing what it reads, counts it (and what follows) again
    assert calibrate.opening_estimate(tiny_config("alter"), run, force=["real_generator"])[0]["real_generator"] == 1000.0
    changed, _ = calibrate.opening_estimate(tiny_config("alter", **{"real.iters": 7}), run)
    assert changed["render"] == 0.0 and changed["real_generator"] == 1000.0

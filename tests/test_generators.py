"""SemanticStyleGAN: W+ layout, compositing, determinism, losses/regularisers, checkpoints, training resume."""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from toolchain.errors import AvatarToolError
from toolchain.generators import losses
from toolchain.generators.config import ENGINE_LABELS, GeneratorConfig, generator_preset
from toolchain.generators.discriminator import DualBranchDiscriminator
from toolchain.generators.generator import SemanticGenerator
from toolchain.generators.io import load_generator, save_weights
from toolchain.generators.official_checkpoint import (args_from_config, key_map, load_official_checkpoint,
                                                      official_spec, to_official_state_dict)
from toolchain.generators.train_real import lr_at, train_preset, train_real

TINY = generator_preset("tiny")
# smaller still, for the training tests (same parts and label mapping as tiny)
MICRO = replace(TINY, size=16, coarse_size=8, min_feat_size=4, style_dim=16, local_layers=3, base_layers=1, depth_layers=2,
                local_channel=8, coarse_channel=8, channel_base=128, channel_max=16)


def _gen(seed: int = 0, cfg: GeneratorConfig = TINY) -> SemanticGenerator:
    torch.manual_seed(seed)
    return SemanticGenerator(cfg).eval()


def test_wplus_layout_and_part_slices():
    cfg = TINY
    assert cfg.n_latent == cfg.base_layers + 2 * cfg.n_parts
    sl = cfg.latent_slices()
    assert sl["coarse"] == slice(0, 2)
    h = cfg.part_index("hair")
    assert sl["hair.shape"] == slice(2 + 2 * h, 3 + 2 * h) and sl["hair.texture"] == slice(3 + 2 * h, 4 + 2 * h)
    g = _gen()
    # each W+ row gets a distinct constant, so expand() shows which code drives which layer
    wplus = torch.arange(cfg.n_latent, dtype=torch.float32)[None, :, None].expand(1, -1, cfg.style_dim)
    codes = g.expand(wplus)[0, :, :, 0]  # [parts, layers]
    for k in range(cfg.n_parts):
        shape, tex = cfg.base_layers + 2 * k, cfg.base_layers + 2 * k + 1
        expect = [tex if l >= cfg.depth_layers else (l if (k > 0 and l < cfg.base_layers) else shape)
                  for l in range(cfg.local_layers)]
        assert codes[k].tolist() == expect
    # the official 512 model: 28 codes (2 coarse + 13 parts x (shape, texture))
    assert generator_preset("official512").n_latent == 28


def test_perturbing_part_codes_changes_that_part_only_locally():
    g = _gen()
    z = torch.randn(2, TINY.style_dim, generator=torch.Generator().manual_seed(1))
    w = g.z_to_wplus(z)
    out = g.synthesize(w, noise_mode="const")
    w2 = w.clone()
    w2[:, TINY.latent_slices()["hair.texture"]] += 3.0
    out2 = g.synthesize(w2, noise_mode="const")
    # a texture code is read after the depth layer: the segmentation is unchanged, the image is not
    torch.testing.assert_close(out.seg_coarse, out2.seg_coarse)
    assert not torch.allclose(out.image, out2.image)


def test_segmentation_sums_to_one_and_shapes():
    g = _gen()
    out = g.sample(torch.randn(3, TINY.style_dim))
    assert out.image.shape == (3, 3, 32, 32) and out.seg.shape == (3, TINY.n_parts, 32, 32)
    torch.testing.assert_close(out.seg_coarse.sum(1), torch.ones(3, 16, 16))
    torch.testing.assert_close(out.part_probs().sum(1), torch.ones(3, 32, 32))
    assert torch.all(out.depths[0] == 0)  # the background has no pseudo-depth


def test_transparent_parts_do_not_hide_what_is_behind():
    g = _gen()
    feats = torch.arange(TINY.n_parts, dtype=torch.float32).view(1, -1, 1, 1, 1).expand(1, -1, 1, 2, 2)
    depths = torch.zeros(1, TINY.n_parts, 2, 2)
    gl = TINY.part_index("glasses")
    depths[:, gl] = 5.0  # glasses win the softmax
    feat, seg = g.composite(feats, depths)
    assert seg[0, gl].min() > 0.95
    # the opaque parts are renormalised among themselves, so their mean (non-glasses parts) still shows
    opaque = [k for k in range(TINY.n_parts) if k != gl]
    assert torch.allclose(feat, torch.full_like(feat, sum(opaque) / len(opaque) + gl * float(seg[0, gl, 0, 0])), atol=1e-3)


def test_seeded_determinism():
    a, b = _gen(3), _gen(3)
    z = torch.randn(2, TINY.style_dim, generator=torch.Generator().manual_seed(0))
    oa, ob = a.sample(z, noise_mode="const"), b.sample(z, noise_mode="const")
    assert torch.equal(oa.image, ob.image) and torch.equal(oa.seg, ob.seg)
    torch.manual_seed(5)
    r1 = a.sample(z).image
    torch.manual_seed(5)
    assert torch.equal(r1, a.sample(z).image)


def test_r1_and_path_length_are_nonzero_and_differentiable():
    torch.manual_seed(0)
    g, d = SemanticGenerator(TINY), DualBranchDiscriminator(TINY)
    img = torch.randn(4, 3, 32, 32, requires_grad=True)
    seg = torch.randn(4, TINY.n_parts, 32, 32, requires_grad=True)
    r1_img, r1_seg = losses.r1_penalty(d(img, seg), [img, seg])
    assert r1_img > 0 and r1_seg > 0
    (r1_img + r1_seg).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in d.parameters())
    w = g.z_to_wplus(torch.randn(2, TINY.style_dim)).detach().requires_grad_(True)
    out = g.synthesize(w)
    pl, mean, lengths = losses.path_length_penalty(out.image, w, torch.tensor(0.0))
    assert pl > 0 and lengths.min() > 0 and mean > 0
    pl.backward()
    assert g.local[1].layers[0].weight.grad.abs().sum() > 0
    assert g.render.stages[0].conv_up.weight.grad.abs().sum() > 0


def test_colour_loss_zero_for_identical_and_pulls_colours():
    g = _gen()
    out = g.sample(torch.randn(2, TINY.style_dim), noise_mode="const")
    parts = [TINY.part_index("hair"), TINY.part_index("skin")]
    probs = out.part_probs()
    assert losses.colour_matching(out.image, probs, out.image, probs, parts) == 0
    other = (out.image.detach() * 0.5 + 0.3).requires_grad_(True)
    lc = losses.colour_matching(out.image, probs, other, probs, parts)
    assert lc > 0
    lc.backward()
    assert other.grad.abs().sum() > 0
    # the final mask pooled to the coarse size must equal the coarse mask mapped from [0, 1] to [-1, 1]
    coarse = torch.rand(2, 3, 4, 4)
    fine = F.interpolate(2 * coarse - 1, scale_factor=4, mode="nearest")
    assert losses.mask_consistency(fine, coarse) == pytest.approx(0.0, abs=1e-12)
    assert losses.mask_consistency(fine + 0.5, coarse) == pytest.approx(0.25)


def test_label_to_part_mapping():
    lut = TINY.label_to_part()
    assert len(lut) == len(ENGINE_LABELS)
    assert lut[ENGINE_LABELS.index("nose")] == TINY.part_index("skin")
    assert lut[ENGINE_LABELS.index("beard")] == TINY.part_index("hair")
    assert lut[ENGINE_LABELS.index("mouth")] == TINY.part_index("features")
    with pytest.raises(AvatarToolError):
        GeneratorConfig(size=32, style_dim=8, n_mlp=1, parts=("background", "skin"), transparent=(),
                        part_sources={"skin": ("skin",)}, mask_labels=("background", "skin", "hair"), local_layers=3,
                        depth_layers=2, base_layers=1, coarse_size=16, min_feat_size=8).label_to_part()


# --- checkpoints ------------------------------------------------------------------------------------------
SMALL_OFFICIAL = GeneratorConfig(size=16, style_dim=32, n_mlp=2, parts=("background", "face", "hair", "eyeglass"),
                                 transparent=("eyeglass",), local_layers=3, base_layers=1, depth_layers=2, local_channel=8,
                                 coarse_channel=16, coarse_size=8, min_feat_size=4, channel_base=16384, channel_max=512)


def _synthetic_official_checkpoint(path, cfg=SMALL_OFFICIAL, extra=None):
    gen = torch.Generator().manual_seed(0)
    sd = {}
    for k, shape in official_spec(cfg).items():
        sd[k] = (torch.tensor([1., 3, 3, 1])[:, None] * torch.tensor([1., 3, 3, 1])[None] / 16 if k.endswith("kernel")
                 else torch.randn(shape, generator=gen))
    torch.save({"g_ema": sd, "args": args_from_config(cfg), **(extra or {})}, path)
    return sd


def test_official_spec_matches_our_model():
    for name in ("official512", "tiny"):
        cfg = generator_preset(name)
        ours = SemanticGenerator(cfg).state_dict() if name == "tiny" else None
        km = key_map(cfg)
        mapped = {v for v in km.values() if v}
        if ours is not None:
            assert mapped == set(ours)
    cfg = generator_preset("official512")
    spec = official_spec(cfg)
    assert spec["pos_embed.weights"] == (64, 38, 1, 1)
    assert spec["render_net.convs.4.weight"] == (256, 1024, 3, 3)  # 64 -> 128 stage concatenates the 512 coarse features
    assert spec["render_net.to_segs.4.conv.weight"] == (13, 64, 1, 1)
    assert "local_nets.0.to_depth.bias" not in spec and "local_nets.1.to_depth.bias" in spec


def test_official_checkpoint_round_trip(tmp_path):
    path = tmp_path / "official.pt"
    sd = _synthetic_official_checkpoint(path)
    g = load_official_checkpoint(path)
    assert g.cfg.parts == ("background", "part1", "part2", "part3") and g.cfg.transparent == ("part3",)
    back = to_official_state_dict(g)
    assert set(back) == set(sd)
    for k in sd:
        torch.testing.assert_close(back[k], sd[k], rtol=0, atol=0)
    out = g.sample(torch.randn(1, 32), noise_mode="const")
    assert out.image.shape == (1, 3, 16, 16) and torch.isfinite(out.image).all()
    # finetune and the CLI take the official file wherever they take our generator.safetensors
    from toolchain.generators.io import load_generator
    g2, meta = load_generator(path)
    assert meta["source"].startswith("official checkpoint")
    for k, v in g.state_dict().items():
        torch.testing.assert_close(g2.state_dict()[k], v, rtol=0, atol=0)


class _Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_official_loader_refuses_unlisted_globals_and_bad_layouts(tmp_path):
    bad = tmp_path / "evil.pt"
    _synthetic_official_checkpoint(bad, extra={"payload": _Evil()})
    with pytest.raises(AvatarToolError, match="refused"):
        load_official_checkpoint(bad)
    broken = tmp_path / "broken.pt"
    sd = _synthetic_official_checkpoint(broken)
    del sd["style.1.weight"]
    torch.save({"g_ema": sd, "args": args_from_config(SMALL_OFFICIAL)}, broken)
    with pytest.raises(AvatarToolError, match="missing"):
        load_official_checkpoint(broken)


def test_safetensors_round_trip(tmp_path):
    g = _gen(7)
    save_weights(tmp_path / "g.safetensors", g, TINY, {"note": "x"})
    assert (tmp_path / "g.json").exists()
    h, meta = load_generator(tmp_path / "g.safetensors")
    assert meta["note"] == "x" and h.cfg == TINY
    z = torch.randn(2, TINY.style_dim)
    assert torch.equal(g.sample(z, noise_mode="const").image, h.sample(z, noise_mode="const").image)


# --- training -------------------------------------------------------------------------------------------
def _mask_folder(root, n=6, size=16):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        m = np.zeros((size, size), np.uint8)
        m[4:14, 4:12] = 1
        m[2:6, 3:13] = 2
        m[8:9, 5:11] = 3
        m[13:, :] = 9
        img = (rng.integers(0, 60, (size, size, 3)) + np.array([[40, 80, 120]])[m % 1]).astype(np.uint8)
        img[m == 1] = [200, 160, 130]
        Image.fromarray(img).save(root / "images" / f"{i:06d}.png")
        Image.fromarray(m).save(root / "masks" / f"{i:06d}.png")
    return root


FAST = dict(iters=4, batch_size=2, d_reg_every=2, g_reg_every=2, path_weight=0.5, mixing=0.3, augment="color,translation,cutout",
            snapshot_every=2, sample_every=2, log_every=1, n_samples=4)


@pytest.mark.parametrize("recon_weight", [0.0, 5.0])
def test_resume_equals_uninterrupted(tmp_path, recon_weight):
    data = _mask_folder(tmp_path / "data")
    tcfg = train_preset("tiny", **FAST, recon_weight=recon_weight)   # 5.0: the encoder and its optimiser resume too
    sections: dict[str, float] = {}   # timing the parts of the steps must not change what is trained (b is untimed)
    t0 = time.perf_counter()
    train_real(data, tmp_path / "a", MICRO, tcfg, device="cpu", section_seconds=sections)
    wall = time.perf_counter() - t0
    assert set(sections) == {"batch", "D step", "R1 (lazy)", "G step", "path length (lazy)", "EMA",
                             "log, samples, snapshots"}
    assert sections["D step"] > 0 and sections["G step"] > 0 and sum(sections.values()) <= wall
    s = train_real(data, tmp_path / "b", MICRO, tcfg, device="cpu", stop_after=2)
    assert s["status"] == "stopped" and not (tmp_path / "b" / "generator.safetensors").exists()
    # a checkpoint written before a config field existed resumes (the field takes its default)
    ck = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    del ck["identity"]["generator"]["fourier_diagonal"]
    del ck["identity"]["train"]["lr_drop_at"], ck["identity"]["train"]["lr_after"]
    torch.save(ck, tmp_path / "b" / "checkpoint.pt")
    train_real(data, tmp_path / "b", MICRO, tcfg, device="cpu")
    ga, _ = load_generator(tmp_path / "a" / "generator.safetensors")
    gb, _ = load_generator(tmp_path / "b" / "generator.safetensors")
    for (k, va), vb in zip(ga.state_dict().items(), gb.state_dict().values()):
        assert torch.equal(va, vb), k
    rows = [r["step"] for r in map(__import__("json").loads, (tmp_path / "b" / "stats.jsonl").read_text().splitlines())]
    assert rows == [1, 2, 3, 4]
    stats = (tmp_path / "a" / "stats.jsonl").read_text()
    assert "r1_seg" in stats and "path" in stats and (tmp_path / "a" / "samples" / "step_000004.png").exists()
    assert ("recon_img" in stats) == (recon_weight > 0)
    with pytest.raises(AvatarToolError, match="another configuration"):
        train_real(data, tmp_path / "b", MICRO, train_preset("tiny", **{**FAST, "lr": 0.001}), device="cpu")


def test_a_learning_rate_drop_changes_training_from_its_step_and_resumes_across_it(tmp_path):
    data = _mask_folder(tmp_path / "data")
    plain = train_preset("tiny", **FAST)
    dropped = train_preset("tiny", **FAST, lr_drop_at=2, lr_after=0.0002)
    assert [lr_at(dropped, s) for s in range(4)] == [plain.lr, plain.lr, 0.0002, 0.0002]
    train_real(data, tmp_path / "plain", MICRO, plain, device="cpu", stop_after=2)
    train_real(data, tmp_path / "drop", MICRO, dropped, device="cpu", stop_after=2)
    weights = {}
    for name in ("plain", "drop"):
        ck = torch.load(tmp_path / name / "checkpoint.pt", weights_only=True)
        weights[name] = ck["G"]
        train_real(data, tmp_path / name, MICRO, plain if name == "plain" else dropped, device="cpu")
    # the first two steps ran at the same lr, so the two runs agree until the drop and differ after it
    assert all(torch.equal(weights["plain"][k], weights["drop"][k]) for k in weights["plain"])
    ga, _ = load_generator(tmp_path / "plain" / "generator.safetensors")
    gb, _ = load_generator(tmp_path / "drop" / "generator.safetensors")
    assert any(not torch.equal(a, b) for a, b in zip(ga.state_dict().values(), gb.state_dict().values()))
    train_real(data, tmp_path / "whole", MICRO, dropped, device="cpu")  # resumed across the drop = uninterrupted
    gw, _ = load_generator(tmp_path / "whole" / "generator.safetensors")
    for (k, vw), vb in zip(gw.state_dict().items(), gb.state_dict().values()):
        assert torch.equal(vw, vb), k
    with pytest.raises(AvatarToolError, match="lr_after > 0"):
        train_real(data, tmp_path / "bad", MICRO, train_preset("tiny", **FAST, lr_drop_at=2), device="cpu")


def test_kl_to_prior_closed_form():
    from toolchain.generators.encoder import kl_to_prior
    zero = torch.zeros(3, 4)
    assert kl_to_prior(zero, zero).item() == 0.0
    mu, logvar = torch.full((2, 4), 0.5), torch.full((2, 4), math.log(2.0))
    # per dimension 0.5 * (mu^2 + var - 1 - log var), summed over the 4 dimensions
    assert kl_to_prior(mu, logvar).item() == pytest.approx(4 * 0.5 * (0.25 + 2 - 1 - math.log(2.0)))


def test_inverse_share_weights_favour_small_parts():
    parts = torch.zeros(1, 10, 10, dtype=torch.long)
    parts[0, :5] = 1            # half the pixels
    parts[0, 9, 0] = 2          # one pixel
    w = losses.inverse_share_weights(parts, 4, cap=20.0)
    assert w[3] == 0                                      # absent part
    assert w[1] == pytest.approx(1 / (0.5 * 4)) and w[0] == pytest.approx(1 / (0.49 * 4))
    assert w[2] == 20.0                                   # 1 / (0.01 * 4) = 25, capped


def test_reconstruction_aid_learns_to_redraw_photos(tmp_path):
    """With only the reconstruction signal (no adversarial step can shape G this fast), the encoded photos are
    redrawn closer than at the start, and sampling/saving the generator is unchanged (no encoder in it)."""
    data = _mask_folder(tmp_path / "data", n=4)
    tcfg = train_preset("tiny_official", iters=30, batch_size=4, recon_weight=20.0, recon_kl=0.001, path_weight=0.0,
                        mixing=0.0, snapshot_every=30, sample_every=30, log_every=5, n_samples=4, lr=0.005)
    train_real(data, tmp_path / "r", MICRO, tcfg, device="cpu")
    rows = [__import__("json").loads(r) for r in (tmp_path / "r" / "stats.jsonl").read_text().splitlines()]
    assert rows[-1]["recon_img"] < 0.7 * rows[0]["recon_img"], [r["recon_img"] for r in rows]
    assert rows[-1]["recon_seg"] < rows[0]["recon_seg"]
    g, _ = load_generator(tmp_path / "r" / "generator.safetensors")
    assert not any(k.startswith("trunk") or k.startswith("head") for k in g.state_dict())


def test_fit_probe_fits_photos_and_scores_parts(tmp_path):
    """The fitting probe's reconstruction improves over its checkpoints and its part IoU reads the masks (a part no
    photo has is NaN, a part every photo has is scored)."""
    from toolchain.generators.fit_probe import fit_photos
    from toolchain.generators.mask_folder import load_mask_folder
    images, masks = load_mask_folder(_mask_folder(tmp_path / "data", n=4), MICRO)
    first, last = fit_photos(MICRO, images, masks, 60, at=(5,), batch=4, lr=0.01)
    assert (first.step, last.step) == (5, 60) and last.image_l1 < 0.8 * first.image_l1
    assert last.images.shape == (4, 16, 16, 3) and last.images.dtype == np.uint8
    assert math.isnan(last.part_iou["glasses"]) and 0.0 <= last.part_iou["skin"] <= 1.0
    assert last.part_iou["clothes"] > first.part_iou["clothes"] or last.part_iou["clothes"] > 0.9


def test_reconstruction_aid_needs_masks(tmp_path):
    data = _mask_folder(tmp_path / "data", n=2)
    with pytest.raises(AvatarToolError, match="reconstruction aid"):
        train_real(data, tmp_path / "r", MICRO, train_preset("tiny", **FAST, recon_weight=1.0, seg_discriminator=False),
                   device="cpu")


def test_finetune_with_colour_loss_and_grid(tmp_path):
    from toolchain.generators.finetune import colour_distance, finetune
    from toolchain.generators.grids import dual_domain_grid
    data = _mask_folder(tmp_path / "data")
    tcfg = train_preset("tiny", **{**FAST, "iters": 2})
    train_real(data, tmp_path / "real", MICRO, tcfg, device="cpu")
    s = finetune("alter", tmp_path / "real" / "generator.safetensors", tmp_path / "av", tcfg, colour_weight=1.0,
                 freeze_local=True, renders=data, device="cpu")
    assert s["status"] == "done" and "color" in (tmp_path / "av" / "stats.jsonl").read_text()
    g_real, _ = load_generator(tmp_path / "real" / "generator.safetensors")
    g_av, _ = load_generator(tmp_path / "av" / "generator.safetensors")
    # frozen local generators are unchanged
    for (k, a), b in zip(g_real.local.state_dict().items(), g_av.local.state_dict().values()):
        assert torch.equal(a, b), k
    dist = colour_distance(g_real, g_av, n=8, batch=4)
    assert set(dist) == {"hair", "skin"} and all(v > 0 for v in dist.values())   # the render net moved
    assert all(v == 0 for v in colour_distance(g_real, g_real, n=8, batch=4).values())
    grid = dual_domain_grid(g_real, g_av, torch.randn(2, MICRO.style_dim))
    assert grid.ndim == 3 and grid.shape[2] == 3


def test_cli_gan_train_and_grid(tmp_path):
    from typer.testing import CliRunner
    from toolchain.cli.main import app
    from toolchain.generators.train_real import kept_snapshots
    data = _mask_folder(tmp_path / "data", n=4, size=32)
    r = CliRunner().invoke(app, ["gan-train", "--data", str(data), "--out", str(tmp_path / "run"), "--iters", "2",
                                 "--batch-size", "2", "--device", "cpu", "--keep-every", "1"])
    assert r.exit_code == 0, r.output
    g = tmp_path / "run" / "generator.safetensors"
    assert [step for step, _ in kept_snapshots(tmp_path / "run")] == [1, 2]
    r = CliRunner().invoke(app, ["gan-grid", "--real", str(g), "--avatar", str(g), "--out", str(tmp_path / "g.png"), "-n", "2"])
    assert r.exit_code == 0, r.output
    assert Image.open(tmp_path / "g.png").size[0] > 64
    # finetune starts G_avatar's discriminator from the one gan-train wrote beside G_real, and says so
    r = CliRunner().invoke(app, ["finetune", "--engine", "alter", "--real-generator", str(g), "--renders", str(data),
                                 "--out", str(tmp_path / "av"), "--iters", "1", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "discriminator: starts from" in r.output
    assert json.loads((tmp_path / "av" / "run.json").read_text())["discriminator_init"].endswith("discriminator.safetensors")


@pytest.mark.parametrize("pad", [(1, 1), (2, 1), (1, 2), (0, 0)])
def test_fir_filter_matches_depthwise_conv_with_exact_gradients(pad):
    """The shifted-slice FIR with its hand-written adjoint equals the textbook depthwise convolution,
    and its first and second derivatives are right (R1 and path-length regularisation need both)."""
    import torch.nn.functional as F
    from toolchain.generators.layers import fir_filter, fir_kernel
    k = fir_kernel(gain=4.0).double()
    x = torch.randn(2, 3, 9, 11, dtype=torch.double, requires_grad=True)
    xp = F.pad(x, (pad[0], pad[1], pad[0], pad[1]))
    ref = F.conv2d(xp, k[None, None].expand(3, 1, 4, 4), groups=3)
    torch.testing.assert_close(fir_filter(x, k, pad), ref)
    assert torch.autograd.gradcheck(lambda t: fir_filter(t, k, pad), (x,))
    assert torch.autograd.gradgradcheck(lambda t: fir_filter(t, k, pad), (x,))


def test_fused_layers_match_their_definitions():
    """ModulatedLinear folds style, demodulation and the activation gain into one matmul; FixedConv runs
    1x1 kernels as a matmul. Both must equal the layer written out step by step."""
    import math
    import torch.nn.functional as F
    from toolchain.generators.layers import FixedConv, ModulatedLinear
    torch.manual_seed(0)
    ml = ModulatedLinear(8, 6, 5)
    with torch.no_grad():
        for p in ml.parameters():
            p.normal_()
    x, w = torch.randn(3, 8, 4, 4), torch.randn(3, 5)
    s = ml.affine(w)
    weight = ml.weight / math.sqrt(8) * s[:, None]                        # [B, out, in]
    weight = weight / weight.pow(2).sum(2, keepdim=True).add(1e-8).sqrt()
    ref = torch.einsum("boi,bihw->bohw", weight, x) + ml.act.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(ml(x, w), F.leaky_relu(ref, 0.2) * math.sqrt(2), atol=1e-5, rtol=1e-5)
    one = FixedConv(8, 4, 1, demodulate=False, noise=False, activate=False)
    torch.testing.assert_close(one(x), F.conv2d(x, one.effective_weight()), atol=1e-5, rtol=1e-5)


def test_fir_filter_large_maps_take_the_conv_path_and_agree():
    """Maps with many channels and elements run as a depthwise conv inside the filter; value and
    gradient must equal the reference there too."""
    import torch.nn.functional as F
    from toolchain.generators.layers import fir_filter, fir_kernel
    k = fir_kernel(gain=4.0)
    x = torch.randn(8, 32, 66, 66, requires_grad=True)          # padded: 8*32*67*67 > 2^20 elements
    g = torch.randn(8, 32, 64, 64)
    out = fir_filter(x, k, (1, 0))
    (gx,) = torch.autograd.grad(out, x, g)
    xr = x.detach().clone().requires_grad_(True)
    ref = F.conv2d(F.pad(xr, (1, 0, 1, 0)), k[None, None].expand(32, 1, 4, 4), groups=32)
    (gr,) = torch.autograd.grad(ref, xr, g)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(gx, gr, atol=1e-4, rtol=1e-5)


def test_local_generators_run_together_as_each_would_alone():
    from toolchain.generators.local_generator import run_local_generators
    g = _gen(4)
    with torch.no_grad():  # away from the init, where biases are zero and gains one
        for p in g.local.parameters():
            p.add_(0.3 * torch.randn_like(p))
    wplus = g.z_to_wplus(torch.randn(3, TINY.style_dim))
    codes = g.expand(wplus)
    x = g.fourier(g.coords(3, "cpu", torch.float32))
    feats, depths = run_local_generators(g.local, x, codes)
    for k, net in enumerate(g.local):
        f, d = net(x, codes[:, k])
        torch.testing.assert_close(feats[:, k], f, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(depths[:, k:k + 1], d, rtol=1e-4, atol=1e-5)
    assert torch.all(depths[:, 0] == 0) and depths[:, 1:].abs().amax() > 0


def test_diagonal_fourier_features_embed_the_rotated_coordinates_too():
    diag = replace(TINY, fourier_diagonal=True)
    g, plain = SemanticGenerator(diag), SemanticGenerator(TINY)
    c = g.coords(1, "cpu", torch.float32)[0]
    assert c.shape[0] == 4 and plain.coords(1, "cpu", torch.float32).shape[1] == 2
    torch.testing.assert_close(c[2], (c[0] + c[1]) / math.sqrt(2))
    torch.testing.assert_close(c[3], (c[0] - c[1]) / math.sqrt(2))
    assert g.fourier.proj.shape[1] == 4 * (2 * TINY.n_freqs + 1)
    out = g.sample(torch.randn(2, TINY.style_dim))
    assert out.image.shape == (2, 3, 32, 32) and torch.isfinite(out.image).all()
    with pytest.raises(AvatarToolError, match="no official equivalent"):
        args_from_config(replace(generator_preset("official256"), fourier_diagonal=True))


def test_coordinate_embedding_is_a_learned_per_pixel_input_the_samples_share():
    emb = replace(TINY, coord_embedding=True)
    g = SemanticGenerator(emb)
    assert g.coord_embed.shape == (1, TINY.local_channel, TINY.coarse_size, TINY.coarse_size)
    assert g.local[0].layers[0].weight.shape[1] == 2 * TINY.local_channel
    w = g.z_to_wplus(torch.randn(2, TINY.style_dim))
    before = g.synthesize(w, noise_mode="const").image
    with torch.no_grad():
        g.coord_embed[:, :, :4, :4] += 3.0
    after = g.synthesize(w, noise_mode="const").image
    # the embedding is an input to every sample: changing it changes the images, most where it was changed
    assert (after - before).abs().amax() > 1e-3
    assert "coord_embed" in dict(g.named_parameters())
    with pytest.raises(AvatarToolError, match="no official equivalent"):
        args_from_config(replace(generator_preset("official256"), coord_embedding=True))


def test_sample_grid_images_read_back_the_samples():
    from toolchain.generators.grids import sample_grid, sample_grid_images
    from toolchain.torch_utils import signed_to_uint8
    g = _gen(2)
    z = torch.randn(5, TINY.style_dim)
    images = sample_grid_images(sample_grid(g, z, cols=4), TINY.size)
    expected = signed_to_uint8(g.sample(z, noise_mode="const").image)
    # two forward passes may round a pixel differently (by 1 of 255)
    assert len(images) == 5 and all(np.abs(a.astype(int) - b).max() <= 1 for a, b in zip(images, expected))
    with pytest.raises(ValueError, match="not a sample grid"):
        sample_grid_images(np.zeros((100, 77, 3), np.uint8), TINY.size)


def test_face64_preset_is_the_generator_its_committed_measurement_trained():
    # the preset's comment cites a measured face count; a change to the preset must come with a new measurement
    import json
    from pathlib import Path
    result = Path(__file__).resolve().parents[1] / "benchmarks/results/g_real_size_64px_c32_f5_diag_l64_emb_4500.json"
    measured = json.loads(result.read_text())
    assert generator_preset("face64").to_json() == measured["generator"]
    assert measured["g_real"]["found"] >= 30 and measured["steps"] == 4500
    g = SemanticGenerator(generator_preset("face64"))
    out = g.sample(torch.randn(1, g.cfg.style_dim))
    assert out.image.shape == (1, 3, 64, 64) and g.coord_embed.shape[-1] == 32

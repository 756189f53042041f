"""Data parallelism on CPU with gloo and 2 processes: a step under torchrun equals the one-process step
on the same global batch; distributed helpers behave as documented."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from toolchain import distributed
from toolchain.estimator.io import load_estimator
from toolchain.estimator.train import preset, train

from ._dist import run_ranks
from toolchain.data.paired_dataset import PairedDatasetWriter
from toolchain.engines.registry import create_engine

# gradient of one global batch, 2 ranks vs 1 process, per tensor: max |difference| / max |gradient|.
# float32 sums taken in another order; measured 4e-6 on this test
GRAD_REL_TOL = 1e-4


def test_detect_torchrun_slurm_and_single():
    assert distributed.detect({}) == distributed.DistInfo()
    d = distributed.detect({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"})
    assert (d.rank, d.world_size, d.local_rank, d.source, d.is_main, d.enabled) == (3, 8, 1, "torchrun", False, True)
    slurm = {"SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1", "SLURM_STEP_ID": "0"}
    assert distributed.detect(slurm) == distributed.DistInfo(5, 16, 1, "slurm")
    # the batch script itself (no srun step) is not a rank
    assert distributed.detect({k: v for k, v in slurm.items() if k != "SLURM_STEP_ID"}) == distributed.DistInfo()
    # torchrun inside a SLURM allocation wins
    assert distributed.detect({**slurm, "RANK": "0", "WORLD_SIZE": "2"}).source == "torchrun"
    with pytest.raises(Exception, match="not an integer"):
        distributed.detect({"RANK": "x", "WORLD_SIZE": "2"})


def test_rank_shares_cover_the_batch_once():
    for n in range(0, 12):
        for world in (1, 2, 3):
            rows = [i for r in range(world) for i in range(n)[distributed.rank_share(n, world, r)]]
            assert rows == list(range(n))
    # minibatch-stddev groups (rows equal mod batch/group) stay whole and ordered on one rank
    rows = [distributed.group_preserving_rows(16, 2, r, 4) for r in range(2)]
    assert sorted(rows[0] + rows[1]) == list(range(16))
    for r in rows:
        local_groups = [sorted(r[j::len(r) // 4]) for j in range(len(r) // 4)]
        assert all(len({i % 4 for i in g}) == 1 for g in local_groups)


def _noise_dataset(root, n: int, size: int = 64) -> None:
    """Engine vectors with noise images: well-conditioned batch statistics. (On flat-coloured renders at
    64 px some BatchNorm channels of a from-scratch trunk are nearly constant; their gradients then hang
    on float summation order in one process too, up to a few % in layer3/4, which would hide a real bug.)"""
    engine = create_engine("alter")
    rng = np.random.default_rng(0)
    with PairedDatasetWriter(root, engine.schema, shard_size=5) as w:
        for v in engine.sample(n, 0):
            w.add(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), v)


def _grad_worker(ds_dir, cfg, out):
    from toolchain.data.paired_dataset import PairedDataset
    from toolchain.estimator.model import AvatarEstimator, EstimatorConfig
    from toolchain.estimator.train import _epoch_generator, rank_batch_loss
    ds = PairedDataset.open(ds_dir)
    dist = distributed.info()
    dev = torch.device("cpu")
    torch.manual_seed(0)
    model = AvatarEstimator(EstimatorConfig(input_size=cfg.input_size, schema=ds.schema.to_json())).train()
    net = model
    if dist.enabled:
        model = distributed.sync_batchnorm(model, dev)
        net = torch.nn.parallel.DistributedDataParallel(model)
    batch = np.arange(len(ds))
    loss, value, n = rank_batch_loss(net, model, (ds.images, ds.continuous, ds.discrete), batch, ds.schema, cfg, dev,
                                     _epoch_generator(cfg.seed, 0), False, dist)
    loss.backward()
    if dist.is_main:
        torch.save({"grads": {k: p.grad for k, p in model.named_parameters()},
                    "buffers": {k: b for k, b in model.named_buffers()}}, out)


def test_estimator_ddp_gradient_equals_one_process(tmp_path):
    """The step's gradient (DDP average of share-weighted losses, batch statistics over ranks, the global
    batch's augmentation) equals the one-process gradient; so do the BatchNorm running statistics."""
    _noise_dataset(tmp_path / "ds", n=7, size=32)   # 7 rows: shares 4 and 3
    cfg = preset("tiny", input_size=32)
    _grad_worker(tmp_path / "ds", cfg, tmp_path / "one.pt")
    run_ranks(_grad_worker, 2, tmp_path / "ds", cfg, tmp_path / "two.pt")
    one, two = torch.load(tmp_path / "one.pt"), torch.load(tmp_path / "two.pt")
    for k, g in one["grads"].items():
        rel = float((two["grads"][k] - g).abs().max() / g.abs().max().clamp(min=1e-12))
        assert rel < GRAD_REL_TOL, (k, rel)
    for k, b in one["buffers"].items():
        torch.testing.assert_close(two["buffers"][k], b, rtol=1e-5, atol=1e-6, msg=k)
    assert sum(float(g.abs().sum()) for g in one["grads"].values()) > 0


def _train_worker(ds, out, cfg, stop_after_epoch=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train([ds], out, cfg, device="cpu", stop_after_epoch=stop_after_epoch)


def _diffs(a_path, b_path) -> torch.Tensor:
    a, _ = load_estimator(a_path)
    b, _ = load_estimator(b_path)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    return torch.cat([(sa[k].double() - sb[k].double()).abs().flatten() for k in sa])


def test_estimator_ddp_training_and_resume(tmp_path):
    # 18 samples: 16 train; global batches 7, 7, 2 (unequal shares 4/3 and 1/1)
    _noise_dataset(tmp_path / "ds", n=18, size=32)
    one_step = preset("tiny", epochs=1, batch_size=16, input_size=32)   # one step
    _train_worker(tmp_path / "ds", tmp_path / "one", one_step)
    run_ranks(_train_worker, 2, tmp_path / "ds", tmp_path / "two", one_step)
    d = _diffs(tmp_path / "one" / "estimator.pt", tmp_path / "two" / "estimator.pt")
    # Adam's first update is lr * g / (|g| + eps): equal gradients give equal weights, except entries whose
    # gradient is itself at float-noise level (directions BatchNorm makes flat), where the sign may flip
    assert float(d.max()) <= 2 * one_step.lr + 1e-6
    assert float((d > 1e-5).double().mean()) < 1e-4, float((d > 1e-5).double().mean())

    cfg = preset("tiny", epochs=2, batch_size=7, input_size=32)
    run_ranks(_train_worker, 2, tmp_path / "ds", tmp_path / "full", cfg)
    # resume semantics: stopped after epoch 0 and resumed on 2 ranks -> bit-identical to uninterrupted
    run_ranks(_train_worker, 2, tmp_path / "ds", tmp_path / "resumed", cfg, 0)
    assert len((tmp_path / "resumed" / "stats.jsonl").read_text().splitlines()) == 1
    run_ranks(_train_worker, 2, tmp_path / "ds", tmp_path / "resumed", cfg)
    assert float(_diffs(tmp_path / "full" / "estimator.pt", tmp_path / "resumed" / "estimator.pt").max()) == 0.0
    assert len((tmp_path / "full" / "stats.jsonl").read_text().splitlines()) == 2


# --- pairs production over ranks -------------------------------------------------------------------

from .test_production import gen_pair, renders  # noqa: E402,F401  (module fixtures: tiny generators, 12 renders)


def _pairs_cfg(renders):
    from toolchain.production.augment import AugmentConfig
    from toolchain.production.init_latent import InitConfig
    from toolchain.production.inversion import InversionConfig
    from toolchain.production.pairs import PairsConfig
    return PairsConfig(engine="alter", n=12, renders=str(renders), chunk=3, max_loss=0.6, grid_sources=0,
                       init=InitConfig(n_mean=256, calib_steps=5), augment=AugmentConfig(k=2),
                       inversion=InversionConfig(steps=6, batch_size=3))


def _pairs_worker(cfg, out, real, avatar, die_after_parts=None):
    import os
    from toolchain.production import pairs_ranks
    from toolchain.production.pairs import produce_pairs
    if die_after_parts is not None and distributed.info().rank == 1:
        write = pairs_ranks._write_part
        written = []

        def write_then_die(*a, **k):
            write(*a, **k)
            written.append(1)
            if len(written) >= die_after_parts:
                os._exit(3)   # as a killed process: no cleanup, no barrier
        pairs_ranks._write_part = write_then_die
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        produce_pairs(cfg, out, real, avatar)


def _dataset_record(root):
    import json
    from toolchain.data.paired_dataset import PairedDataset
    ds = PairedDataset.open(root)
    index = json.loads((root / "index.json").read_text())
    return ds, [s["count"] for s in index["shards"]], index["meta"]


def test_pairs_on_two_ranks_equal_one_process_and_a_killed_rank_is_filled(gen_pair, renders, tmp_path, monkeypatch):
    from toolchain.production.pairs import resolve_generators
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-weights"))   # weight-free perceptual fallback
    real, avatar = resolve_generators(gen_pair[0])
    cfg = _pairs_cfg(renders)
    _pairs_worker(cfg, tmp_path / "one", real, avatar)
    ref, ref_shards, ref_meta = _dataset_record(tmp_path / "one")
    assert ref_meta["progress"]["sources_done"] == 12

    def same_as_one_process(root):
        ds, shards, meta = _dataset_record(root)
        assert shards == ref_shards
        assert ds.provenance == ref.provenance
        assert np.array_equal(ds.images, ref.images) and np.array_equal(ds.latents, ref.latents)
        assert np.array_equal(ds.continuous, ref.continuous) and np.array_equal(ds.discrete, ref.discrete)
        assert meta["progress"] == ref_meta["progress"] and meta["init"] == ref_meta["init"]
        assert not list((root / "parts").glob("*"))

    run_ranks(_pairs_worker, 2, cfg, tmp_path / "two", real, avatar)
    same_as_one_process(tmp_path / "two")

    # rank 1 dies right after its first finished chunk; the launcher then stops rank 0
    with pytest.raises(Exception):
        run_ranks(_pairs_worker, 2, cfg, tmp_path / "killed", real, avatar, 1)
    import json
    done = json.loads((tmp_path / "killed" / "index.json").read_text())["meta"]["progress"]["sources_done"]
    parts = sorted(p.name for p in (tmp_path / "killed" / "parts").glob("*.json"))
    assert done < 12 and "chunk-000001.json" in parts   # rank 1's first chunk (of 1, 3) survived
    assert "chunk-000003.json" not in parts               # its unfinished chunk was lost
    # a part write the kill cut short (whether the kill left one depends on timing: plant one)
    (tmp_path / "killed" / "parts" / ".chunk-000003.npz.cut.tmp").write_bytes(b"half a part")
    # the same command fills exactly the gaps and leaves no temp file behind
    run_ranks(_pairs_worker, 2, cfg, tmp_path / "killed", real, avatar)
    same_as_one_process(tmp_path / "killed")


# --- GAN training (G_real / G_avatar finetune) over ranks ------------------------------------------

def _gan_worker(data, out, tcfg):
    from toolchain.generators.finetune import colour_loss_fn
    from toolchain.generators.generator import SemanticGenerator
    from toolchain.generators.train_real import run_gan
    from .test_generators import MICRO
    torch.manual_seed(5)
    g_real = SemanticGenerator(MICRO).eval().requires_grad_(False)   # the frozen reference of the colour loss
    parts = [MICRO.part_index(p) for p in ("hair", "skin")]
    run_gan(data, out, MICRO, tcfg, init_generator=g_real.state_dict(), extra_g_loss=colour_loss_fn(g_real, parts, 1.0),
            run_meta={"role": "avatar"}, device="cpu")


def test_gan_finetune_ddp_step_equals_one_process(tmp_path):
    """G_avatar finetuning, one step on a global batch of 8 with every term on (D loss, R1 on image and
    mask, G loss, mask loss, colour loss, style mixing, path length, DiffAugment, EMA): 2 ranks vs 1 process."""
    import json
    from toolchain.generators.io import load_discriminator, load_generator
    from toolchain.generators.train_real import train_preset
    from .test_generators import _mask_folder
    data = _mask_folder(tmp_path / "data", n=8)
    tcfg = train_preset("tiny", iters=1, batch_size=8, d_reg_every=1, g_reg_every=1, mixing=1.0, path_weight=0.5,
                        augment="color,translation,cutout", snapshot_every=1, sample_every=1, log_every=1, n_samples=4,
                        precision="fp32")   # bf16 rounds half a batch differently from a whole one (3e-4 seen)
    _gan_worker(data, tmp_path / "one", tcfg)
    run_ranks(_gan_worker, 2, data, tmp_path / "two", tcfg)
    # the forward values of the step (logged as the mean over ranks) equal the one-process values
    s1, s2 = (json.loads((tmp_path / r / "stats.jsonl").read_text().splitlines()[0]) for r in ("one", "two"))
    for k in ("d", "r1_img", "r1_seg", "g", "mask", "color", "path", "path_length", "real_score", "fake_score"):
        assert s2[k] == pytest.approx(s1[k], rel=1e-4, abs=1e-6), (k, s1[k], s2[k])
    for name, load in (("generator", load_generator), ("discriminator", load_discriminator)):
        a, _ = load(tmp_path / "one" / f"{name}.safetensors")
        b, _ = load(tmp_path / "two" / f"{name}.safetensors")
        d = torch.cat([(x.double() - y.double()).abs().flatten() for x, y in zip(a.state_dict().values(),
                                                                                   b.state_dict().values())])
        assert float(d.max()) <= 4 * tcfg.lr + 1e-6
        assert float((d > 1e-5).double().mean()) < 1e-3, (name, float((d > 1e-5).double().mean()))


# --- the build under torchrun ------------------------------------------------------------------------

def _build_worker(run, stop_before):
    from toolchain.pipeline.build import build
    from .test_build import Recorder, tiny_config
    ui = Recorder()
    results = build(tiny_config(), run, ui=ui, stop_before=stop_before)
    if distributed.info().is_main:
        import json
        (run / f"results-{len(list(run.glob('results-*')))}.json").write_text(
            json.dumps([[r.name, r.status] for r in results]))


@pytest.mark.slow
def test_tiny_build_on_two_ranks_verifies_and_reruns_as_skips(tmp_path):
    """The whole tiny build on 2 ranks: each rank renders its slice, the training stages run on both, the
    serial stages (held-out set, export, evaluation, report) on rank 0; records are written once, the
    bundle verifies, and a rerun on 2 ranks skips every stage."""
    import json
    from sdk_python.bundle import open_bundle
    from toolchain.data.paired_dataset import PairedDataset
    from toolchain.pipeline.build import STAGE_NAMES
    from toolchain.pipeline.runner import read_record
    from toolchain.render.folder import RenderFolder
    run = tmp_path / "run"
    run_ranks(_build_worker, 2, run, None)
    first = json.loads((run / "results-0.json").read_text())
    assert first == [[s, "ran"] for s in STAGE_NAMES]
    for s in STAGE_NAMES:
        assert read_record(run / s)["status"] == "complete"
    assert RenderFolder.open(run / "render").rendered(40)
    assert len(PairedDataset.open(run / "pairs")) > 0 and not list((run / "pairs" / "parts").glob("*"))
    with open_bundle(Path(read_record(run / "export")["outputs"]["bundle"])) as b:
        checks = b.checks()
    assert checks and all(c.ok for c in checks)
    assert (run / "report.html").is_file()
    run_ranks(_build_worker, 2, run, None)
    assert json.loads((run / "results-1.json").read_text()) == [[s, "skipped"] for s, _ in first]


def test_launcher_builds_the_torchrun_command_and_does_not_relaunch_a_rank(monkeypatch):
    from toolchain import launch
    cmd = launch.torchrun_command(["build", "-e", "alter", "--nproc-per-node", "4", "--preset=smoke",
                                   "--nproc-per-node=4"], 4)
    assert cmd[1:7] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4", "-m", "--"]
    assert cmd[7:] == ["toolchain.cli.main", "build", "-e", "alter", "--preset=smoke"]
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("SLURM_PROCID", raising=False)
    assert launch.should_launch(2) and not launch.should_launch(1) and not launch.should_launch(None)
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not launch.should_launch(2)
    with pytest.raises(Exception, match="at least 1"):
        launch.torchrun_command(["build"], 0)


def test_render_share_renders_only_that_slice_then_the_folder_completes(tmp_path):
    from toolchain.render import RenderConfig, render_folder
    from toolchain.render.folder import RenderFolder, image_path
    cfg = RenderConfig(engine="alter", n=7, seed=1, size=32, workers=0)
    render_folder(cfg, tmp_path / "r", share=(1, 2))          # rank 1 of 2: indices 4..6
    assert [i for i in range(7) if image_path(tmp_path / "r", i).exists()] == [4, 5, 6]
    assert not (tmp_path / "r" / "contact_sheet.png").exists()
    render_folder(cfg, tmp_path / "r", share=(0, 2))
    s = render_folder(cfg, tmp_path / "r")                    # rank 0's final pass: nothing left to render
    assert s.rendered == 0 and RenderFolder.open(tmp_path / "r").rendered(7)
    assert (tmp_path / "r" / "contact_sheet.png").exists()
    ref = render_folder(cfg, tmp_path / "one")
    assert ref.rendered == 7
    for i in range(7):
        assert image_path(tmp_path / "r", i).read_bytes() == image_path(tmp_path / "one", i).read_bytes()

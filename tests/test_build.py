"""`avatartool build`: configuration, a reduced end-to-end build (bundle verified, report complete),
skipping, --force, downstream-only reruns, an external engine without masks, and kill -9 + resume."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests._cli import REPO, run_cli
from toolchain.data.paired_dataset import PairedDataset
from toolchain.errors import AvatarToolError
from toolchain.pipeline.build import STAGE_NAMES, build
from toolchain.pipeline.config import PRESETS, resolve_config
from toolchain.pipeline.runner import RunLock, read_record

# A build small enough for the suite: 32 px everything, a few steps per stage, ONNX only.
TINY = {
    "render.n": 40, "render.size": 32, "render.workers": 0,
    "real.proxy_n": 40, "real.proxy_size": 32, "real.iters": 4, "real.batch_size": 4,
    "avatar.iters": 3, "avatar.batch_size": 4,
    "pairs.k": 1, "pairs.steps": 3, "pairs.batch": 8, "pairs.chunk": 16, "pairs.max_loss": -1.0,
    "pairs.init_samples": 256, "pairs.init_calib_steps": 3,
    "train.preset": "tiny", "train.epochs": 1, "train.input_size": 32,
    "export.formats": "onnx", "export.calibration_images": 10, "export.fetch_detector": False,
    "export.latency_runs": 0,   # the timing starts a torch process of its own (~4 s); the `built` run times (BUILT)
    "eval.n": 12, "eval.size": 32, "eval.measure_n": 12, "baseline.epochs": 1,
}


#: The `built` run's settings beyond TINY: its export times the models (the other tiny builds skip that).
BUILT = {"export.latency_runs": 3}


def tiny_settings(**more: object) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY, **more}.items()]


def tiny_config(engine: str = "alter", **more: object):
    return resolve_config(engine, "smoke", overrides=tiny_settings(**more))


class Recorder:
    """A BuildUI that remembers what happened."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.warnings: list[str] = []

    def stage_started(self, index, total, name, title, estimate_s):  # noqa: ANN001
        self.events.append(("start", name))

    def stage_progress(self, done, total, detail=""):  # noqa: ANN001
        pass

    def stage_finished(self, name, status, seconds):  # noqa: ANN001
        self.events.append((status, name))

    def warn(self, message):  # noqa: ANN001
        self.warnings.append(message)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    run = tmp_path_factory.mktemp("build") / "run"
    ui = Recorder()
    cwd = os.getcwd()
    os.chdir(run.parent)
    try:   # a relative run directory, as the CLI's default runs/build-<engine>-<preset> is
        results = build(tiny_config(**BUILT), Path(run.name), ui=ui)
    finally:
        os.chdir(cwd)
    return run, results, ui


# ----- configuration ------------------------------------------------------------------------------
def test_presets_resolve_and_overrides_take_precedence(tmp_path):
    for name in PRESETS:
        cfg = resolve_config("alter", name)
        assert cfg.preset == name and cfg.render.n == PRESETS[name]["render.n"]
    paper = resolve_config("alter", "paper")
    assert (paper.render.size, paper.pairs.steps, paper.pairs.k, paper.pairs.early_stop) == (512, 200, 10, False)
    assert paper.train.preset == "paper"
    yaml_file = tmp_path / "b.yaml"
    yaml_file.write_text("pairs:\n  k: 4\n  steps: 7\nrender:\n  n: 99\n")
    cfg = resolve_config("morph", "smoke", yaml_file, ["pairs.k=5", "pairs.early_stop=true"], **{"render.workers": 3})
    assert (cfg.engine, cfg.pairs.k, cfg.pairs.steps, cfg.render.n, cfg.render.workers) == ("morph", 5, 7, 99, 3)
    assert cfg.pairs.early_stop is True
    assert resolve_config("alter", "smoke", overrides=["pairs.max_loss=none"]).pairs.max_loss is None


@pytest.mark.parametrize("bad, message", [
    (["pairs.kk=3"], "section 'pairs' has"),
    (["nosuch.k=3"], "unknown build setting 'nosuch.k'"),
    (["pairs.k=three"], "pairs.k: expected int"),
    (["pairs.k"], "expected SECTION.FIELD=VALUE"),
    (["pairs.augment=hair"], "pairs.augment: 'hair' is not PART=STRENGTH"),
    (["pairs.augment=hair=1.5"], "pairs.augment: the strength for 'hair' must lie in [0, 1]"),
    (["pairs.augment=hair=0.3,hair=0.5"], "pairs.augment: 'hair' is named twice"),
    (["pairs.augment=shoes=1"], "pairs.augment: augmentation part 'shoes' is neither a generator part"),
    (["pairs.augment=none"], "would repeat their source; set pairs.k=0"),
])
def test_bad_settings_are_refused_with_their_name(bad, message):
    with pytest.raises(AvatarToolError, match=re.escape(message)):
        resolve_config("alter", "smoke", overrides=bad)


def test_the_augmentation_setting_reaches_the_pairs_stage():
    from types import SimpleNamespace

    from toolchain.pipeline.stages.pairs import pairs_config
    from toolchain.production.augment import PAPER_STRENGTHS

    def strengths(overrides: list[str]) -> dict[str, float]:
        cfg = resolve_config("alter", "smoke", overrides=overrides)
        return pairs_config(SimpleNamespace(cfg=cfg, output=lambda stage: {"folder": "renders"})).augment.strengths
    assert strengths([]) == PAPER_STRENGTHS
    assert strengths(["pairs.augment=background=1, clothes=1,beard=0.2"]) == {"background": 1.0, "clothes": 1.0,
                                                                              "beard": 0.2}
    assert strengths(["pairs.augment=none", "pairs.k=0"]) == {}


def test_the_learning_rate_settings_reach_g_reals_training():
    from toolchain.pipeline.stages.real_generator import g_real_training

    _, plain, _ = g_real_training(resolve_config("alter", "smoke"))
    assert (plain.lr, plain.lr_drop_at) == (0.002, 0)
    _, tcfg, _ = g_real_training(resolve_config("alter", "smoke", overrides=[
        "real.lr=0.004", "real.lr_drop_at=600", "real.lr_after=0.001"]))
    assert (tcfg.lr, tcfg.lr_drop_at, tcfg.lr_after, tcfg.iters) == (0.004, 600, 0.001, plain.iters)
    # the cpu preset's own schedule (README, "The lr-drop G_real in the cpu preset"), the same on every engine
    _, cpu, _ = g_real_training(resolve_config("morph", "cpu"))
    assert (cpu.lr, cpu.lr_drop_at, cpu.lr_after, cpu.iters) == (0.004, 2000, 0.002, 5000)


def test_the_augment_setting_reaches_g_reals_discriminator_and_refuses_typos():
    from toolchain.pipeline.stages.real_generator import g_real_training

    _, plain, _ = g_real_training(resolve_config("alter", "smoke"))
    assert plain.augment == ""  # tiny_official's own: none
    _, aug, _ = g_real_training(resolve_config("alter", "smoke", overrides=["real.augment=translation,cutout"]))
    assert aug.augment == "translation,cutout"
    _, off, _ = g_real_training(resolve_config("alter", "smoke", overrides=[
        "real.train_preset=tiny", "real.augment=plain"]))
    assert off.augment == ""  # overrides the tiny preset's translation,cutout
    with pytest.raises(AvatarToolError, match="real.augment='translation,cutuot'.*cutout"):
        resolve_config("alter", "smoke", overrides=["real.augment=translation,cutuot"])


def test_the_recolour_setting_reaches_the_pairs_stage_and_refuses_unknown_parts():
    from types import SimpleNamespace
    from toolchain.pipeline.stages.pairs import pairs_config

    def stage_cfg(*overrides: str):
        cfg = resolve_config("alter", "smoke", overrides=list(overrides))
        ctx = SimpleNamespace(cfg=cfg, output=lambda stage: {"folder": "renders"})
        return pairs_config(ctx)
    assert stage_cfg().recolour == ("hair",)  # the smoke preset's
    assert stage_cfg("pairs.recolour=hair,skin").recolour == ("hair", "skin")
    assert stage_cfg("pairs.recolour=hair", "pairs.recolour=none").recolour == ()
    with pytest.raises(AvatarToolError, match="pairs.recolour part 'hiar' is neither a generator part"):
        resolve_config("alter", "smoke", overrides=["pairs.recolour=hair,hiar"])
    with pytest.raises(AvatarToolError, match="names a part twice"):
        resolve_config("alter", "smoke", overrides=["pairs.recolour=hair,hair"])


def test_the_papers_strengths_name_parts_of_the_official_generator():
    from toolchain.generators.config import generator_preset
    from toolchain.production.augment import PAPER_STRENGTHS
    from toolchain.production.strengths import resolve_part_names
    assert resolve_part_names(generator_preset("official512"), PAPER_STRENGTHS) == {
        "background": 1.0, "hair": 0.3, "eyeglass": 0.06}
    assert resolve_part_names(generator_preset("official512"), {"clothes": 1.0}) == {"cloth": 1.0}
    assert resolve_part_names(generator_preset("tiny"), {"clothes": 1.0}) == {"clothes": 1.0}


def test_unknown_preset_is_refused():
    with pytest.raises(AvatarToolError, match="unknown build preset 'fast'"):
        resolve_config("alter", "fast")


def test_a_misspelt_preset_field_is_refused_with_the_closest_name():
    from toolchain.generators.train_real import train_preset
    with pytest.raises(AvatarToolError, match=r"training preset 'tiny' has no field 'r1_imgg' \(did you mean 'r1_img'\?\)"):
        train_preset("tiny", r1_imgg=0.1)
    with pytest.raises(AvatarToolError, match="has no field 'zzz'; its fields: iters, batch_size"):
        train_preset("tiny", zzz=1)
    assert train_preset("tiny", r1_img=0.1).r1_img == 0.1


# ----- the build --------------------------------------------------------------------------------
def test_build_makes_a_verified_bundle_and_a_complete_report(built):
    run, results, ui = built
    assert [r.name for r in results] == list(STAGE_NAMES)
    assert all(r.status == "ran" for r in results)
    for name in STAGE_NAMES:
        rec = read_record(run / name)
        assert rec["status"] == "complete" and rec["fingerprint"]
    from sdk_python.bundle import open_bundle
    bundle = Path(read_record(run / "export")["outputs"]["bundle"])
    with open_bundle(bundle) as b:
        checks = b.checks()
    assert checks and all(c.ok for c in checks)
    md = (run / "report.md").read_text()
    html = (run / "report.html").read_text()
    figures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(figures) >= 6                      # renders, dual-domain, pairs, curves, two eval grids
    for rel in figures:
        assert (run / rel).is_file(), rel
    assert html.count("data:image/png;base64,") == len(figures)
    latency = json.loads((run / "export" / "latency.json").read_text())
    assert latency["runs"] == 3 and {r["format"] for r in latency["rows"]} >= {"torch", "onnx"}
    assert all(r.get("p50_ms", 0) > 0 for r in latency["rows"]) and "Latency (batch 1" in md
    assert not re.search(r"(src|href)=['\"]https?://", html)   # self-contained: nothing from the network
    for model in ("swiftavatar", "baseline"):
        metrics = json.loads((run / "evaluate" / model / "eval.json").read_text())["metrics"]
        values = list(metrics["accuracy"].values()) + [metrics["render_distance"]["masked_l1"]["mean"]]
        assert values and all(math.isfinite(v) for v in values)
        assert f"| {model} |" in md or model in md
    # the fallbacks this machine takes are in the report, not only on the console
    assert "LPIPS" in md and "backbone" in md and "photo-proxy" in md
    assert any("backbone" in w for w in ui.warnings)
    assert "G_real: unlabelled photo proxy (32 px, " in md
    # where each estimator's answers go: both matrices in the stage's record, their picture in the report
    models = read_record(run / "evaluate")["outputs"]["models"]
    for model in ("swiftavatar", "baseline"):
        assert sum(map(sum, models[model]["confusion"]["glasses"]["counts"])) == \
            json.loads((run / "evaluate" / model / "eval.json").read_text())["n"]
    assert "evaluate/confusion.png" in figures and "Where the answers go" in md


def test_report_says_where_g_real_came_from():
    from toolchain.pipeline.report import g_real_origin
    assert g_real_origin({"source": "file", "generator": "/g/generator.safetensors", "size": 64}) == \
        "the given file /g/generator.safetensors (64 px)"
    assert g_real_origin({"source": "unlabelled photo proxy", "size": 32, "iters": 1000}) == \
        "unlabelled photo proxy (32 px, 1000 steps)"
    assert g_real_origin({"source": "unlabelled photo proxy", "size": 64, "iters": 4500, "precision": "bf16"}) == \
        "unlabelled photo proxy (64 px, 4500 steps, trained in bf16)"


def test_benchmarks_regenerate_every_table_from_the_build(built, detector_model, tmp_path):
    """`python -m benchmarks RUN --quick`: every table measured from the run alone, stamped, finite (the face
    models in the cache, as a machine that ran the SDK once has them: faces are counted)."""
    from benchmarks.__main__ import TABLES, run_tables
    run, _, _ = built
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    files = run_tables(run, quick=True, only=list(TABLES), out=tmp_path)
    for name in TABLES:
        data = json.loads((tmp_path / f"{name}.json").read_text())
        md = (tmp_path / f"{name}.md").read_text()
        assert data["quick"] is True and data["build"]["run"] == str(run.resolve()) and data["commit"]
        assert str(run) in md and "load average" in md and "--quick" in md
        assert md.count("\n|") >= 3, f"{name}: no table rows"
    numbers = [v for f in files if f.suffix == ".json" for v in _floats(json.loads(f.read_text()))]
    assert numbers and all(math.isfinite(v) for v in numbers)
    # a benchmark measures the run, it never changes it
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    assert json.loads((tmp_path / "gan_fit.json").read_text())["photos_faces"]["n"] > 0
    accuracy = json.loads((tmp_path / "accuracy.json").read_text())
    assert set(accuracy["confusion"]) == {"SwiftAvatar", "Baseline"} and (tmp_path / "accuracy_confusion.png").is_file()


def test_the_inversion_terms_benchmark_screens_mask_weights_on_the_build(built, detector_model, tmp_path):
    """`python -m benchmarks inversion-terms RUN`: one row per weight, measured from the run alone (the build's
    start codes, oracle and renders) without changing it; the part-map term is evaluated only when weighted."""
    from benchmarks.inversion_terms import main
    run, _, _ = built
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    main([str(run), "--n", "6", "--mask-weights", "0,2", "--out", str(tmp_path), "--name", "t"])
    data = json.loads((tmp_path / "inversion_terms_t.json").read_text())
    plain, guided = data["weights"]
    assert (plain["mask_weight"], guided["mask_weight"]) == (0.0, 2.0)
    assert plain["terms"]["semantic"] == 0 and guided["terms"]["semantic"] > 0
    assert guided["terms"]["loss"] > guided["terms"]["perceptual"]
    for w in data["weights"]:
        assert w["faces"]["n"] == 6 and 0 <= w["label_consistency"]["mean_accuracy"] <= 1
        assert 0 <= w["hair_iou"] <= 1
    md = (tmp_path / "inversion_terms_t.md").read_text()
    assert md.count("\n| 0 |") == 1 and md.count("\n| 2 |") == 1 and (tmp_path / "inversion_terms_t.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before
    with pytest.raises(SystemExit, match="--mask-weights"):
        main([str(run), "--mask-weights", "0,x", "--out", str(tmp_path)])


def test_face_counting_tables_say_so_without_the_face_models(built, tmp_path, monkeypatch):
    """A machine that never had the face models (fresh, offline): the fit is still measured, the face counts
    are marked as not measured with the reason, and nothing crashes."""
    from benchmarks.__main__ import run_tables
    from sdk_python.detector_models import MODELS
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "empty-cache"))
    for spec in MODELS.values():
        monkeypatch.delenv(spec.env_var, raising=False)
    run, _, _ = built
    run_tables(run, quick=True, only=["gan_fit", "face_blur"], out=tmp_path / "out")
    fit = json.loads((tmp_path / "out" / "gan_fit.json").read_text())
    assert fit["photos_faces"] is None and "short-range face detector" in fit["faces_not_measured"]
    assert all(cp["faces"] is None and math.isfinite(cp["image_l1"]) for cp in fit["checkpoints"])
    assert "not measured" in (tmp_path / "out" / "gan_fit.md").read_text()
    assert "no face models" in json.loads((tmp_path / "out" / "face_blur.json").read_text())["skipped"]


def test_sdk_latency_times_trained_sibling_builds_at_other_sizes(tmp_path):
    """A build of the same engine trained at 224 px beside the measured run is timed at 224 px (trained, its
    parity), not a random-weight export; other engines, unfinished exports and other sizes are not."""
    from benchmarks.suite.common import BuildRun
    from benchmarks.suite.sdk_latency import sized_builds
    from toolchain.atomic_io import atomic_write_json

    def fake_run(name, engine="alter", size=64, preset="smoke", export="complete"):
        cfg = resolve_config(engine, preset, overrides=[f"train.input_size={size}"])
        root = tmp_path / name
        (root / "export").mkdir(parents=True)
        atomic_write_json(root / "config.json", cfg.to_json())
        atomic_write_json(root / "export" / "stage.json", {"status": export, "outputs": {"bundle": "b"}})
        return root
    main = BuildRun.open(fake_run("build-alter-smoke"))
    fake_run("build-alter-cpu-224", size=224, preset="cpu")
    fake_run("build-alter-smoke-224", size=224)
    fake_run("build-morph-smoke-112", engine="morph", size=112)
    fake_run("build-alter-smoke-112-unfinished", size=112, export="running")
    fake_run("build-alter-smoke-96", size=96)
    found = sized_builds(main)
    assert {s: r.root.name for s, r in found.items()} == {224: "build-alter-smoke-224"}


def test_sdk_latency_judges_the_targets_on_the_224_px_int8_rows():
    """The table's target check reads the 224 px LiteRT int8 short-detector rows only: Hz and rest/inference per
    mode against 120/100 Hz and 1/1.5, and the VIDEO ceiling that inference plus the face mesh leave."""
    from benchmarks.suite.sdk_latency import target_check

    def row(mode, total, infer, mesh, size=224, precision="int8", detector="short"):
        return {"input_px": size, "backend": "litert", "precision": precision, "detector": detector, "mode": mode,
                "model": "trained: build-alter-smoke-224", "parity": "validated", "total": {50: total},
                "inference": {50: infer}, "landmarks": {50: mesh}}
    results = [row("video", 8.0, 5.0, 1.5), row("image", 12.5, 5.0, 1.5), row("video-detect", 11.0, 5.0, 1.5),
               row("video", 4.0, 3.0, 0.5, size=64), row("image", 30.0, 20.0, 1.5, precision="fp32"),
               row("image", 40.0, 5.0, 1.5, detector="full")]
    rec, note = target_check(results)
    assert rec["video"] == {"hz": 125.0, "hz_target": 120.0, "hz_met": True, "rest_over_inference": 0.6,
                            "rest_target": 1.0, "rest_met": True}
    assert rec["image"]["hz"] == 80.0 and not rec["image"]["hz_met"] and rec["image"]["rest_over_inference"] == 1.5
    assert rec["image"]["rest_met"] and rec["video_ceiling_hz"] == 153.8
    assert "VIDEO 125 Hz (>= 120: met)" in note and "IMAGE 80 Hz (>= 100: missed)" in note and "154 Hz" in note
    assert target_check(results[3:])[0] == {}      # no 224 px int8 rows: nothing judged, said so


def _floats(value):
    if isinstance(value, float):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _floats(v)
    elif isinstance(value, list):
        for v in value:
            yield from _floats(v)


def test_the_int8_float_layer_setting_reaches_the_export_and_refuses_typos(built):
    """export.int8_float_layers: the smoke preset tries only the logit layers in float, the cpu preset keeps the
    measured scan; a list of layer names passes through; a near-miss of a mode name is refused before any stage."""
    from types import SimpleNamespace

    from toolchain.pipeline.stages.export import export_options
    run, _, _ = built

    def float_layers(preset: str, *overrides: str):
        ctx = SimpleNamespace(cfg=resolve_config("alter", preset, overrides=list(overrides)),
                              output=lambda stage: read_record(run / stage)["outputs"])
        return export_options(ctx).int8_float_layers
    assert float_layers("smoke") == "outputs" and float_layers("cpu") == "auto"
    assert float_layers("smoke", "export.int8_float_layers=none") == "none"
    assert float_layers("smoke", "export.int8_float_layers=conv_a,logits_b") == ["conv_a", "logits_b"]
    with pytest.raises(AvatarToolError, match="did you mean 'outputs'"):
        resolve_config("alter", "smoke", overrides=["export.int8_float_layers=output"])


def test_rerun_skips_every_stage(built):
    run, _, _ = built
    ui = Recorder()
    results = build(tiny_config(**BUILT), run, ui=ui)
    assert [r.status for r in results] == ["skipped"] * len(STAGE_NAMES)   # nothing recomputed


def test_changed_setting_reruns_only_that_stage_and_what_reads_it(built, tmp_path):
    """A changed train setting reruns the estimator and what reads it, nothing before. The smoke preset's
    train.with_renders (on in ``built``) is checked on the same rerun: the estimator sees the pairs and the renders,
    for the samples the pairs alone would have given it; the Baseline matches what it saw; the report says so."""
    run, _, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert PRESETS["smoke"]["train.with_renders"] is True
    results = {r.name: r.status for r in build(tiny_config(**BUILT, **{"train.epochs": 3, "baseline.epochs": None}),
                                               copy)}
    # the Baseline reads the train section too (same estimator recipe); the renders and generators do not
    assert {k for k, v in results.items() if v == "skipped"} == {"render", "real_generator", "avatar_generator", "pairs",
                                                                  "heldout"}
    assert {k for k, v in results.items() if v == "ran"} == {"train", "pair_measures", "export", "baseline", "evaluate",
                                                             "report"}
    assert (copy / ".stale" / "train").is_dir()   # the old outputs were moved aside, not deleted
    trained = read_record(copy / "train")["outputs"]
    n_pairs = len(PairedDataset.open(read_record(copy / "pairs")["outputs"]["dataset"]))
    n_renders = TINY["render.n"]
    assert trained["with_renders"]["n"] == n_renders and trained["n_samples"] == n_pairs + n_renders
    # 3 epochs over the pairs alone, as epochs over pairs + renders
    assert trained["epochs"] == max(1, round(n_pairs * 3 / (n_pairs + n_renders))) != 3
    assert json.loads((copy / "train" / "run.json").read_text())["epochs_done"] == trained["epochs"]
    sources = json.loads((copy / "train" / "run.json").read_text())["sources"]
    assert [s["meta"]["kind"] for s in sources][1] == "engine-renders"
    base = read_record(copy / "baseline")["outputs"]
    assert base["n_samples"] == n_renders
    assert base["epochs"] == round(trained["n_samples"] * trained["epochs"] / n_renders)
    assert "train.with_renders" in (copy / "report.md").read_text()


def test_force_reruns_the_stage_and_everything_after(built, tmp_path):
    run, _, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    results = build(tiny_config(**BUILT), copy, force=["baseline"])
    status = {r.name: r.status for r in results}
    after = STAGE_NAMES[STAGE_NAMES.index("baseline"):]
    assert all(status[n] == "ran" for n in after) and all(status[n] == "skipped" for n in STAGE_NAMES if n not in after)
    with pytest.raises(AvatarToolError, match="--force nosuch: no such stage"):
        build(tiny_config(), copy, force=["nosuch"])


def test_until_stops_after_the_stage_and_the_build_without_it_goes_on(built, tmp_path):
    run, _, _ = built
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    # forced from evaluate, stopped before it: the forced stages it did not reach are moved aside, so the build
    # without --until reruns them instead of taking their old outputs as up to date
    results = build(tiny_config(**BUILT), copy, force=["evaluate"], stop_after="baseline")
    assert [r.name for r in results] == list(STAGE_NAMES[:STAGE_NAMES.index("baseline") + 1])
    assert all(r.status == "skipped" for r in results)
    assert not (copy / "evaluate").exists() and (copy / ".stale" / "evaluate").is_dir()
    results = build(tiny_config(**BUILT), copy)
    assert {r.name for r in results if r.status == "ran"} == {"evaluate", "report"}
    with pytest.raises(AvatarToolError, match="--until nosuch: no such stage"):
        build(tiny_config(), copy, stop_after="nosuch")
    proc = run_cli("build", "--engine", "alter", "--run", str(copy), "--until", "pair", "--no-calibrate")
    assert proc.returncode == 1 and "--until pair: no such stage" in proc.stderr


def test_a_second_build_into_the_same_folder_is_refused(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(AvatarToolError, match=rf"being built by another process \(pid {os.getpid()}\)"):
            build(tiny_config(), tmp_path)


def _chatty_stage(ctx):
    """Says things the way libraries do: a project warning (a finding), TensorFlow's deprecation notice (raised
    inside tensorflow), and converter lines written straight to fds 1 and 2 inside the export stage's capture."""
    import warnings
    from sdk_python.native_logs import redirect_native_output
    warnings.warn_explicit("LPIPS backbone weights not found; inverting with a fallback", UserWarning,
                           str(REPO / "toolchain" / "production" / "perceptual.py"), 81)
    warnings.warn_explicit("Warning: tf.lite.Interpreter is deprecated and is scheduled for deletion in TF 2.20.",
                           UserWarning, "/venv/lib/python3.11/site-packages/tensorflow/lite/python/interpreter.py", 457)
    with redirect_native_output(ctx.log_path):
        os.write(1, b"onnx2tf: saved_model output started\n")
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        print("progress line for the terminal", file=sys.stderr)
    return {"files": []}


def test_findings_reach_the_report_library_chatter_goes_to_the_stage_log(tmp_path, capfd):
    from toolchain.pipeline.report import write_report
    from toolchain.pipeline.runner import Stage, run_stages
    ui = Recorder()
    run_stages([Stage("export", "Export", _chatty_stage)], tiny_config(), tmp_path, ui=ui)
    rec = read_record(tmp_path / "export")
    assert rec["warnings"] == ["LPIPS backbone weights not found; inverting with a fallback"]
    assert ui.warnings == ["export: LPIPS backbone weights not found; inverting with a fallback"]
    log = (tmp_path / "export" / "stage.log").read_text()
    assert "tf.lite.Interpreter is deprecated" in log and "XNNPACK" in log and "onnx2tf:" in log
    out, err = capfd.readouterr()
    assert "XNNPACK" not in err and "onnx2tf:" not in out and "progress line for the terminal" in err
    info = write_report(tmp_path, tiny_config().to_json(), {"export": rec})
    md = (tmp_path / "report.md").read_text()
    assert info["warnings"] == ["export: LPIPS backbone weights not found; inverting with a fallback"]
    assert "deprecated" not in md and "export/stage.log" in md


# ----- engines ----------------------------------------------------------------------------------
def test_external_engine_without_masks_builds_a_bundle(tmp_path, monkeypatch):
    # the export adds the engine command to the trust list in the SDK cache: keep the user's own list untouched
    monkeypatch.setenv("SWIFTAVATAR_CACHE", str(tmp_path / "cache"))
    spec = f"cmd:{sys.executable} examples/external_engine/badge_engine.py --no-masks"
    proc = run_cli("build", "--engine", spec, "--run", str(tmp_path / "run"), "--no-calibrate",
                   *sum((["--set", s] for s in tiny_settings(**{"baseline.enabled": False, "pairs.mask_weight": 0.3})), []),
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "run"
    render = read_record(run / "render")
    assert render["outputs"]["masks"] is False
    assert any("draws no part masks" in w for w in render["warnings"])
    pairs = read_record(run / "pairs")   # the smoke preset's colour transfer needs masks: off, and said so
    assert pairs["outputs"]["recolour"] == [] and any("no colour transfer" in w for w in pairs["warnings"])
    # so does the cpu preset's part-map term
    assert pairs["outputs"]["mask_weight"] == 0 and any("no part-map term" in w for w in pairs["warnings"])
    heldout = read_record(run / "heldout")
    assert heldout["outputs"]["kind"] == "held-out renders"
    bundle = Path(read_record(run / "export")["outputs"]["bundle"])
    assert "bundle:" in proc.stdout and bundle.is_file()
    from sdk_python.bundle import open_bundle
    with open_bundle(bundle) as b:   # the bundle knows how to start its engine again (predict --render)
        assert b.manifest["engine_spec"]["spec"] == spec and b.manifest["engine_spec"]["cwd"] == str(REPO)
    assert spec in (tmp_path / "cache" / "trusted-engines.json").read_text()


# ----- kill -9 and resume -----------------------------------------------------------------------
def test_kill9_during_pairs_then_the_same_command_resumes_there(built, tmp_path):
    run, _, _ = built
    copy = tmp_path / "run"
    copy.mkdir()
    for stage in ("render", "real_generator", "avatar_generator"):   # finished stages, as a user's run would have
        shutil.copytree(run / stage, copy / stage)
    # pairs slow enough to be caught mid-way: 40 sources, 5 shards of 8
    settings = sum((["--set", s] for s in tiny_settings(**{"pairs.steps": 40, "pairs.chunk": 8,
                                                            "baseline.enabled": False})), [])
    args = [sys.executable, "-m", "toolchain.cli.main", "build", "--engine", "alter", "--run", str(copy),
            "--no-calibrate", "--until", "pairs", *settings]
    env = dict(os.environ, COLUMNS="200", NO_COLOR="1")
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    index = copy / "pairs" / "index.json"
    try:
        deadline = time.time() + 240
        while time.time() < deadline:
            if index.exists() and json.loads(index.read_text())["meta"]["progress"]["sources_done"] >= 8:
                break
            assert proc.poll() is None, "the build ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no pairs shard sealed in time")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    killed_at = json.loads(index.read_text())["meta"]["progress"]["sources_done"]
    assert 8 <= killed_at < 40
    assert read_record(copy / "pairs")["status"] == "running"
    done = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"render\s+skipped", done.stderr) and re.search(r"pairs\s+resumed", done.stderr)
    assert "stopped after pairs (--until)" in done.stdout and not (copy / "train").exists()
    rec = read_record(copy / "pairs")
    assert rec["status"] == "complete" and rec["resumed"] is True
    from toolchain.data.paired_dataset import PairedDataset
    ds = PairedDataset.open(copy / "pairs")
    keys = [(p["source"], p["aug"]) for p in ds.provenance]
    assert len(keys) == len(set(keys)) == 40 * 2

"""A short calibration before a build: time a few units of each stage on this machine (a handful of
renders, one regularisation cycle of GAN steps and 4 inversion steps, each timed beyond a shorter run, two
estimator steps) and scale them to the configured budget. Estimates, not promises: later stages depend on data
sizes known only once earlier stages ran (e.g. how many sources the quality filter drops)."""
from __future__ import annotations

import functools
import math
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Collection, Sequence

import numpy as np

from .config import BuildConfig

if TYPE_CHECKING:
    from ..generators.config import GeneratorConfig

# Measured on the 2-core development machine (see DEPENDENCY-FACTS and benchmarks/results/export_latency_*):
# onnx2tf needs tens of seconds per TFLite precision; CoreML conversion about half a minute per precision.
EXPORT_SECONDS = {"onnx": 5.0, "tflite": 35.0, "coreml": 30.0}


def _timed(fn: Callable[[], Any], repeat: int = 2) -> float:
    fn()  # warm-up: first calls pay allocation and kernel selection
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def _marginal(run: Callable[[int], Any], short: int, long: int) -> float:
    """Seconds per unit of ``run(n)`` (n units in one call), from the difference of a ``long`` and a ``short``
    call after a warm-up call: what every call pays once (building models, the first step's regularisers,
    the closing checkpoint) cancels, which two-unit timings counted in full (the cpu preset's estimate said
    77 min for a G_real that trained in 40)."""
    run(short)
    t0 = time.perf_counter()
    run(short)
    t1 = time.perf_counter()
    run(long)
    t2 = time.perf_counter()
    return max((t2 - t1) - (t1 - t0), 0.0) / (long - short)


def _render_seconds(cfg: BuildConfig) -> float:
    from ..engines.registry import create_engine
    with create_engine(cfg.engine, timeout_s=cfg.render.engine_timeout) as engine:
        vectors = engine.sample(4, 12345)
        per = _timed(lambda: engine.render(vectors, size=cfg.render.size, masks=True), 1) / 4
    return per * cfg.render.n / max(1, cfg.render.workers)


def _proxy_seconds(n: int, size: int) -> float:
    from ..proxy.eval_set import write_proxy_set
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_proxy_set("alter", Path(tmp) / "p", n=3, seed=0, size=size, role="unlabelled", sheet_count=0)
        return (time.perf_counter() - t0) / 3 * n


def build_generator_config(cfg: BuildConfig) -> "GeneratorConfig":
    """The generator the build's G_avatar and inversion will run: a given G_real file's own configuration (its
    size decides every later stage's cost), else the configured preset."""
    from ..generators.config import GeneratorConfig, generator_preset
    if cfg.real.generator:
        from ..generators.io import load_generator, read_meta
        path = Path(cfg.real.generator)
        if path.suffix == ".safetensors":
            return GeneratorConfig.from_json(read_meta(path)["config"])
        return load_generator(path)[0].cfg
    return generator_preset(cfg.real.generator_config)


def _gan_step_seconds(cfg: BuildConfig) -> tuple[float, int, int]:
    import torch
    from ..generators.train_real import run_gan, train_preset
    gcfg = build_generator_config(cfg)
    tcfg = train_preset(cfg.real.train_preset, iters=64, batch_size=cfg.real.batch_size, precision=cfg.real.precision)
    real_iters = train_preset(cfg.real.train_preset, iters=cfg.real.iters).iters
    avatar_iters = train_preset(cfg.avatar.train_preset, iters=cfg.avatar.iters).iters
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (max(tcfg.batch_size, 4), gcfg.size, gcfg.size, 3), dtype=np.uint8)
    masks = torch.from_numpy(rng.integers(0, gcfg.n_parts, (len(images), gcfg.size, gcfg.size))).long().numpy()
    # steps 2..17 hold the regularisers at their training cadence: R1 once in 16 steps, path length once in 4
    window = max(tcfg.d_reg_every, tcfg.g_reg_every)
    with tempfile.TemporaryDirectory() as tmp:
        runs = iter(range(3))

        def train(n: int) -> None:
            run_gan(tmp, Path(tmp) / f"g{next(runs)}", gcfg, tcfg, device=cfg.device, images=images, masks=masks,
                    stop_after=n)
        step = _marginal(train, 2, 2 + window)
    return step, real_iters, avatar_iters


def _inversion_seconds(cfg: BuildConfig) -> float:
    import torch
    from ..generators.generator import SemanticGenerator
    from ..production.inversion import InversionConfig, invert, inversion_precision
    from ..production.perceptual import make_perceptual
    gcfg = build_generator_config(cfg)
    g = SemanticGenerator(gcfg).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the missing-LPIPS warning belongs to the pairs stage, not here
        perceptual, _ = make_perceptual(cfg.pairs.lpips_weights)
    b = cfg.pairs.batch
    y = torch.zeros(b, 3, gcfg.size, gcfg.size)
    w = torch.zeros(b, gcfg.n_latent, gcfg.style_dim)
    icfg = InversionConfig(batch_size=b, precision=inversion_precision(cfg.pairs.precision))
    step = _marginal(lambda n: invert(g, perceptual, y, w, replace(icfg, steps=n)), 2, 6)
    n = cfg.pairs.n or cfg.render.n
    return step * math.ceil(n / b) * cfg.pairs.steps


def _train_seconds(cfg: BuildConfig, samples: int, epochs: int | None) -> float:
    import torch
    from ..engines.alter import ALTER_SCHEMA
    from ..estimator.model import AvatarEstimator, EstimatorConfig
    from ..estimator.small_map_conv import small_map_weight_grads
    from ..estimator.train import preset
    tc = preset(cfg.train.preset, epochs=epochs or cfg.train.epochs, batch_size=cfg.train.batch_size,
                input_size=cfg.train.input_size)
    model = AvatarEstimator(EstimatorConfig(input_size=tc.input_size, schema=ALTER_SCHEMA.to_json()))
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.zeros(tc.batch_size, 3, tc.input_size, tc.input_size)

    def step() -> None:
        out = model(x)
        loss = sum(v.float().mean() for v in out.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with small_map_weight_grads(model):   # as training does
        per_step = _timed(step, 2)
    return per_step * math.ceil(samples * 0.9 / tc.batch_size) * tc.epochs * 1.15  # + validation passes


# checking and restoring a cached face64 G_real: 1.8 s on the 2-core machine (the stage took 36 s, drawing its
# 3,000 photos included, which _proxy_seconds counts apart)
RESTORE_SECONDS = 5.0
# the pair measures besides their oracle's training: faces counted in 4 x 200 images and the oracle's reads of the
# pairs and the held-out set, ~35 s on the 2-core machine (a reduced alter cpu build's stage: 171 s, 134 of them the
# oracle's 4 epochs)
PAIR_MEASURE_SECONDS = 35.0
# scoring one kept snapshot's faces (real.pick=faces): 18 s for 9 snapshots of face64, 128 samples each
PICK_SECONDS_PER_SNAPSHOT = 2.0


def cached_g_real(cfg: BuildConfig, force: Sequence[str] = ()) -> Path | None:
    """The cache entry the build's G_real will most likely come from (None: it trains, or takes a file)."""
    if cfg.real.generator or "real_generator" in force:
        return None
    from .stages.real_generator import likely_cached
    try:
        return likely_cached(cfg)
    except Exception:  # noqa: BLE001 - an estimate must never stop a build
        return None


def _pick_seconds(cfg: BuildConfig, iters: int) -> float:
    if cfg.real.pick != "faces" or not cfg.real.keep_every:
        return 0.0
    return PICK_SECONDS_PER_SNAPSHOT * (iters // cfg.real.keep_every + (iters % cfg.real.keep_every > 0))


def calibrate_build(cfg: BuildConfig, cached: Path | None = None, done: Collection[str] = ()) -> dict[str, float]:
    """Seconds per stage (a stage whose calibration failed is left out). ``cached`` is the cache entry G_real
    will most likely be restored from (``cached_g_real``): its training is counted as a restore. Stages in
    ``done`` (``runner.finished_stages``: a resumed build skips them) count as 0 and are not timed."""
    est: dict[str, float] = {}
    n = cfg.pairs.n or cfg.render.n

    def attempt(name: str, fn: Callable[[], float]) -> None:
        if name in done:
            est[name] = 0.0
            return
        try:
            est[name] = float(fn())
        except Exception:  # noqa: BLE001 - an estimate must never stop a build
            pass
    attempt("render", lambda: _render_seconds(cfg))
    gan = functools.cache(lambda: _gan_step_seconds(cfg))   # (seconds a step, G_real steps, G_avatar steps)

    def real_generator_seconds() -> float:
        if cfg.real.generator:
            return 0.0
        step, iters, _ = gan()
        proxy = 0.0 if cfg.real.images else _proxy_seconds(cfg.real.proxy_n, cfg.real.proxy_size)
        return (RESTORE_SECONDS if cached else step * iters) + _pick_seconds(cfg, iters) + proxy
    attempt("real_generator", real_generator_seconds)
    attempt("avatar_generator", lambda: gan()[0] * gan()[2] * 1.3)  # + the frozen G_real's colour-loss forward
    attempt("pairs", lambda: _inversion_seconds(cfg))
    def train_seconds() -> float:
        return _train_seconds(cfg, n * (1 + cfg.pairs.k), None)
    attempt("train", train_seconds)
    if cfg.baseline.enabled:
        # unless its epochs are set, the Baseline sees as many samples as the estimator: same time
        attempt("baseline", lambda: _train_seconds(cfg, cfg.render.n, cfg.baseline.epochs) if cfg.baseline.epochs
                else est.get("train") or train_seconds())
    attempt("heldout", lambda: _proxy_seconds(cfg.eval.n, cfg.eval.size))
    # the oracle (the estimator's recipe on render.n labelled photos drawn here) only with the photo-proxy held-out set
    attempt("pair_measures", lambda: PAIR_MEASURE_SECONDS + (0.0 if cfg.eval.set else
            _proxy_seconds(cfg.render.n, cfg.render.size) + _train_seconds(cfg, cfg.render.n, None)))
    fmts = [f.split(":")[0] for f in cfg.export.formats.split(",") if f.strip()]
    attempt("export", lambda: sum(EXPORT_SECONDS.get(f, 10.0) for f in fmts))

    def evaluate_seconds() -> float:
        per_render = (est.get("render") or _render_seconds(cfg)) / max(1, cfg.render.n) * max(1, cfg.render.workers)
        return per_render * 2 * cfg.eval.n * (2 if cfg.baseline.enabled else 1) + 10
    attempt("evaluate", evaluate_seconds)
    attempt("report", lambda: 5.0)
    return est


def opening_estimate(cfg: BuildConfig, run_dir: str | Path, force: Sequence[str] = (),
                     until: str | None = None) -> tuple[dict[str, float], str]:
    """What ``avatartool build`` prints before it starts: seconds per stage and the line that says them, for a
    build into ``run_dir`` (stages it would skip as done count as 0; a likely G_real cache hit as a restore;
    stages after ``until`` are neither timed nor named)."""
    from .build import STAGES
    from .runner import finished_stages, stages_after
    later = stages_after(STAGES, until)
    unread = ""
    try:
        done = finished_stages(STAGES, cfg, run_dir, force)
    except Exception as exc:  # noqa: BLE001 - an estimate must never stop a build
        done = set()
        unread = (f" (the run folder's finished stages could not be read — {type(exc).__name__}: {exc} — so every "
                  "stage is timed)")
    cached = None if "real_generator" in done else cached_g_real(cfg, force)
    est = {k: v for k, v in calibrate_build(cfg, cached, done | later).items() if k not in later}
    return est, describe(cfg, est, cached, done) + unread


def describe(cfg: BuildConfig, est: dict[str, float], cached: Path | None = None, done: Collection[str] = ()) -> str:
    import torch
    from ..torch_utils import select_device
    dev = select_device(cfg.device)
    where = f"{dev.type}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else
                             f" ({torch.get_num_threads()} threads)")
    notes = {"real_generator": f" (cached G_real {cached.name})"} if cached else {}
    parts = ", ".join(f"{k} done" if k in done else f"{k} ~{_human(v)}{notes.get(k, '')}" for k, v in est.items())
    total = sum(est.values())
    left = " left" if done else ""
    return f"build '{cfg.engine}' preset {cfg.preset} on {where}; estimated: {parts}; total ~{_human(total)}{left}"


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"

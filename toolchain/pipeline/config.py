"""The configuration of one ``avatartool build``: a dataclass per stage, three presets, and overrides
from a YAML file or ``--set section.field=value`` on the command line.

Presets:
* ``smoke`` — the README's main command: every stage end to end on a 2-core CPU inside the 15-minute
  budget on a CPU with native bf16 (32 px tiny generators, G_real 1000 steps on 800 photos drawn at 128 px, 64 px
  renders, 800 renders, short schedules, the estimator on the pairs and the renders). It proves the pipeline and
  shows the method's direction, not its ceiling.
* ``cpu`` — the largest build one 2-core machine makes in about 2 hours (more renders and steps; G_real, the
  64 px ``face64`` generator for 5000 steps with a learning-rate drop, takes the largest share and is cached for
  every later build).
* ``paper`` — the paper's settings for GPU machines: 512 px, 10k vectors, 10 augmentations, 200
  inversion steps for every sample (no early stop), 100 estimator epochs.

The resolved configuration is saved in the run directory (``config.json``); every stage's fingerprint
is taken over its own section plus the sections it reads, so changing ``train.epochs`` reruns
training and what follows it, not the renders.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Optional

from ..errors import AvatarToolError
from ..precision import check_precision
from ..production.strengths import (PAPER_STRENGTHS_TEXT, parse_recolour, parse_strengths, resolve_part_names,
                                     resolve_recolour_parts)
from ..render.job import DEFAULT_BATCH_SIZE, DEFAULT_ENGINE_TIMEOUT_S, DEFAULT_WORKERS


@dataclass
class RenderStage:
    n: int = 10_000                 # avatar vectors sampled and rendered
    size: int = 256
    seed: int = 0
    workers: int = DEFAULT_WORKERS  # the engine options share their defaults with every rendering command
    batch_size: int = DEFAULT_BATCH_SIZE
    engine_timeout: float = DEFAULT_ENGINE_TIMEOUT_S


REAL_PICKS = ("faces", "last")


@dataclass
class RealStage:
    """Where G_real comes from: a generator file, a folder of face photos with part masks, or (offline
    default) a generator trained here on the unlabelled photo proxy."""
    generator: Optional[str] = None          # our generator.safetensors or the released SemanticStyleGAN .pt
    images: Optional[str] = None             # image+mask folder, or CelebAMask-HQ's own layout
    proxy_engine: str = "alter"              # which built-in face painter draws the proxy photos
    proxy_n: int = 2000
    proxy_seed: int = 0
    proxy_size: int = 64                     # drawn at this size, box-filtered to the generator's: the painter's
                                             # grain at 64 px hides faces (finder: 16 % at 64 px vs 75 % drawn at 128)
    generator_config: str = "tiny"           # toolchain/generators/config.py presets
    train_preset: str = "tiny"               # toolchain/generators/train_real.py presets
    iters: Optional[int] = None
    batch_size: Optional[int] = None
    # the learning rate and its step drop (GANTrainConfig.lr / lr_drop_at / lr_after; default: the preset's)
    lr: Optional[float] = None
    lr_drop_at: Optional[int] = None
    lr_after: Optional[float] = None
    # DiffAugment ops on every input of G_real's discriminator, real and generated (GANTrainConfig.augment), e.g.
    # "translation,cutout"; "plain" for none ("none", as for every optional setting, means the training preset's)
    augment: Optional[str] = None
    precision: str = "auto"                  # auto / bf16 / fp32 (toolchain/precision.py)
    keep_every: Optional[int] = None         # keep G_ema every N steps (default: the training preset's, 0 = none)
    # which weights become G_real: "last" = the final ones; "faces" = the kept snapshot whose samples the SDK's
    # face finder accepts most often (its own sample seed, not the pair measures'). "faces" is not the default:
    # on the cpu alter build it doubled G_real's faces (20/200 vs 10/200) and led on accuracy (0.328 vs 0.311), but
    # halved the pairs' faces (20/200 vs 42/200) and lost on render distance (0.1463 vs 0.1251; README, "Picking
    # G_real's snapshot by its faces")
    pick: str = "last"                       # one of REAL_PICKS
    pick_n: int = 128                        # samples per kept snapshot for the "faces" pick


@dataclass
class AvatarStage:
    """G_avatar: G_real finetuned on the renders with the StyleGAN2 losses and the colour loss."""
    train_preset: str = "tiny"
    iters: Optional[int] = None
    batch_size: Optional[int] = None
    colour_weight: float = 1.0
    freeze_local: bool = False
    precision: str = "auto"                  # auto / bf16 / fp32 (toolchain/precision.py)


@dataclass
class PairsStage:
    n: Optional[int] = None                  # source renders inverted (default: all renders)
    k: int = 10                              # augmented copies per inverted code
    augment: str = PAPER_STRENGTHS_TEXT      # PART=λ of the semantic augmentation (paper Eq. 7), by generator part or
                                             # mask label; e.g. add clothes=1 to resample the shirt as the background is
    steps: int = 200
    batch: int = 64                          # inversion slots
    chunk: int = 32                          # sources per shard
    early_stop: bool = False                 # the paper runs every sample its full steps
    latent_anchor: str = "start"             # regulariser pulls to the start code ("start") or w_mean ("mean")
    init: str = "modified"
    init_samples: int = 10_000               # mapped samples behind w_mean and the start codes (paper: 10^4)
    init_calib_steps: int = 60
    max_loss: Optional[float] = None         # quality filter; default depends on the perceptual loss used
    lpips_weights: Optional[str] = None
    # the generator pass of each inversion step: auto = bf16 autocast on CPUs with native bf16 (toolchain/precision.py);
    # on the AMD test machine 2.0x faster than fp32 at the same final loss (README, "bf16 inversion")
    precision: str = "auto"
    # the part-map term of the inversion (ours): cross-entropy of G_avatar's part probabilities against the render's
    # mask, weighted so; 0 = the paper's image-only inversion. Needs an engine that draws masks
    mask_weight: float = 0.0
    # parts whose mean colour every realistic face takes from its render, e.g. "hair,skin" (ours, not the paper's;
    # toolchain/production/recolour.py); None: off. Needs an engine that draws masks
    recolour: Optional[str] = None


@dataclass
class TrainStage:
    preset: str = "paper"                    # toolchain/estimator/train.py presets
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    input_size: Optional[int] = None
    sharpen: Optional[float] = None          # largest random unsharp-mask amount per training image (all estimators)
    # the training seed of every estimator of the build (the method's, the Baseline's, the oracle's): weight init,
    # validation split, data order and augmentation; default: the preset's (0). One seed's accuracy swings by
    # 0.02-0.05 per parameter, so a lead is judged over several (`python -m benchmarks ablation --as-is --set train.seed=S`)
    seed: Optional[int] = None
    # the method's estimator (and the ablation's pair rows) also train on the build's renders with their vectors, at
    # the samples-seen budget of the pairs alone (ours, not the paper's: the paper trains on the pairs only)
    with_renders: bool = False
    backbone_weights: Optional[str] = None


DEFAULT_EXPORT_FORMATS = "onnx,tflite,coreml,torch"


@dataclass
class ExportStage:
    formats: str = DEFAULT_EXPORT_FORMATS
    calibration_images: int = 300
    #: full-integer int8's float layers: auto (measured scan), outputs (the logit layers only), none, or a comma list
    int8_float_layers: str = "auto"
    face_detector: Optional[str] = None
    fetch_detector: bool = True
    #: timed runs per model for latency.json and the report; 0 skips the timing (the suite's tiny builds: it
    #: starts a torch process of its own, ~4 s a build), said in both
    latency_runs: int = 50


@dataclass
class EvalStage:
    """The held-out evaluation set: a labelled photo proxy drawn here (its vectors come from a seed
    stream no render uses), or a user's set (images + labels.jsonl + set.json)."""
    set: Optional[str] = None
    n: int = 300
    seed: int = 0
    size: int = 128
    lpips_weights: Optional[str] = None
    measure_n: int = 200                     # images per face-likeness share (pair_measures stage)


@dataclass
class BaselineStage:
    """The paper's Baseline (the estimator trained on the renders themselves), for the report's comparison."""
    enabled: bool = True
    epochs: Optional[int] = None             # default: the estimator's epochs


@dataclass
class BuildConfig:
    engine: str = "alter"
    preset: str = "smoke"
    device: Optional[str] = None             # cpu / cuda (default: cuda when available)
    threads: Optional[int] = None            # torch CPU threads
    render: RenderStage = field(default_factory=RenderStage)
    real: RealStage = field(default_factory=RealStage)
    avatar: AvatarStage = field(default_factory=AvatarStage)
    pairs: PairsStage = field(default_factory=PairsStage)
    train: TrainStage = field(default_factory=TrainStage)
    export: ExportStage = field(default_factory=ExportStage)
    eval: EvalStage = field(default_factory=EvalStage)
    baseline: BaselineStage = field(default_factory=BaselineStage)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "BuildConfig":
        cfg = cls()
        return apply_overrides(cfg, flatten_settings(data))

    def section(self, name: str) -> dict[str, Any]:
        return asdict(getattr(self, name))


PRESETS: dict[str, dict[str, Any]] = {
    "smoke": {
        "render.n": 800, "render.size": 64, "render.workers": 0,
        # the official regularisers, not the small-data recipe ("tiny"): the small-data recipe's G_real collapsed
        # to one face by step 1000; against the Baseline its pairs gave alter -8.8 % render distance / accuracy
        # 0.234 (official: -29.0 % / 0.325) and morph -10.8 % / 0.234 (official: -3.2 % / 0.266), 2026-12-03
        "real.proxy_n": 800, "real.proxy_size": 128, "real.generator_config": "tiny",
        "real.train_preset": "tiny_official", "real.iters": 1000,
        "avatar.train_preset": "tiny_official", "avatar.iters": 250,
        "pairs.k": 2, "pairs.steps": 30, "pairs.batch": 32, "pairs.chunk": 100,
        # float32 inversion: bf16 saves 14 s of ~70 here, and over three render seeds of alter it left the method
        # 0.017 lower in accuracy (0.306 vs 0.323; worse in 2 of 3) at the same pair losses (README, "bf16 inversion")
        "pairs.precision": "fp32",
        # the colour transfer on hair only: over three render seeds alter's accuracy +0.025 (ahead of the Baseline in
        # 3 of 3, was 2) and render distance lower in 3 of 3; morph +0.005, render distance 3 % higher. With skin too,
        # G_real's 32 px skin blob painted over beards and eyes: render distance worse in 6 of 6 (README, "The cpu
        # preset on morph as it stands, and the transfer at smoke")
        "pairs.recolour": "hair",
        # the estimator on the pairs and the renders together, at the pairs' budget (ours): on the Zen 3 machine of
        # 2026-12-07, over three render seeds, accuracy +0.044 on alter and +0.040 on morph (3 of 3 each), ahead of the
        # Baseline in 3 of 3 on both (without: 2 of 3 and 1 of 3) (README, "The pairs and the renders together")
        "train.with_renders": True,
        "train.preset": "small", "train.epochs": 5, "train.input_size": 64,
        "export.formats": "onnx,tflite:fp32,tflite:int8,torch", "export.calibration_images": 300,
        # the int8 float-layer scan took 3 of the export's 5.5 min on the Zen 3 machine (2026-12-07) and on every alter
        # build measured chose the logit layers that "outputs" tries first (README, "The smoke export")
        "export.int8_float_layers": "outputs",
        "eval.n": 200, "eval.size": 64,
    },
    "cpu": {
        "render.n": 2000, "render.size": 64, "render.workers": 2,
        # G_real gets the largest share of the 2 hours and is cached for every later cpu build. The 64 px "face64"
        # generator (1.8-2.0 it/s in bf16, 41-47 min): at a constant lr 0.002 for 4,500 steps it drew faces in 6-25 % of
        # the photos' own rate; at 0.004 for 2,000 steps and 0.002 after, 5,000 steps, the full alter build's pairs
        # found 58 % of the ceiling (27 % at the constant rate) and its estimator 0.323 vs the Baseline's 0.273
        # (0.302 at the constant rate), render distance -51.3 % (-51.6 %); on morph pairs' faces 56 % (33 %), accuracy
        # 0.271 vs 0.237 (0.277), -43.4 % (-40.6 %) (README, "The lr-drop G_real in the cpu preset"). At 64 px an
        # inversion step costs ~3x the 32 px one, so 50 steps, not 100 (in bf16, pairs.precision=auto: the morph
        # build's pairs in 1,739 s instead of 3,387, the build ~1 h 50 min; smoke keeps fp32). G_ema is kept every
        # 500 steps (20 MB), so `--set real.pick=faces` can choose among them on a cached G_real in ~20 s
        "real.proxy_n": 3000, "real.proxy_size": 128, "real.generator_config": "face64",
        "real.train_preset": "tiny_official", "real.iters": 5000, "real.keep_every": 500,
        "real.lr": 0.004, "real.lr_drop_at": 2000, "real.lr_after": 0.002,
        "avatar.train_preset": "tiny_official", "avatar.iters": 1200,
        "pairs.k": 3, "pairs.steps": 50, "pairs.batch": 64, "pairs.chunk": 100,
        # the part-map term: on the morph build's 200 first renders hair IoU 0.54 -> 0.77, pairs' faces 80 -> 94/200,
        # label consistency 0.306 -> 0.321 (ceiling 0.320), same seconds; the build: render distance -48.9 % (-44.9 %),
        # accuracy 0.275 (0.274). At smoke's 32 px it moved nothing the oracle reads, so smoke keeps 0 (README,
        # "The inversion's part-map term")
        "pairs.mask_weight": 0.3,
        # part colour transfer: G_real cannot draw pink or grey hair, so a "pink" label sat on blond hair; on the alter
        # build's own pairs (same inversions) accuracy 0.305 -> 0.367, render distance -50.7 % -> -55.6 %, hair colour
        # 0.297 -> 0.523, label consistency 87 % -> 93 % (README, "Part colour transfer")
        "pairs.recolour": "hair,skin",
        # sharpened training images: the generated faces are softer than photos, and the estimator read a photo's
        # crisp eyes as glasses; with sharpening the method led the Baseline in 3 of 3 training seeds on a reduced
        # build, and the full morph ablation closed 20 % of the gap to the oracle (2 % without); on the full alter
        # one it closed 13 % (24 % without), render distance -51.6 % (-42.0 %) (README, "sharpened training images")
        "train.preset": "small", "train.epochs": 4, "train.input_size": 112, "train.sharpen": 2.0,
        "eval.n": 300, "eval.size": 128,
    },
    "paper": {
        "render.n": 10_000, "render.size": 512, "render.workers": 8,
        "real.proxy_n": 30_000, "real.proxy_size": 512, "real.generator_config": "official512",
        "real.train_preset": "paper",
        "avatar.train_preset": "paper", "avatar.iters": 20_000,
        "pairs.k": 10, "pairs.steps": 200, "pairs.batch": 64, "pairs.chunk": 64,
        "train.preset": "paper",
        "eval.n": 1000, "eval.size": 256,
    },
}


def resolve_config(engine: str, preset: str = "smoke", yaml_file: str | Path | None = None,
                   overrides: list[str] | None = None, **explicit: Any) -> BuildConfig:
    """The preset, then the YAML file, then ``--set`` overrides, then explicit options (CLI flags)."""
    if preset not in PRESETS:
        raise AvatarToolError(f"unknown build preset '{preset}' (choose from {', '.join(PRESETS)})")
    cfg = apply_overrides(BuildConfig(engine=engine, preset=preset), PRESETS[preset])
    if yaml_file is not None:
        cfg = apply_overrides(cfg, flatten_settings(_read_yaml(Path(yaml_file))))
    if overrides:
        cfg = apply_overrides(cfg, parse_settings(overrides))
    cfg = apply_overrides(cfg, {k: v for k, v in explicit.items() if v is not None})
    cfg.engine = engine
    check_config(cfg)
    return cfg


def real_augment_policy(setting: Optional[str]) -> Optional[str]:
    """``real.augment`` as a DiffAugment policy: ``None`` (the training preset's), ``""`` for "plain", else as given."""
    if setting is None:
        return None
    return "" if str(setting).strip().lower() == "plain" else str(setting)


def check_config(cfg: BuildConfig) -> None:
    """Settings whose form can be checked before any stage runs (a typo should not cost a G_real training)."""
    check_precision(cfg.real.precision, key="real.precision")
    check_precision(cfg.avatar.precision, key="avatar.precision")
    check_precision(cfg.pairs.precision, key="pairs.precision")
    if cfg.real.augment is not None:
        from ..generators.diffaugment import parse_policy
        try:
            parse_policy(real_augment_policy(cfg.real.augment))
        except ValueError as exc:
            raise AvatarToolError(f"real.augment={cfg.real.augment!r}: {exc}, comma-separated, or 'plain' for none") from None
    if cfg.real.pick not in REAL_PICKS:
        raise AvatarToolError(f"real.pick={cfg.real.pick!r} is not a choice: use one of {', '.join(REAL_PICKS)}")
    strengths = parse_strengths(cfg.pairs.augment, key="pairs.augment")
    if cfg.pairs.k > 0 and not any(strengths.values()):
        raise AvatarToolError(f"pairs.augment names no part to perturb, so the pairs.k={cfg.pairs.k} augmented copies "
                              "would repeat their source; set pairs.k=0 or name parts, e.g. "
                              f"--set pairs.augment={PAPER_STRENGTHS_TEXT}")
    recolour = parse_recolour(cfg.pairs.recolour)
    from converters.export import parse_int8_float_layers
    parse_int8_float_layers(cfg.export.int8_float_layers, key="export.int8_float_layers")
    if cfg.real.generator is None:  # a given generator file is checked when the pairs stage loads it
        from ..generators.config import generator_preset
        gen_cfg = generator_preset(cfg.real.generator_config)
        try:
            resolve_part_names(gen_cfg, strengths)
        except AvatarToolError as exc:
            raise AvatarToolError(f"pairs.augment: {exc}") from None
        resolve_recolour_parts(gen_cfg, recolour)


def parse_settings(items: list[str], form: str = "SECTION.FIELD=VALUE", example: str = "pairs.k=3") -> dict[str, Any]:
    """``--set`` items -> ``{key: value}``, each value read as a YAML scalar (numbers, booleans, else text).

    Raises:
        AvatarToolError: an item is not ``KEY=VALUE``; the message shows ``form`` and ``example``.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise AvatarToolError(f"--set {item!r}: expected {form}, e.g. --set {example}")
        out[key.strip()] = _parse_scalar(value.strip())
    return out


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml
    if not path.is_file():
        raise AvatarToolError(f"--config {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise AvatarToolError(f"--config {path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise AvatarToolError(f"--config {path}: expected a mapping of sections (render:, pairs:, ...)")
    return data


def flatten_settings(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested configuration as ``SECTION.FIELD`` keys, the form ``--set`` takes."""
    flat: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            flat.update(flatten_settings(v, key + "."))
        else:
            flat[key] = v
    return flat


def _parse_scalar(text: str) -> Any:
    import yaml
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _field_type(owner: Any, name: str) -> Any:
    hints = typing.get_type_hints(type(owner))
    return hints[name]


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif annotation is str:
        return str(value)
    raise AvatarToolError(f"{key}: expected {getattr(annotation, '__name__', annotation)}, got {value!r}")


def apply_overrides(cfg: BuildConfig, values: dict[str, Any]) -> BuildConfig:
    """A copy of ``cfg`` with ``{"section.field": value}`` (or top-level ``"engine"``) applied, type-checked."""
    cfg = dataclasses.replace(cfg, **{f.name: replace(getattr(cfg, f.name)) for f in fields(cfg)
                                      if is_dataclass(getattr(cfg, f.name))})
    for key, value in values.items():
        parts = key.split(".")
        if len(parts) == 1:
            if parts[0] not in {f.name for f in fields(cfg)} or is_dataclass(getattr(cfg, parts[0])):
                raise AvatarToolError(f"unknown build setting '{key}' ({_known(cfg)})")
            setattr(cfg, parts[0], _coerce(value, _field_type(cfg, parts[0]), key))
            continue
        if len(parts) != 2 or not hasattr(cfg, parts[0]) or not is_dataclass(getattr(cfg, parts[0])):
            raise AvatarToolError(f"unknown build setting '{key}' ({_known(cfg)})")
        section = getattr(cfg, parts[0])
        if parts[1] not in {f.name for f in fields(section)}:
            names = ", ".join(f.name for f in fields(section))
            raise AvatarToolError(f"unknown build setting '{key}': section '{parts[0]}' has {names}")
        setattr(section, parts[1], _coerce(value, _field_type(section, parts[1]), key))
    return cfg


def _known(cfg: BuildConfig) -> str:
    return "sections: " + ", ".join(f.name for f in fields(cfg) if is_dataclass(getattr(cfg, f.name)))


def config_json(cfg: BuildConfig) -> str:
    return json.dumps(cfg.to_json(), indent=2, sort_keys=True)

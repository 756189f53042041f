"""``avatartool build``: every step of the method, from an engine to a verified bundle and a report, as
named stages in one run directory (see ``runner.py`` for skipping and resuming).

    render → real_generator → avatar_generator → pairs → train → heldout → pair_measures → export → baseline
           → evaluate → report

Under torchrun (``avatartool build --nproc-per-node N`` starts it) the GAN trainings, pairs, the estimator
and the baseline run on every rank (data parallel), each rank renders its slice of the vectors; the other
stages run on rank 0 while the rest wait.
"""
from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Iterable

from .. import distributed
from ..atomic_io import atomic_write_text
from .config import BuildConfig, config_json
from .runner import BuildUI, RunLock, Stage, StageResult, run_stages
from .stages import (avatar_generator, baseline, evaluate, export, heldout, pair_measures, pairs, real_generator,
                     render, report, train)

_ENGINE_CODE = ("toolchain/engines", "toolchain/schema.py", "toolchain/render")
_GAN_CODE = ("toolchain/generators", "toolchain/distributed.py")
_TRAIN_CODE = ("toolchain/estimator", "toolchain/data", "toolchain/distributed.py")
_FACE_FINDER_CODE = ("sdk_python/face_finder.py", "sdk_python/face_check.py", "sdk_python/face_presence.py",
                     "sdk_python/detector.py")
# G_real's snapshot pick counts faces in samples (toolchain/evaluation/snapshot_pick.py)
_PICK_CODE = tuple(f"toolchain/evaluation/{m}.py" for m in ("snapshot_pick", "face_likeness", "pair_measures",
                                                              "part_census")) + _FACE_FINDER_CODE

STAGES: tuple[Stage, ...] = (
    Stage("render", "sample avatar vectors and render them", render.run, reads=("render",), code=_ENGINE_CODE,
          distributed=True),
    Stage("real_generator", "G_real: the realistic-face generator", real_generator.run, reads=("real",),
          code=_GAN_CODE + ("toolchain/proxy",) + _PICK_CODE, distributed=True),
    Stage("avatar_generator", "G_avatar: G_real finetuned on the renders", avatar_generator.run, reads=("avatar",),
          after=("render", "real_generator"), code=_GAN_CODE, distributed=True),
    Stage("pairs", "invert renders, synthesise faces, augment", pairs.run, reads=("pairs", "render"),
          after=("render", "real_generator", "avatar_generator"), code=_GAN_CODE + ("toolchain/production",),
          distributed=True),
    Stage("train", "train the estimator on the pairs (+ renders if train.with_renders)", train.run, reads=("train",),
          after=("render", "pairs"),
          code=_TRAIN_CODE + ("toolchain/pipeline/baseline.py",),
          distributed=True),
    Stage("heldout", "the held-out evaluation set", heldout.run, reads=("eval", "render"),
          code=_ENGINE_CODE + ("toolchain/proxy",)),
    Stage("pair_measures", "what the pairs carry: face-likeness, label consistency", pair_measures.run,
          reads=("real", "render", "eval", "train"), after=("real_generator", "avatar_generator", "pairs", "train", "heldout"),
          code=("toolchain/evaluation", "toolchain/proxy", "toolchain/estimator") + _FACE_FINDER_CODE),
    Stage("export", "ONNX / TFLite / CoreML, parity, bundle, latency", export.run, reads=("export",),
          after=("render", "train", "pairs", "heldout"),
          code=("converters", "sdk_python/bundle.py", "toolchain/engines/bundle_engine.py")),
    Stage("baseline", "the paper's Baseline: the estimator trained on renders", baseline.run,
          reads=("train", "baseline"), after=("render", "train"), code=_TRAIN_CODE, enabled=lambda c: c.baseline.enabled,
          distributed=True),
    Stage("evaluate", "accuracy and render distance on the held-out set", evaluate.run, reads=("eval",),
          after=("train", "heldout", "baseline"), code=("toolchain/evaluation", "toolchain/estimator")),
    Stage("report", "report.md and report.html", report.run, reads=(),
          after=("render", "real_generator", "avatar_generator", "pairs", "train", "heldout", "pair_measures", "export",
                 "baseline", "evaluate"), code=("toolchain/pipeline/report.py",)),
)

STAGE_NAMES = tuple(s.name for s in STAGES)


def build(cfg: BuildConfig, run_dir: str | Path, ui: BuildUI | None = None, force: Iterable[str] = (),
          stop_before: str | None = None, estimates: dict[str, float] | None = None,
          stop_after: str | None = None) -> list[StageResult]:
    """Run the whole build into ``run_dir`` (resuming, skipping what is done), or its stages up to ``stop_after``.
    Writes ``config.json`` and ``command.txt`` there; returns one result per stage."""
    run_dir = Path(run_dir)
    main = distributed.info().is_main
    with RunLock(run_dir) if main else contextlib.nullcontext():   # the ranks of one torchrun build share it
        from ..torch_utils import configure_cpu_math
        configure_cpu_math(cfg.threads)
        if main:
            atomic_write_text(run_dir / "config.json", config_json(cfg) + "\n")
            atomic_write_text(run_dir / "command.txt", " ".join(_quote(a) for a in sys.argv) + "\n")
        distributed.barrier()
        return run_stages(STAGES, cfg, run_dir, ui=ui, force=force, stop_before=stop_before, estimates=estimates,
                          stop_after=stop_after)


def _quote(arg: str) -> str:
    import shlex
    return shlex.quote(arg)


def load_run_config(run_dir: str | Path) -> BuildConfig:
    """The resolved configuration a build saved (``RUN/config.json``)."""
    return BuildConfig.from_json(json.loads((Path(run_dir) / "config.json").read_text()))

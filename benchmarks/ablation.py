"""The paper's ablation (Table 3) on our own data: what each part of the method buys.

    python -m benchmarks ablation --engine alter [--preset smoke] [--run DIR] [--set SECTION.FIELD=VALUE ...] [--reuse]
                                  [--skip-no-colour] [--as-is]

Rows, all with one engine, one set of render vectors, one held-out set and one training budget (the
number of training samples *seen*, matched by epochs; the learning-rate schedule is stretched with them):

* Baseline        — the estimator trained on the renders themselves;
* + DA            — domain adaptation: the inverted, realistic pairs without semantic augmentation;
* + SA (method)   — the full method: pairs plus augmented copies (the build's own estimator);
* no colour loss  — the full method with G_avatar finetuned without the colour-matching loss (its G_avatar
  and pairs cost about what the build's own did: ``--skip-no-colour`` leaves the row out, and the tables say so);
* oracle          — trained on *labelled* photo-proxy faces: what no user has, an upper bound.

The build stages (renders, generators, pairs, training, held-out set) come from ``avatartool build`` on
the same run directory (default ``runs/build-<engine>-<preset>``, the README command's run), so a finished
build is reused and an unfinished one resumes (its stages carry code fingerprints); the ablation's own
datasets live in ``RUN/ablation/`` and resume, while the rows it trains there are trained again on every
run unless ``--reuse`` keeps them (they carry no code fingerprint). ``--as-is`` takes a finished build's stages
as they are, without rerunning those whose code changed since (a long build made by an earlier commit); the
tables say so. With ``--as-is``, ``--set train.FIELD=VALUE`` trains every row again with other training settings
on the build's own pairs (e.g. ``train.sharpen=2`` on a build made before the preset used it).
Results: ``benchmarks/results/ablation_<engine>.{json,md,png}``.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from toolchain.atomic_io import save_figure_atomic
from toolchain.errors import AvatarToolError
from toolchain.estimator.metrics import mean_normalised_mae

ROWS = ("baseline", "da", "sa", "no_colour", "oracle")
PAIR_ROWS = ("da", "sa", "no_colour")
LABELS = {"baseline": "Baseline (renders)", "da": "+ DA (pairs, no augmentation)", "sa": "+ SA (full method)",
          "no_colour": "full method, no colour loss", "oracle": "oracle (labelled photos)"}


def _hardlink_tree(src: Path, dst: Path) -> None:
    """Share a finished stage's files with another run without copying them (they are never rewritten)."""
    if dst.exists():
        return
    tmp = dst.with_name(dst.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, copy_function=os.link)
    os.replace(tmp, dst)


def _subset_dataset(src: str | Path, dst: Path, keep: Callable[[dict], bool], kind: str) -> int:
    """A paired dataset holding the samples of ``src`` whose provenance ``keep`` accepts (resumable)."""
    from toolchain.data.paired_dataset import PairedDataset, PairedDatasetWriter
    ds = PairedDataset.open(src)
    idx = [i for i, p in enumerate(ds.provenance) if keep(p)]
    writer = PairedDatasetWriter(dst, ds.schema, meta={**ds.meta, "kind": kind, "subset_of": str(Path(src).resolve())})
    vectors = ds.vectors(idx)
    for j in range(len(writer), len(idx)):
        i = idx[j]
        writer.add(ds.images[i], vectors[j], provenance=ds.provenance[i])
    writer.close()
    return len(writer)


def engine_schema(engine: str):
    from toolchain.engines.registry import create_engine
    with create_engine(engine) as eng:
        return eng.schema


def render_distance(metrics: dict[str, Any]) -> tuple[float, str]:
    """(value, name): LPIPS where the evaluation had its weights, else the weight-free masked L1."""
    rd = metrics["render_distance"]
    if "mean" in rd.get("lpips", {}):
        return float(rd["lpips"]["mean"]), "LPIPS"
    return float(rd["masked_l1"]["mean"]), "masked L1"


# the build stages the rows read
AS_IS_STAGES = ("render", "real_generator", "avatar_generator", "pairs", "train", "heldout", "pair_measures", "baseline")


def run_ablation(engine: str, preset: str, run_dir: Path, settings: list[str], log: Callable[[str], None],
                 reuse_rows: bool = False, skip_no_colour: bool = False, as_is: bool = False) -> dict[str, Any]:
    """The ablation's rows, trained and evaluated now. The build's stages are reused (they carry code
    fingerprints and rerun when the code changed); rows an earlier ablation trained in ``RUN/ablation/``
    carry none, so they are retrained unless ``reuse_rows`` (``--reuse``) asks to keep them."""
    from rich.console import Console

    from toolchain.cli.build_ui import RichBuildUI
    from toolchain.estimator.train import matched_budget, train
    from toolchain.evaluation.evaluate import evaluate
    from toolchain.pipeline.baseline import renders_to_dataset
    from toolchain.pipeline.build import STAGES, build, load_run_config
    from toolchain.pipeline.config import resolve_config
    from toolchain.pipeline.runner import RunLock, read_record, run_stages
    from toolchain.pipeline.stages.train import estimator_train_config
    from toolchain.proxy.oracle import ORACLE_SEED_OFFSET, oracle_dataset

    console = Console(stderr=True)
    retrain = False
    if (run_dir / "config.json").is_file():
        cfg = load_run_config(run_dir)
        if as_is and settings:
            if cfg.engine != engine or cfg.preset != preset:
                raise AvatarToolError(f"{run_dir} is a build of engine {cfg.engine}, preset {cfg.preset}, not {engine} {preset}: "
                                      f"give --engine {cfg.engine} --preset {cfg.preset}, or another --run")
            # other training settings on a finished build's pairs: every row is trained again with them
            cfg, retrain = _with_train_settings(cfg, settings)
            log(f"training settings {' '.join(settings)}: " + ("every row is trained again, none is taken from the build"
                                                               if retrain else "the build's own, so its models serve"))
        elif settings or cfg.engine != engine or cfg.preset != preset:
            want = resolve_config(engine, preset, overrides=settings)
            if want.to_json() != cfg.to_json():
                raise AvatarToolError(f"{run_dir} holds a build with other settings; drop --set/--preset to reuse it, "
                                      "give another --run, or add --as-is to train every row again with other "
                                      "train.* settings on its pairs")
        if as_is:
            unfinished = [s for s in AS_IS_STAGES if (read_record(run_dir / s) or {}).get("status") != "complete"]
            if unfinished:
                raise AvatarToolError(f"--as-is needs a finished build; {run_dir} has not finished "
                                      f"{', '.join(unfinished)}: run the build (or the ablation without --as-is) first")
            log(f"using the build in {run_dir} as it is (--as-is: stages are not checked against this code)")
        else:
            log(f"reusing the build in {run_dir} (finished stages are skipped)")
            with RunLock(run_dir), RichBuildUI(console) as ui:
                run_stages(STAGES, cfg, run_dir, ui=ui)
    elif as_is:
        raise AvatarToolError(f"--as-is needs a finished build in {run_dir}; there is none")
    else:
        cfg = resolve_config(engine, preset, overrides=settings)
        with RichBuildUI(console) as ui:
            build(cfg, run_dir, ui=ui)
    out = lambda stage: read_record(run_dir / stage)["outputs"]   # noqa: E731
    abl = run_dir / "ablation"
    abl.mkdir(exist_ok=True)

    # the "no colour loss" generators: the same renders and G_real (hard links), G_avatar and pairs redone
    nc_run = abl / "no_colour_build"
    if skip_no_colour:
        log("no colour loss: skipped (--skip-no-colour)")
    else:
        nc_run.mkdir(exist_ok=True)
        for stage in ("render", "real_generator"):
            _hardlink_tree(run_dir / stage, nc_run / stage)
        nc_cfg = replace(cfg, avatar=replace(cfg.avatar, colour_weight=0.0))
        log("no colour loss: G_avatar and pairs again with avatar.colour_weight=0")
        with RichBuildUI(console) as ui:
            build(nc_cfg, nc_run, ui=ui, stop_before="train")

    pairs = out("pairs")["dataset"]
    sa_train = out("train")
    from toolchain.data.paired_dataset import PairedDataset
    n_sa = len(PairedDataset.open(pairs))

    base_tc = estimator_train_config(cfg)
    budget = n_sa * base_tc.epochs
    render = out("render")

    datasets: dict[str, tuple[Path | str, int]] = {}
    log("datasets: renders, pairs without augmentation, oracle photos")
    d = abl / "baseline" / "dataset"
    datasets["baseline"] = (d, renders_to_dataset(render["folder"], d, render["n"]))
    d = abl / "da" / "dataset"
    datasets["da"] = (d, _subset_dataset(pairs, d, lambda p: p.get("aug") == 0, "gan-pairs-no-augmentation"))
    datasets["sa"] = (pairs, n_sa)
    if not skip_no_colour:
        nc_pairs = read_record(nc_run / "pairs")["outputs"]["dataset"]
        datasets["no_colour"] = (nc_pairs, len(PairedDataset.open(nc_pairs)))
    # the build's oracle (its label-consistency measure) serves when it was trained on this budget
    measured = out("pair_measures").get("oracle") or {}
    budget_matched = measured.get("samples_seen") == budget
    if budget_matched:
        datasets["oracle"] = (measured["dataset"], measured["n"])
    else:
        datasets["oracle"] = (abl / "oracle" / "dataset",
                              oracle_dataset(cfg.engine, abl / "oracle", n=cfg.render.n,
                                             seed=cfg.eval.seed + ORACLE_SEED_OFFSET, size=cfg.render.size))

    heldout = out("heldout")["set"]
    reuse = rows_taken_from_build(cfg, {"sa": sa_train, "baseline": out("baseline"), "oracle": measured},
                                  budget_matched, retrain)
    rows: dict[str, dict[str, Any]] = {}
    for name in (r for r in ROWS if r in datasets):
        data, n = row_training_sets(name, datasets, cfg.train.with_renders)
        tc = matched_budget(base_tc, n, budget)
        if name in reuse:
            model = reuse[name]["model"]
            tc = replace(tc, epochs=reuse[name]["epochs"])
        else:
            if not reuse_rows and (abl / name / "train").exists():
                log(f"{LABELS[name]}: discarding the model an earlier ablation trained (--reuse keeps it)")
                shutil.rmtree(abl / name / "train")
            log(f"train {LABELS[name]}: {n} samples x {tc.epochs} epochs (lr step every {tc.lr_step_epochs})")
            t0 = time.perf_counter()
            train(data, abl / name / "train", tc, backbone_weights=cfg.train.backbone_weights, device=cfg.device)
            log(f"  trained in {time.perf_counter() - t0:.0f} s")
            model = str(abl / name / "train" / "estimator.pt")
        report = evaluate(model, heldout, abl / name / "eval", lpips_weights=cfg.eval.lpips_weights, engine=cfg.engine)
        rows[name] = {"label": LABELS[name], "dataset": ", ".join(map(str, data)), "n_train_samples": n, "epochs": tc.epochs,
                      "samples_seen": n * tc.epochs, "model": str(model), "metrics": report["metrics"]}
    return {"cfg": cfg, "rows": rows, "budget": budget, "heldout": out("heldout"), "pairs": out("pairs"),
            "skipped": {"no_colour": "--skip-no-colour"} if skip_no_colour else {}, "as_is": as_is,
            "train_settings": list(settings) if retrain else []}


def row_training_sets(name: str, datasets: dict[str, tuple[Path | str, int]],
                      with_renders: bool) -> tuple[list[Path | str], int]:
    """(the datasets row ``name`` trains on, their size): its own, and with ``train.with_renders`` the rows of pairs
    take the renders (the Baseline row's set) too, as the build's estimator did."""
    data, n = datasets[name]
    if with_renders and name in PAIR_ROWS:
        renders, n_renders = datasets["baseline"]
        return [data, renders], n + n_renders
    return [data], n


def rows_taken_from_build(cfg, records: dict[str, dict], oracle_budget_matched: bool,
                          retrain: bool) -> dict[str, dict]:
    """The rows whose model the build already trained under the ablation's own terms: its estimator (+ SA),
    its Baseline when trained on the matched budget, its label-consistency oracle when trained on this budget;
    none when the ablation trains with other training settings (``retrain``)."""
    if retrain:
        return {}
    taken = {"sa": records["sa"]}
    if cfg.baseline.enabled and not cfg.baseline.epochs:
        taken["baseline"] = records["baseline"]   # the build's Baseline: these renders, this matched budget
    if oracle_budget_matched:
        taken["oracle"] = records["oracle"]
    return taken


def _with_train_settings(cfg, settings: list[str]):
    """(the build's config with ``train.*`` settings applied, whether its training section changed).

    Only the training section may change under ``--as-is``: the build's renders, generators and pairs stay as
    they finished, so any other setting would describe stages that were never run."""
    from toolchain.pipeline.config import apply_overrides, check_config, parse_settings
    values = parse_settings(settings)
    others = sorted(k for k in values if not k.startswith("train."))
    if others:
        raise AvatarToolError(f"--as-is keeps the build's stages as they finished, so only train.* settings can change; "
                              f"{', '.join(others)} would need a new build: drop --as-is and give another --run")
    new = apply_overrides(cfg, values)
    check_config(new)
    return new, new.train != cfg.train


def summarise(result: dict[str, Any], schema) -> dict[str, Any]:
    rows = result["rows"]
    dist = {k: render_distance(r["metrics"]) for k, r in rows.items()}
    metric = dist["baseline"][1]
    acc = {k: r["metrics"].get("mean_accuracy") for k, r in rows.items()}
    nmae = {k: mean_normalised_mae(r["metrics"], schema) for k, r in rows.items()}
    base_d = dist["baseline"][0]
    change = {k: (d - base_d) / base_d if base_d else None for k, (d, _) in dist.items()}

    def gap(values: dict[str, float | None]) -> float | None:
        """The share of the Baseline → oracle difference the full method covers (either direction)."""
        b, s, o = values["baseline"], values["sa"], values["oracle"]
        if None in (b, s, o) or o == b:
            return None
        return (s - b) / (o - b)

    order_kept = dist["baseline"][0] > dist["da"][0] > dist["sa"][0]
    return {"render_metric": metric, "render_distance": {k: d for k, (d, _) in dist.items()},
            "render_change_vs_baseline": change, "mean_accuracy": acc, "normalised_mae": nmae,
            "accuracy_gap_closed": gap(acc), "render_gap_closed": gap({k: d for k, (d, _) in dist.items()}),
            "paper_order_kept": order_kept, "goal": {"render_change": -0.39, "gap_closed": 0.5},
            "goal_met": bool(change["sa"] is not None and change["sa"] <= -0.39 and order_kept
                             and (gap(acc) or 0) >= 0.5)}


def _plot(summary: dict[str, Any], out: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    palette = dict(zip(ROWS, ["#9d9d9d", "#72b7b2", "#4c78a8", "#f58518", "#54a24b"]))
    shown = [k for k in ROWS if k in summary["render_distance"]]
    labels = [LABELS[k].split(" (")[0] for k in shown]
    colours = [palette[k] for k in shown]
    axes[0].bar(labels, [summary["render_distance"][k] for k in shown], color=colours)
    axes[0].set(title=f"render distance ({summary['render_metric']}, lower is better)")
    axes[1].bar(labels, [summary["mean_accuracy"][k] or 0 for k in shown], color=colours)
    axes[1].set(title="mean accuracy of discrete parameters", ylim=(0, 1))
    for ax in axes:
        ax.tick_params(axis="x", rotation=25, labelsize=8)
    fig.tight_layout()
    return save_figure_atomic(out, fig)


def write_tables(result: dict[str, Any], out_dir: Path, command: str) -> list[Path]:
    from benchmarks._report import write_report
    from benchmarks.__main__ import commit
    cfg = result["cfg"]
    s = summarise(result, engine_schema(cfg.engine))
    rows = result["rows"]

    def pct(x: float | None) -> str:
        return "—" if x is None else f"{100 * x:+.1f} %"

    def num(x: float | None, d: int = 4) -> str:
        return "—" if x is None else f"{x:.{d}f}"

    base_acc = s["mean_accuracy"]["baseline"]
    shown = [k for k in ROWS if k in rows]
    table = [[LABELS[k], rows[k]["n_train_samples"], rows[k]["epochs"], rows[k]["samples_seen"],
              num(s["mean_accuracy"][k], 3),
              "—" if s["mean_accuracy"][k] is None or base_acc is None else f"{s['mean_accuracy'][k] - base_acc:+.3f}",
              num(s["normalised_mae"][k]), num(s["render_distance"][k]),
              num(s["render_distance"][k] - s["render_distance"]["baseline"]), pct(s["render_change_vs_baseline"][k])]
             for k in shown]
    table += [[LABELS[k], f"not run ({why})", *["—"] * 8] for k, why in result.get("skipped", {}).items()]
    per_param = [[p, *(f"{rows[k]['metrics']['accuracy'][p]:.3f}" for k in shown)] for p in rows["sa"]["metrics"]["accuracy"]]
    per_param += [[f"{p} (MAE)", *(f"{rows[k]['metrics']['mae'][p]:.3f}" for k in shown)] for p in rows["sa"]["metrics"]["mae"]]
    closed = "—" if s["accuracy_gap_closed"] is None else f"{100 * s['accuracy_gap_closed']:.0f} %"
    verdict = (f"Full method vs Baseline: render distance {pct(s['render_change_vs_baseline']['sa'])} (goal ≤ −39 %); "
               f"paper's order Baseline > +DA > +SA in render distance kept: {'yes' if s['paper_order_kept'] else 'no'}; "
               f"accuracy gap between Baseline and oracle closed: {closed} (goal ≥ 50 %). "
               f"Goal met: {'yes' if s['goal_met'] else 'no'}.")
    as_is = ("\n\nThe build's stages were used as they finished (`--as-is`), not checked against this code."
             if result.get("as_is") else "")
    if result.get("train_settings"):
        as_is += (f" Every row, the full method's and the Baseline's included, was trained again here with "
                  f"{', '.join(f'`{x}`' for x in result['train_settings'])}; the build's own estimators were not used.")
    if cfg.train.with_renders:
        as_is += (" With `train.with_renders`, the rows of pairs (+ DA, + SA, no colour loss) trained on the pairs and "
                  "the renders together, at the same budget of samples seen (ours, not the paper's).")
    notes = (f"{verdict}{as_is}\n\nEvery row: engine `{cfg.engine}`, preset `{cfg.preset}`, the same {cfg.render.n} render vectors, "
             f"held-out set `{result['heldout'].get('kind')}` ({result['heldout'].get('n')} images: {result['heldout'].get('note')}), "
             f"and a budget of {result['budget']} training samples seen (epochs matched, the learning-rate steps "
             f"stretched with them). Render distance: {s['render_metric']} between renders of the predicted and the "
             f"true vectors ({'LPIPS weights given' if s['render_metric'] == 'LPIPS' else 'no LPIPS weights given, so the weight-free masked pixel L1'}). "
             "Normalised MAE: continuous parameters' MAE over their range.\n\n"
             "Per parameter (accuracy; MAE in parameter units):\n\n"
             "| parameter | " + " | ".join(LABELS[k] for k in shown) + " |\n|" + "---|" * (len(shown) + 1) + "\n"
             + "\n".join("| " + " | ".join(map(str, r)) + " |" for r in per_param)
             + f"\n\n![ablation_{cfg.engine}](ablation_{cfg.engine}.png)")
    data = {"engine": cfg.engine, "preset": cfg.preset, "config": cfg.to_json(), "budget_samples_seen": result["budget"],
            "heldout": result["heldout"], "rows": rows, "skipped": result.get("skipped", {}),
            "train_settings": result.get("train_settings", []), "summary": s, "commit": commit(), "command": command}
    stamp = f"Run `{result['run']}`, code {commit()}, {result['seconds']:.0f} s; command: `{command}`"
    name = f"ablation_{cfg.engine}"
    j, m = write_report(name, data, ["row", "train samples", "epochs", "samples seen", "mean acc", "Δ acc",
                                     "norm. MAE", f"render dist. ({s['render_metric']})", "Δ abs", "Δ rel"],
                        table, notes, out_dir=out_dir, stamp=stamp)
    return [j, m, _plot(s, out_dir / f"{name}.png")]


def main(argv: list[str] | None = None) -> None:
    import shlex
    ap = argparse.ArgumentParser(prog="python -m benchmarks ablation", description=__doc__.splitlines()[0])
    ap.add_argument("--engine", required=True, help="engine name, module:Class or cmd:<command>")
    ap.add_argument("--preset", default="smoke", help="build preset (smoke, cpu, paper)")
    ap.add_argument("--run", type=Path, default=None, help="build run directory (default runs/build-<engine>-<preset>)")
    ap.add_argument("--set", dest="settings", action="append", default=[], help="SECTION.FIELD=VALUE (repeatable)")
    ap.add_argument("--out", type=Path, default=None, help="where to write (default: benchmarks/results/)")
    ap.add_argument("--reuse", action="store_true",
                    help="keep rows an earlier ablation trained in RUN/ablation/ (default: train them again)")
    ap.add_argument("--as-is", action="store_true",
                    help="use a finished build's stages as they are, without rerunning those whose code changed since")
    ap.add_argument("--skip-no-colour", action="store_true",
                    help="leave out the 'no colour loss' row (its own G_avatar and pairs: about as long as the build's)")
    a = ap.parse_args(argv)
    from benchmarks._report import RESULTS
    from toolchain.cli.main import _default_run_dir
    run_dir = a.run or _default_run_dir(a.engine, a.preset)
    command = "python -m benchmarks ablation " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    t0 = time.perf_counter()
    try:
        result = run_ablation(a.engine, a.preset, run_dir, a.settings, lambda msg: print(f"[ablation] {msg}", flush=True),
                              reuse_rows=a.reuse, skip_no_colour=a.skip_no_colour, as_is=a.as_is)
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    result.update(run=str(run_dir), seconds=time.perf_counter() - t0)
    files = write_tables(result, a.out or RESULTS, command)
    print(files[1].read_text())
    print("wrote " + ", ".join(map(str, files)))

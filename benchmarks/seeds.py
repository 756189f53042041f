"""The method against the Baseline over several seeds: does a lead hold, or is it one seed's luck?

    python -m benchmarks seeds RUN [RUN ...] [--name NAME] [--spread 0.03] [--out DIR]

Each RUN is a finished ``avatartool build`` of the same engine and the same held-out set, differing in its seed
(e.g. ``--set render.seed=1``: other renders, so other pairs, another estimator and another Baseline). The table
reads each build's own evaluation (method and Baseline, scored on the shared held-out set) and pair measures, one
row per build, then the mean, the spread and the verdict by issue 22's rule: a lead counts when its mean is larger
than the spread between machines (``--spread``, 0.03 in accuracy, measured on one seeded smoke build run on two
machines), or when it holds in every one of at least three seeds. Nothing is trained or timed here.
"""
from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

MACHINE_SPREAD = 0.03     # the same seeded smoke build's accuracy on two machines differed by this much
MIN_SEEDS = 3


@dataclass
class SeedResult:
    """One build's scores: the method's and the Baseline's, on the shared held-out set."""
    run: str
    seed: int
    method: dict[str, Any]
    baseline: dict[str, Any]
    pairs_vs_ceiling: float | None = None
    label_consistency: float | None = None


def verdict(leads: Sequence[float], spread: float) -> tuple[bool, str]:
    """(win, why) for per-seed leads (positive: the method is better) by the issue's rule."""
    mean = statistics.fmean(leads)
    if mean > spread:
        return True, f"mean lead {mean:+.3f} is larger than the spread {spread:.3f}"
    if len(leads) >= MIN_SEEDS and all(x > 0 for x in leads):
        return True, f"the method leads in all {len(leads)} seeds"
    if len(leads) < MIN_SEEDS:
        return False, f"mean lead {mean:+.3f} within the spread {spread:.3f}, and only {len(leads)} seed(s) of the {MIN_SEEDS} the rule needs"
    behind = sum(x <= 0 for x in leads)
    return False, f"mean lead {mean:+.3f} within the spread {spread:.3f}, and the method does not lead in {behind} of {len(leads)} seeds"


def summarise(results: Sequence[SeedResult], spread: float = MACHINE_SPREAD) -> dict[str, Any]:
    """Per-seed leads in mean accuracy, render distance and each parameter's accuracy; their mean, standard
    deviation, and the verdict for the two headline metrics."""
    if not results:
        raise ValueError("no builds to summarise")
    from benchmarks.ablation import render_distance
    acc_leads = [r.method["mean_accuracy"] - r.baseline["mean_accuracy"] for r in results]
    method_dist = [render_distance(r.method) for r in results]
    base_dist = [render_distance(r.baseline)[0] for r in results]
    # relative, as the report and the ablation give it: negative is the method closer to the truth
    dist_rel = [m / b - 1 for (m, _), b in zip(method_dist, base_dist)]
    params = list(results[0].method["accuracy"])
    per_param = {p: [r.method["accuracy"][p] - r.baseline["accuracy"][p] for r in results] for p in params}

    def stats(xs: Sequence[float]) -> dict[str, float]:
        return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0,
                "min": min(xs), "max": max(xs)}

    acc_win, acc_why = verdict(acc_leads, spread)
    # no machine spread is measured for the render distance, so only the every-seed half of the rule applies
    dist_win = all(x < 0 for x in dist_rel) and len(dist_rel) >= MIN_SEEDS
    return {"n": len(results), "spread": spread,
            "accuracy_lead": {"per_seed": acc_leads, **stats(acc_leads), "win": acc_win, "why": acc_why},
            "render_distance_rel": {"per_seed": dist_rel, **stats(dist_rel), "win": dist_win,
                                    "metric": method_dist[0][1], "method": [m for m, _ in method_dist],
                                    "baseline": base_dist,
                                    "why": (f"the method's render distance is lower in all {len(dist_rel)} seeds"
                                            if dist_win else "not lower in every one of at least three seeds")},
            "per_parameter_lead": {p: {"per_seed": xs, **stats(xs), "leads_in": sum(x > 0 for x in xs)}
                                   for p, xs in per_param.items()}}


SEED_KEYS = ("render.seed",)
#: settings that do not change what a build learns (where and how fast it runs)
_IGNORED_KEYS = ("threads", "device", "render.workers")


def config_differences(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The build settings, other than the seed, on which the configurations disagree."""
    from toolchain.pipeline.config import flatten_settings
    flats = [flatten_settings(c) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if k not in SEED_KEYS + _IGNORED_KEYS and len({repr(f.get(k)) for f in flats}) > 1]


def read_build(run_dir: Path) -> tuple[SeedResult, str, str, dict[str, Any]]:
    """(scores, engine, held-out set id, build configuration) from a finished build run."""
    from benchmarks.suite.common import BuildRun
    build = BuildRun.open(run_dir)
    ev = build.output("evaluate")
    models = ev["models"]
    if "baseline" not in models:
        from toolchain.errors import AvatarToolError
        raise AvatarToolError(f"{run_dir}: the build has no Baseline (baseline.enabled was false); rebuild with it on")
    pm = build.output("pair_measures") if build.has("pair_measures") else {}
    fl, lc = pm.get("face_likeness", {}), pm.get("label_consistency", {})
    result = SeedResult(run=str(run_dir), seed=build.cfg.render.seed, method=models["swiftavatar"]["metrics"],
                        baseline=models["baseline"]["metrics"], pairs_vs_ceiling=fl.get("pairs_vs_ceiling"),
                        label_consistency=lc.get("ratio"))
    return result, build.cfg.engine, ev["set"]["set_id"], build.cfg.to_json()


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f} %"


def write_tables(results: Sequence[SeedResult], engine: str, set_id: str, summary: dict[str, Any], name: str,
                 out_dir: Path, command: str) -> list[Path]:
    from benchmarks.__main__ import commit
    from benchmarks._report import write_report
    headers = ["build (render seed)", "method acc", "Baseline acc", "lead", "method dist", "Baseline dist", "Δ rel",
               "pairs' faces / ceiling", "label consistency"]
    a, d = summary["accuracy_lead"], summary["render_distance_rel"]
    rows = []
    for i, r in enumerate(results):
        rows.append([f"`{Path(r.run).name}` ({r.seed})", f"{r.method['mean_accuracy']:.3f}",
                     f"{r.baseline['mean_accuracy']:.3f}", f"{a['per_seed'][i]:+.3f}",
                     f"{d['method'][i]:.4f}", f"{d['baseline'][i]:.4f}", f"{100 * d['per_seed'][i]:+.1f} %",
                     _pct(r.pairs_vs_ceiling), _pct(r.label_consistency)])
    rows.append(["mean ± sd", "", "", f"{a['mean']:+.3f} ± {a['sd']:.3f}", "", "",
                 f"{100 * d['mean']:+.1f} ± {100 * d['sd']:.1f} %", "", ""])
    per_param = "\n".join(
        f"| {p} | {' | '.join(f'{x:+.3f}' for x in s['per_seed'])} | {s['mean']:+.3f} | {s['leads_in']} of {summary['n']} |"
        for p, s in summary["per_parameter_lead"].items())
    seeds = " | ".join(str(r.seed) for r in results)
    notes = (f"Engine `{engine}`, held-out set `{set_id}` shared by every build. Lead: the method's mean accuracy minus "
             f"the Baseline's of the same build; Δ rel: the method's render distance ({d['metric']}) against the "
             f"Baseline's.\n\n"
             f"**Accuracy: {'a win' if a['win'] else 'not a win'}** ({a['why']}). **Render distance: "
             f"{'a win' if d['win'] else 'not a win'}** ({d['why']}).\n\n"
             f"Per parameter (accuracy lead over the Baseline, by render seed):\n\n"
             f"| parameter | {seeds} | mean | method leads in |\n|---|{'---|' * len(results)}---|---|\n{per_param}")
    # nothing is timed here, so the machine's load does not qualify these numbers
    stamp = (f"Builds {', '.join(f'`{r.run}`' for r in results)}; code {commit()} (these scores are the builds' "
             f"own); command: `{command}`")
    data = {"engine": engine, "set_id": set_id, "summary": summary, "commit": commit(), "command": command,
            "builds": [r.__dict__ for r in results]}
    j, m = write_report(name, data, headers, rows, notes, out_dir=out_dir, stamp=stamp)
    return [j, m]


def main(argv: list[str] | None = None) -> None:
    from benchmarks._report import RESULTS
    from toolchain.errors import AvatarToolError
    ap = argparse.ArgumentParser(prog="python -m benchmarks seeds", description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="finished build runs of one engine, differing in seed")
    ap.add_argument("--name", default=None, help="result file stem (default: seeds_<engine>)")
    ap.add_argument("--spread", type=float, default=MACHINE_SPREAD,
                    help=f"accuracy spread a mean lead must pass (default {MACHINE_SPREAD})")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    a = ap.parse_args(argv)
    try:
        read = [read_build(r) for r in a.runs]
    except AvatarToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    engines = {e for _, e, _, _ in read}
    sets = {s for _, _, s, _ in read}
    differ = config_differences([c for *_, c in read])
    if len(engines) > 1 or len(sets) > 1 or differ:
        print(f"error: the builds must differ only in their seed ({', '.join(SEED_KEYS)}); they differ in "
              f"{', '.join(differ + (['the held-out set'] if len(sets) > 1 else []))}. Give builds made with the same "
              "settings and another --set render.seed=N", file=sys.stderr)
        sys.exit(1)
    results = [r for r, *_ in read]
    seeds = [r.seed for r in results]
    if len(set(seeds)) < len(seeds):
        print(f"error: two builds have the same seed (render seeds {seeds}): a seed counted twice is not another "
              "seed; rebuild one with --set render.seed=N", file=sys.stderr)
        sys.exit(1)
    command = "python -m benchmarks seeds " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    summary = summarise(results, a.spread)
    engine = read[0][1]
    files = write_tables(results, engine, read[0][2], summary, a.name or f"seeds_{engine}", a.out, command)
    print(files[1].read_text())
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()

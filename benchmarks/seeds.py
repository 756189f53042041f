"""The method against the Baseline over several seeds: does a lead hold, or is it one seed's luck?

    python -m benchmarks seeds RUN [RUN ...] [--name NAME] [--spread 0.03] [--out DIR]
    python -m benchmarks seeds RUN [RUN ...] --against RUN [RUN ...] [--name NAME]

Each RUN is a finished ``avatartool build`` of the same engine and the same held-out set, differing in its seed
(e.g. ``--set render.seed=1``: other renders, so other pairs, another estimator and another Baseline; threads,
device and export settings may differ too, since no score depends on them). The table
reads each build's own evaluation (method and Baseline, scored on the shared held-out set) and pair measures, one
row per build, then the mean, the spread and the verdict by issue 22's rule: a lead counts when its mean is larger
than the spread between machines (``--spread``, 0.03 in accuracy, measured on one seeded smoke build run on two
machines), or when it holds in every one of at least three seeds. Nothing is trained or timed here.

With ``--against``, the first builds are a change (a setting, e.g. ``--set pairs.augment=...``) and the builds after
``--against`` are the same seeds without it: the table pairs them by seed and judges the change's effect on the
method (its accuracy minus the unchanged method's, same seed) by the same rule.
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


def verdict(leads: Sequence[float], spread: float, who: str = "the method") -> tuple[bool, str]:
    """(win, why) for per-seed leads (positive: ``who`` is better) by the issue's rule."""
    mean = statistics.fmean(leads)
    if mean > spread:
        return True, f"mean lead {mean:+.3f} is larger than the spread {spread:.3f}"
    if len(leads) >= MIN_SEEDS and all(x > 0 for x in leads):
        return True, f"{who} leads in all {len(leads)} seeds"
    if len(leads) < MIN_SEEDS:
        return False, f"mean lead {mean:+.3f} within the spread {spread:.3f}, and only {len(leads)} seed(s) of the {MIN_SEEDS} the rule needs"
    behind = sum(x <= 0 for x in leads)
    return False, f"mean lead {mean:+.3f} within the spread {spread:.3f}, and {who} does not lead in {behind} of {len(leads)} seeds"


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
#: sections no scored stage reads: the evaluation scores the trained estimators, not the exported models
_IGNORED_SECTIONS = ("export.",)


def pair_by_seed(changed: Sequence[SeedResult], unchanged: Sequence[SeedResult]) -> list[tuple[SeedResult, SeedResult]]:
    """(changed, unchanged) builds of each seed, in seed order; both sides must hold the same seeds once each."""
    by_seed = {r.seed: r for r in unchanged}
    if sorted(by_seed) != sorted(r.seed for r in changed) or len(by_seed) != len(unchanged):
        raise ValueError(f"the two sides must hold the same seeds once each (changed: {[r.seed for r in changed]}, "
                         f"unchanged: {[r.seed for r in unchanged]})")
    return [(c, by_seed[c.seed]) for c in sorted(changed, key=lambda r: r.seed)]


def compare(changed: Sequence[SeedResult], unchanged: Sequence[SeedResult],
            spread: float = MACHINE_SPREAD) -> dict[str, Any]:
    """The change's effect per seed (builds paired by seed): the changed method's accuracy, render distance and
    per-parameter accuracy minus the unchanged method's, with the verdict for accuracy by the seeds rule."""
    from benchmarks.ablation import render_distance
    pairs = pair_by_seed(changed, unchanged)
    acc = [c.method["mean_accuracy"] - u.method["mean_accuracy"] for c, u in pairs]
    dist_changed = [render_distance(c.method)[0] for c, _ in pairs]
    dist_unchanged = [render_distance(u.method)[0] for _, u in pairs]
    dist = [c / u - 1 for c, u in zip(dist_changed, dist_unchanged)]
    params = list(pairs[0][0].method["accuracy"])
    per_param = {p: [c.method["accuracy"][p] - u.method["accuracy"][p] for c, u in pairs] for p in params}
    win, why = verdict(acc, spread, who="the change")
    return {"n": len(pairs), "spread": spread, "seeds": [c.seed for c, _ in pairs],
            "accuracy_change": {"per_seed": acc, "mean": statistics.fmean(acc), "win": win, "why": why},
            "render_distance_change_rel": {"per_seed": dist, "mean": statistics.fmean(dist),
                                           "lower_in": sum(x < 0 for x in dist), "changed": dist_changed,
                                           "unchanged": dist_unchanged},
            "per_parameter_change": {p: {"per_seed": xs, "mean": statistics.fmean(xs), "better_in": sum(x > 0 for x in xs)}
                                     for p, xs in per_param.items()},
            "baseline_same": all(c.baseline["mean_accuracy"] == u.baseline["mean_accuracy"] for c, u in pairs)}


def config_differences(configs: Sequence[dict[str, Any]]) -> list[str]:
    """The build settings, other than the seed, on which the configurations disagree."""
    from toolchain.pipeline.config import flatten_settings
    flats = [flatten_settings(c) for c in configs]
    keys = sorted(set().union(*flats))
    return [k for k in keys if k not in SEED_KEYS + _IGNORED_KEYS and not k.startswith(_IGNORED_SECTIONS)
            and len({repr(f.get(k)) for f in flats}) > 1]


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


def write_comparison(changed: Sequence[SeedResult], unchanged: Sequence[SeedResult], change: list[str], engine: str,
                     set_id: str, summary: dict[str, Any], name: str, out_dir: Path, command: str) -> list[Path]:
    from benchmarks.__main__ import commit
    from benchmarks._report import write_report
    headers = ["render seed", "method acc, unchanged", "method acc, changed", "change", "dist, unchanged",
               "dist, changed", "Δ rel", "pairs' faces / ceiling", "label consistency", "Baseline acc"]
    a, d = summary["accuracy_change"], summary["render_distance_change_rel"]
    rows = []
    for i, (c, u) in enumerate(pair_by_seed(changed, unchanged)):
        rows.append([str(c.seed), f"{u.method['mean_accuracy']:.3f}", f"{c.method['mean_accuracy']:.3f}",
                     f"{a['per_seed'][i]:+.3f}", f"{d['unchanged'][i]:.4f}", f"{d['changed'][i]:.4f}",
                     f"{100 * d['per_seed'][i]:+.1f} %", f"{_pct(u.pairs_vs_ceiling)} → {_pct(c.pairs_vs_ceiling)}",
                     f"{_pct(u.label_consistency)} → {_pct(c.label_consistency)}",
                     f"{u.baseline['mean_accuracy']:.3f}" + ("" if c.baseline == u.baseline
                                                            else f" / {c.baseline['mean_accuracy']:.3f}")])
    rows.append(["mean", "", "", f"{a['mean']:+.3f}", "", "", f"{100 * d['mean']:+.1f} %", "", "", ""])
    seeds = " | ".join(str(x) for x in summary["seeds"])
    per_param = "\n".join(
        f"| {p} | {' | '.join(f'{x:+.3f}' for x in s['per_seed'])} | {s['mean']:+.3f} | {s['better_in']} of {summary['n']} |"
        for p, s in summary["per_parameter_change"].items())
    notes = (f"Engine `{engine}`, held-out set `{set_id}`. The change: {'; '.join(f'`{c}`' for c in change)}. Change: "
             f"the changed method's mean accuracy minus the unchanged method's, same render seed; Δ rel: its render "
             f"distance against the unchanged method's. Baseline acc: one number where both builds of a seed share "
             f"their Baseline.\n\n"
             f"**Accuracy: {'the change wins' if a['win'] else 'the change does not win'}** ({a['why']}). Render "
             f"distance lower in {d['lower_in']} of {summary['n']} seeds.\n\n"
             f"Per parameter (the changed method's accuracy minus the unchanged one's, by render seed):\n\n"
             f"| parameter | {seeds} | mean | better in |\n|---|{'---|' * summary['n']}---|---|\n{per_param}")
    stamp = (f"Builds {', '.join(f'`{r.run}`' for r in list(changed) + list(unchanged))}; code {commit()} (these "
             f"scores are the builds' own); command: `{command}`")
    data = {"engine": engine, "set_id": set_id, "change": change, "summary": summary, "commit": commit(),
            "command": command, "changed": [r.__dict__ for r in changed], "unchanged": [r.__dict__ for r in unchanged]}
    return list(write_report(name, data, headers, rows, notes, out_dir=out_dir, stamp=stamp))


def _fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def _read_group(runs: Sequence[Path]) -> tuple[list[SeedResult], str, str, dict[str, Any]]:
    """Builds of one side: same engine, held-out set and settings but for the seed (else exit with the fix)."""
    read = [read_build(r) for r in runs]
    engines = {e for _, e, _, _ in read}
    sets = {s for _, _, s, _ in read}
    differ = config_differences([c for *_, c in read])
    if len(engines) > 1 or len(sets) > 1 or differ:
        _fail(f"the builds must differ only in their seed ({', '.join(SEED_KEYS)}); they differ in "
              f"{', '.join(differ + (['the held-out set'] if len(sets) > 1 else []))}. Give builds made with the same "
              "settings and another --set render.seed=N")
    results = [r for r, *_ in read]
    seeds = [r.seed for r in results]
    if len(set(seeds)) < len(seeds):
        _fail(f"two builds have the same seed (render seeds {seeds}): a seed counted twice is not another "
              "seed; rebuild one with --set render.seed=N")
    return results, read[0][1], read[0][2], read[0][3]


def code_differences(runs: Sequence[Path], against: Sequence[Path]) -> list[str]:
    """The code whose fingerprint differs between two groups of builds (each side read from its first build's
    stage records), with the stages that ran it: a code change made with the same settings."""
    from toolchain.pipeline.runner import STAGE_RECORD, read_record

    def code(run: Path) -> dict[str, tuple[str, list[str]]]:
        found: dict[str, tuple[str, list[str]]] = {}
        for stage_dir in sorted(record.parent for record in Path(run).glob(f"*/{STAGE_RECORD}")):
            basis = (read_record(stage_dir) or {}).get("basis") or {}
            for path, digest in (basis.get("code") or {}).items():
                found.setdefault(path, (digest, []))[1].append(basis.get("stage", stage_dir.name))
        return found
    new, old = code(runs[0]), code(against[0])
    return [f"code of {path} ({', '.join(new[path][1])}): {old[path][0]} → {new[path][0]}"
            for path in sorted(set(new) & set(old)) if new[path][0] != old[path][0]]


def main(argv: list[str] | None = None) -> None:
    from benchmarks._report import RESULTS
    from toolchain.errors import AvatarToolError
    from toolchain.pipeline.config import flatten_settings
    ap = argparse.ArgumentParser(prog="python -m benchmarks seeds", description=__doc__.splitlines()[0])
    ap.add_argument("runs", type=Path, nargs="+", help="finished build runs of one engine, differing in seed")
    ap.add_argument("--name", default=None, help="result file stem (default: seeds_<engine>)")
    ap.add_argument("--spread", type=float, default=MACHINE_SPREAD,
                    help=f"accuracy spread a mean lead must pass (default {MACHINE_SPREAD})")
    ap.add_argument("--out", type=Path, default=RESULTS, help="where to write (default: benchmarks/results/)")
    ap.add_argument("--against", type=Path, nargs="+", default=None,
                    help="the same seeds built without the change the RUNs make: judge the change, not the method")
    a = ap.parse_args(argv)
    command = "python -m benchmarks seeds " + " ".join(shlex.quote(x) for x in (argv if argv is not None else sys.argv[2:]))
    try:
        results, engine, set_id, cfg = _read_group(a.runs)
        if a.against is None:
            summary = summarise(results, a.spread)
            files = write_tables(results, engine, set_id, summary, a.name or f"seeds_{engine}", a.out, command)
        else:
            unchanged, engine_u, set_u, cfg_u = _read_group(a.against)
            if (engine_u, set_u) != (engine, set_id):
                _fail("the builds after --against must be of the same engine and held-out set as the RUNs")
            flat, flat_u = flatten_settings(cfg), flatten_settings(cfg_u)
            change = [f"{k}: {flat_u.get(k)!r} → {flat.get(k)!r}" for k in config_differences([cfg, cfg_u])]
            change = change or code_differences(a.runs, a.against)
            if not change:
                _fail("the RUNs and the builds after --against have the same settings and code: there is no change "
                      "to judge")
            summary = compare(results, unchanged, a.spread)
            files = write_comparison(results, unchanged, change, engine, set_id, summary,
                                     a.name or f"seeds_change_{engine}", a.out, command)
    except (AvatarToolError, ValueError) as exc:
        _fail(str(exc))
    print(files[1].read_text())
    print("wrote " + ", ".join(str(f) for f in files))


if __name__ == "__main__":
    main()

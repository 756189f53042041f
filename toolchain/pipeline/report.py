"""The build report: ``report.md`` (figures as files beside it) and one self-contained ``report.html``
(figures inlined as data URIs, no network), written from the stage records and the stages' outputs."""
from __future__ import annotations

import base64
import html
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic_io import atomic_write_text, read_jsonl, save_figure_atomic
from ..evaluation.confusion import shift_sentence

STYLE = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1b1f24;line-height:1.45}h1{margin-bottom:.2em}h2{border-bottom:1px solid #d0d7de;
padding-bottom:.2em;margin-top:1.8em}table{border-collapse:collapse;margin:.6em 0;font-size:14px}
td,th{border:1px solid #d0d7de;padding:4px 9px;text-align:left}th{background:#f3f5f7}
td.num{text-align:right;font-variant-numeric:tabular-nums}img{max-width:100%;border:1px solid #d0d7de;margin:.4em 0}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.5em 1em;border-radius:6px}
.ok{color:#1a7f37;font-weight:600}.bad{color:#cf222e;font-weight:600}.muted{color:#57606a;font-size:13px}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:12px}figure{margin:0}
figcaption{color:#57606a;font-size:13px}"""


class Doc:
    """Builds the markdown and the HTML side by side from the same calls."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.md: list[str] = []
        self.html: list[str] = []
        self.figures: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.md += ["#" * level + " " + text, ""]
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str, cls: str = "") -> None:
        self.md += [text, ""]
        self.html.append(f"<p class='{cls}'>{html.escape(text)}</p>" if cls else f"<p>{html.escape(text)}</p>")

    def warnings(self, items: list[str]) -> None:
        if not items:
            self.para("No fallbacks were taken.")
            return
        self.md += [f"- ⚠ {w}" for w in items] + [""]
        self.html.append("<div class='warn'><ul>" + "".join(f"<li>{html.escape(w)}</li>" for w in items) + "</ul></div>")

    def table(self, header: list[str], rows: list[list[Any]]) -> None:
        self.md.append("| " + " | ".join(header) + " |")
        self.md.append("|" + "---|" * len(header))
        self.md += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
        self.md.append("")
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td{_num_class(c)}>{html.escape(str(c))}</td>" for c in r) + "</tr>"
                       for r in rows)
        self.html.append(f"<table><tr>{head}</tr>{body}</table>")

    def figure(self, path: Path | None, caption: str) -> None:
        if path is None or not Path(path).is_file():
            self.para(f"({caption}: not available)", "muted")
            return
        path = Path(path)
        rel = os.path.relpath(path, self.run_dir)
        self.figures.append(rel)
        self.md += [f"![{caption}]({rel})", "", f"*{caption}*", ""]
        data = base64.b64encode(path.read_bytes()).decode()
        self.html.append(f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(caption)}</figcaption></figure>")

    def code(self, text: str, summary: str) -> None:
        self.md += [f"<details><summary>{summary}</summary>", "", "```json", text, "```", "", "</details>", ""]
        self.html.append(f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>")

    def render_html(self, title: str) -> str:
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                f"<style>{STYLE}</style></head><body>{''.join(self.html)}</body></html>\n")


def _num_class(cell: Any) -> str:
    text = str(cell).replace(" %", "").replace("+", "").replace("−", "-")
    try:
        float(text)
        return " class='num'"
    except ValueError:
        return ""


def _fmt(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _commit() -> str:
    try:
        root = Path(__file__).resolve().parents[2]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             timeout=5)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return (out.stdout.strip() + ("+changes" if dirty else "")) if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def training_curves(run_dir: Path, out: Path) -> Path | None:
    """One PNG: estimator loss and validation accuracy against samples seen (method and Baseline), GAN D/G losses."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    est = {"SwiftAvatar": run_dir / "train" / "stats.jsonl", "Baseline": run_dir / "baseline" / "train" / "stats.jsonl"}
    gans = {"G_real": run_dir / "real_generator" / "gan" / "stats.jsonl", "G_avatar": run_dir / "avatar_generator" / "stats.jsonl"}
    if not any(p.is_file() for p in [*est.values(), *gans.values()]):
        return None
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, p in est.items():
        if not p.is_file():
            continue
        rows = read_jsonl(p)
        # samples seen, not epochs: the method and the Baseline run the same budget over datasets of
        # different sizes, so their epochs are not comparable
        try:
            n_train = json.loads((p.parent / "run.json").read_text())["n_train"]
        except (OSError, KeyError, ValueError):
            n_train = None
        ep = [(r["epoch"] + 1) * (n_train / 1000 if n_train else 1) for r in rows]
        axes[0].plot(ep, [r["train_loss"] for r in rows], marker="o", label=name)
        acc = [r.get("val", {}).get("mean_accuracy") for r in rows]
        if any(a is not None for a in acc):
            axes[1].plot(ep, acc, marker="o", label=name)
    x_label = "thousand training samples seen"
    axes[0].set(title="estimator training loss", xlabel=x_label)
    axes[1].set(title="validation mean accuracy (own data)", xlabel=x_label)
    for name, p in gans.items():
        if not p.is_file():
            continue
        rows = read_jsonl(p)
        steps = [r["step"] for r in rows]
        axes[2].plot(steps, [r.get("d") for r in rows], label=f"{name} D")
        axes[2].plot(steps, [r.get("g") for r in rows], label=f"{name} G", linestyle="--")
    axes[2].set(title="GAN losses", xlabel="step")
    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure_atomic(out, fig)


def _latest(folder: Path, pattern: str) -> Path | None:
    files = sorted(folder.glob(pattern))
    return files[-1] if files else None


def _eval_rows(models: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    names = list(models)
    first = models[names[0]]["metrics"]
    header = ["parameter", "metric"] + names
    rows: list[list[Any]] = []
    for p in first["accuracy"]:
        rows.append([p, "accuracy"] + [_fmt(models[n]["metrics"]["accuracy"].get(p)) for n in names])
    for p in first["mae"]:   # own units (what a user reads for one parameter), then as a share of its range
        rows.append([p, "MAE (its units)"] + [_fmt(models[n]["metrics"]["mae"].get(p), 4) for n in names])
        rows.append([p, "MAE / range"] + [_fmt(models[n]["metrics"].get("normalised_mae", {}).get(p), 4) for n in names])
    if "mean_accuracy" in first:
        rows.append(["mean", "accuracy"] + [_fmt(models[n]["metrics"].get("mean_accuracy")) for n in names])
    if first.get("mean_normalised_mae") is not None:
        rows.append(["mean", "MAE / range"] + [_fmt(models[n]["metrics"].get("mean_normalised_mae"), 4) for n in names])
    rows.append(["render distance", "masked L1"] + [_fmt(models[n]["metrics"]["render_distance"]["masked_l1"]["mean"], 4)
                                                    for n in names])
    lp = [models[n]["metrics"]["render_distance"]["lpips"].get("mean") for n in names]
    if any(v is not None for v in lp):
        rows.append(["render distance", "LPIPS"] + [_fmt(v, 4) for v in lp])
    return header, rows


def headline(models: dict[str, Any]) -> str | None:
    """One sentence: the method's render distance and accuracy against the Baseline's, with relative change."""
    if "swiftavatar" not in models or "baseline" not in models:
        return None
    s, b = models["swiftavatar"]["metrics"], models["baseline"]["metrics"]
    ds, db = s["render_distance"]["masked_l1"]["mean"], b["render_distance"]["masked_l1"]["mean"]
    rel = (ds - db) / db * 100 if db else float("nan")
    text = f"Render distance (masked L1) {ds:.4f} vs Baseline {db:.4f} ({rel:+.1f} %)"
    if "mean_accuracy" in s:
        text += f"; mean accuracy {s['mean_accuracy']:.3f} vs {b['mean_accuracy']:.3f}"
    if s.get("mean_normalised_mae") is not None and b.get("mean_normalised_mae") is not None:
        text += (f"; mean continuous error {s['mean_normalised_mae']:.1%} vs {b['mean_normalised_mae']:.1%} of each "
                 "parameter's range")
    return text + "."


def _share(d: dict[str, Any]) -> str:
    return f"{d['found']}/{d['n']} ({100 * d['rate']:.1f} %)"


def pair_measures_section(doc: Doc, m: dict[str, Any], real_generator: dict[str, Any]) -> None:
    """What the pairs carry: face-likeness and label consistency, and the generators' samples over steps."""
    doc.heading("What the pairs carry", 3)
    cache = real_generator.get("cache") or {}
    if cache.get("reused"):
        doc.para(f"G_real was reused from the machine-wide cache ({cache.get('path')}, trained by "
                 f"{cache.get('trained_by')} on {cache.get('created')}); --force real_generator retrains it.")
    elif cache.get("path"):
        doc.para(f"G_real was trained in this build and stored in the machine-wide cache ({cache.get('path')}).")
    elif cache:
        doc.para("G_real was trained in this build; the machine-wide cache is off (SWIFTAVATAR_GAN_CACHE=off).")
    if not m:
        doc.para("(not measured in this run)", "muted")
        return
    fl = m.get("face_likeness")
    if fl:
        doc.para(f"Face-likeness: the share of images in which the SDK's face finder (detector + human-face checks) "
                 f"finds a face, each image upscaled from {fl['size']} px to {fl['upscaled_to']} px. Ceiling: "
                 f"{fl['ceiling_photos']}, at G_real's size; floor: smoothed noise of that size.")
        ratio = lambda r: "—" if r is None else f"{100 * r:.0f} % of the ceiling"  # noqa: E731
        doc.table(["images", "with a face", "vs ceiling"],
                  [["G_real samples", _share(fl["g_real"]), ratio(fl.get("g_real_vs_ceiling"))],
                   ["pairs' realistic faces", _share(fl["pairs"]), ratio(fl.get("pairs_vs_ceiling"))],
                   ["ceiling: held-out photos", _share(fl["ceiling"]), ""],
                   ["floor: noise", _share(fl["floor"]), ""]])
    lc = m.get("label_consistency")
    if lc:
        doc.para(f"Label consistency: an oracle estimator trained on {m['oracle']['n']} labelled proxy photos reads "
                 f"{lc['n_pairs']} pairs' realistic faces; its agreement with each pair's vector, beside its accuracy "
                 f"on the {lc['n_heldout']} held-out photos (the ceiling) and the majority option's share (what a "
                 "reader of blurs would score)"
                 + (f". Mean: {lc['pairs']['mean_accuracy']:.3f} vs {lc['heldout']['mean_accuracy']:.3f} "
                    f"({100 * lc['ratio']:.0f} % of the ceiling)." if lc.get("ratio") is not None else "."))
        rows = [[p, _fmt(a), _fmt(lc["heldout"]["accuracy"][p]), _fmt(lc["majority_rate"][p])]
                for p, a in lc["pairs"]["accuracy"].items()]
        rows += [[f"{p} (MAE / range)", _fmt(e, 4), _fmt(lc["heldout"]["normalised_mae"][p], 4), "—"]
                 for p, e in lc["pairs"]["normalised_mae"].items()]
        doc.table(["parameter", "pairs: agreement", "held-out photos: accuracy", "majority option"], rows)
    elif m.get("label_consistency_note"):
        doc.para(f"Label consistency: {m['label_consistency_note']}.")
    for key, caption in (("g_real_steps", "G_real samples over training steps (one row per checkpoint, the same latents)"),
                         ("g_avatar_steps", "G_avatar samples over finetuning steps (one row per checkpoint)")):
        doc.figure(Path(m[key]) if m.get(key) else None, caption)


def g_real_origin(rg: dict[str, Any]) -> str:
    """Where G_real came from, its size and, when trained here, its steps: every later number depends on it."""
    source = rg.get("source", "—")
    if source == "file":
        return f"the given file {rg.get('generator')} ({rg.get('size')} px)"
    steps = f", {rg['iters']} steps" if rg.get("iters") else ""
    arithmetic = f", trained in {rg['precision']}" if rg.get("precision") else ""
    return f"{source} ({rg.get('size')} px{steps}{arithmetic}){_pick_text(rg.get('pick'))}"


def _pick_text(pick: dict[str, Any] | None) -> str:
    if not pick or pick.get("why") == "real.pick=last":   # the default asked for: nothing to say
        return ""
    if pick.get("how") != "faces":
        return f"; its last weights: {pick.get('why', 'asked for')}"
    # records written before the pick kept its chosen score ("best") name only the step
    best = pick.get("best") or next(s for s in pick["scores"] if s["step"] == pick["step"])
    return (f"; the snapshot at step {pick['step']}, picked from {len(pick['scores'])} kept snapshots for the most "
            f"faces in {pick['n']} samples of its own seed: {best['found']} (the last weights: "
            f"{pick['last']['found']})")


def pick_table(doc: Doc, pick: dict[str, Any] | None) -> None:
    """Every kept G_real snapshot's score in the pick, so a reader sees how much the choice mattered."""
    if not pick or pick.get("how") != "faces":
        return
    doc.table(["G_real snapshot (step)", f"samples with a face (of {pick['n']})", "picked"],
              [[str(s["step"]), f"{s['found']} ({100 * s['rate']:.0f} %)", "yes" if s["step"] == pick["step"] else ""]
               for s in pick["scores"]])


def write_report(run_dir: Path, cfg_json: dict[str, Any], records: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Write ``report.md`` and ``report.html`` in ``run_dir``; returns what they link."""
    run_dir = Path(run_dir)
    out = lambda s: records.get(s, {}).get("outputs", {})  # noqa: E731
    doc = Doc(run_dir)
    title = f"SwiftAvatar build: {cfg_json['engine']} ({cfg_json['preset']})"
    doc.heading(title, 1)
    doc.para(f"Run {run_dir.resolve()} — {time.strftime('%Y-%m-%d %H:%M')} — code {_commit()} — "
             f"{platform.node()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f}", "muted")
    exp = out("export")
    if exp.get("bundle"):
        left_out = [f"{r['format']} {r['precision']}" for r in exp.get("parity", []) if r.get("bundled") is False]
        doc.para(f"Bundle: {exp['bundle']} — verified ({exp.get('verified')} checks); "
                 f"parity {'passed' if exp.get('passed') else 'NOT passed for every model (see below)'}"
                 + (f"; left out of the bundle: {', '.join(left_out)}" if left_out else "") + ".")
    models = out("evaluate").get("models", {})
    line = headline(models)
    if line:
        doc.para(f"On the held-out set ({out('heldout').get('note', '')}): {line}")

    doc.heading("Fallbacks and warnings")
    warns = [f"{name}: {w}" for name, r in records.items() for w in r.get("warnings", [])]
    doc.warnings(warns)
    logs = [name for name in records if (run_dir / name / "stage.log").is_file()
            and (run_dir / name / "stage.log").stat().st_size]
    if logs:   # the libraries' own messages (converter output, deprecation notices): not findings about the run
        doc.para("Libraries' own messages (converter output, deprecation notices) are kept in "
                 + ", ".join(f"{n}/stage.log" for n in logs) + ".", "muted")

    doc.heading("Stages")
    total = sum(float(r.get("seconds", 0)) for r in records.values())
    doc.table(["stage", "what", "seconds", "share"],
              [[name, r.get("title", ""), f"{float(r.get('seconds', 0)):.1f}",
                f"{100 * float(r.get('seconds', 0)) / total:.0f} %" if total else "—"] for name, r in records.items()]
              + [["total", "", f"{total:.1f}", ""]])

    doc.heading("Renders")
    r = out("render")
    doc.para(f"{r.get('n')} vectors rendered at {r.get('size')} px (seed {r.get('seed')}), "
             f"part masks: {'yes' if r.get('masks') else 'no'}.")
    doc.figure(run_dir / "render" / "contact_sheet.png", "engine renders (first 64)")

    doc.heading("Dual-domain generators")
    rg, ag = out("real_generator"), out("avatar_generator")
    doc.para(f"G_real: {g_real_origin(rg)}; G_avatar: {ag.get('iters')} finetuning steps, "
             f"colour-loss weight {ag.get('colour_weight')}"
             + (f", trained in {ag['precision']}" if ag.get("precision") else "")
             + ("." if "discriminator_init" not in ag else
                ", its discriminator started from G_real's." if ag["discriminator_init"] else
                ", its discriminator trained from scratch (G_real came without one: a kept snapshot, or a file with "
                "no discriminator.safetensors beside it)."))
    pick_table(doc, rg.get("pick"))
    doc.figure(run_dir / "avatar_generator" / "dual_domain_grid.png",
               "the same latents through G_real and G_avatar (rows: real image, its segmentation, avatar image, its segmentation)")

    doc.heading("Paired data")
    p = out("pairs")
    if p:
        qf = (f"the quality filter (final loss > {_fmt(p['max_loss'])}) dropped {p.get('dropped_sources')}"
              if p.get("max_loss") is not None else "no quality filter")
        doc.para(f"{p.get('samples')} samples from {p.get('kept_sources')} sources; {qf}; perceptual loss: "
                 f"{'LPIPS' if p.get('lpips', {}).get('used') else p.get('lpips', {}).get('fallback')}"
                 + (f"; G_avatar's pass inverted in {p['precision']}" if p.get("precision") else "")
                 + (f"; part-map term (render masks) weighted {_fmt(p['mask_weight'])}." if p.get("mask_weight")
                    else "; image losses only (no part-map term)." if "mask_weight" in p else ".")
                 + (f" Each realistic face takes the mean colour of its render's {' and '.join(p['recolour'])} "
                    "(pairs.recolour; ours, not the paper's)." if p.get("recolour") else ""))
    doc.figure(run_dir / "pairs" / "pairs_grid.png", "render | reconstruction in G_avatar | realistic face G_real(w*) | augmented")
    pair_measures_section(doc, out("pair_measures"), rg)

    doc.heading("Training")
    wr = (out("train") or {}).get("with_renders")
    if wr:
        doc.para(f"The estimator trained on the pairs and the build's {wr['n']} renders together (train.with_renders; "
                 "ours, not the paper's, whose estimator sees the pairs only), at the samples-seen budget of the pairs "
                 "alone.")
    curves = training_curves(run_dir, run_dir / "training_curves.png")
    doc.figure(curves, "estimator loss and validation accuracy against training samples seen (one point per epoch); GAN losses per step")

    doc.heading("Evaluation")
    if models:
        header, rows = _eval_rows(models)
        doc.para(f"Held-out set: {out('heldout').get('note', '')}.")
        budgets = [f"{label}: {o['n_train'] + o['n_val']} samples x {o['epochs']} epochs"
                   for label, o in (("SwiftAvatar", out("train")), ("Baseline", out("baseline"))) if o and "n_val" in o]
        if budgets:
            doc.para("Training budget (samples seen are matched unless baseline.epochs is set): " + "; ".join(budgets) + ".")
        doc.table(header, rows)
        shifts = [f"{name}: {shift_sentence(m['confusion'])}" for name, m in models.items() if m.get("confusion")]
        if shifts:
            doc.para("Where the answers go — the options answered far more or less often than they are true: "
                     + " — ".join(shifts) + ".")
            doc.figure(run_dir / "evaluate" / "confusion.png",
                       "rows: the true option, columns: the answer, each row's share (one row of maps per estimator)")
        for name in models:
            doc.figure(run_dir / "evaluate" / name / "grid.png", f"{name}: input | predicted avatar | ground truth")

    doc.heading("Export parity")
    if exp.get("parity"):
        doc.table(["format", "precision", "status", "in bundle", "size MB", "pooled agreement", "worst head (gated)",
                   "cont. max abs"],
                  [[r["format"], r["precision"], r["status"], {True: "yes", False: "no"}.get(r.get("bundled"), "—"),
                    _fmt((r.get("size_bytes") or 0) / 1e6, 2),
                    _fmt(r.get("agreement"), 4),
                    f"{r['worst_head']} {r['worst_head_agreement']:.4f}" if r.get("worst_head") else "—",
                    _fmt(r.get("cont_max_abs"), 5)] for r in exp["parity"]])
    doc.heading("Latency (batch 1, 2 threads, this machine)")
    if exp.get("latency"):
        doc.table(["format", "precision", "parity", "p50 ms", "p90 ms", "p99 ms", "Hz (p50)"],
                  [[r["format"], r["precision"], r.get("status", ""), _fmt(r.get("p50_ms"), 2), _fmt(r.get("p90_ms"), 2),
                    _fmt(r.get("p99_ms"), 2), _fmt(r.get("hz_p50"), 1) if r.get("hz_p50") else r.get("note", "—")]
                   for r in exp["latency"]])

    doc.heading("Configuration")
    doc.code(json.dumps(cfg_json, indent=2, sort_keys=True), "resolved build configuration (config.json)")
    md = "\n".join(doc.md) + "\n"
    atomic_write_text(run_dir / "report.md", md)
    atomic_write_text(run_dir / "report.html", doc.render_html(title))
    return {"figures": doc.figures, "warnings": warns}

"""Paired data production: renders → inversion in G_avatar → G_real synthesis + semantic augmentation →
a sharded paired dataset (toolchain/data/paired_dataset.py), resumable after a kill at any point.

Unit of work: one source render ``i`` → ``1 + k`` samples (the inverted code and ``k`` augmented copies,
provenance ``{"source": i, "aug": j}``). Sources stream through the inversion slots in order and finish
out of order (early stop); as soon as all sources of the next ``chunk`` are finished, that chunk is
sealed as *one* shard together with the progress record (``meta.progress``: sources done, dropped
sources) in the same atomic index write. So the index always says exactly which sources are
finished; a rerun starts at ``sources_done`` and recomputes only what was in flight. Everything per
source is deterministic (an inversion is bit-identical whatever shares its batch; the augmentation
noise is seeded by the source index), so a rerun reproduces what was lost.

Generators (``--generators RUN``): either a folder with ``real/`` and ``avatar/`` (each holding a
``generator.safetensors``), or a finetune run folder (``avatartool finetune``: its generator is
G_avatar and its run.json names the G_real it started from). Explicit paths override both.

Under torchrun (several ranks) the chunks are split over ranks (pairs_ranks.py): each rank seals its
chunks as *parts* in ``parts/``, and rank 0 merges finished parts into the index in chunk order, so the
dataset is the one a single process makes, whatever the number of ranks.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np
import torch

from .. import distributed
from ..data.paired_dataset import PairedDatasetWriter
from ..errors import AvatarToolError
from ..generators.io import load_generator
from ..provenance import generator_origin, render_folder_origin
from ..render.folder import RenderFolder, is_render_folder
from ..torch_utils import signed_to_uint8, uint8_to_signed
from .augment import AugmentConfig, augment, resolve_parts
from .init_latent import InitConfig, build_init
from .inversion import InversionConfig, InvertedSample, invert_stream
from .perceptual import make_perceptual
from .recolour import RenderColours, transfer_colours
from .render_pixels import load_target, part_map
from .strengths import resolve_recolour_parts

ProgressFn = Callable[[int, int, dict], None]   # (sources inverted, total, {kept, dropped, sealed})
# The quality filter's floor on the final inversion loss, per perceptual term: LPIPS and the weight-free
# fallback are not on one scale. The fallback's was chosen on the tiny generators (it drops the worst ~5 % of
# 2,000 alter sources); LPIPS's could not be measured here (no AlexNet weights offline): it is the loss of a
# visibly wrong reconstruction in published inversion work, so check the dropped list.
DEFAULT_MAX_LOSS = {"lpips": 0.6, "fallback": 0.25}
# With max_loss "auto" a source is dropped only when its loss is both above that floor and an outlier of its
# chunk (Tukey's fence, Q3 + 1.5 IQR): a fixed number alone drops *every* source of a short or small build
# whose inversions all end above it, and keeps every failure of a build whose losses all end below it.
TUKEY_K = 1.5


def chunk_threshold(losses: list[float], floor: float) -> float:
    """The "auto" quality-filter threshold for one chunk: Tukey's upper fence, never below ``floor``."""
    q1, q3 = np.percentile(np.asarray(losses, dtype=np.float64), [25, 75])
    return max(floor, float(q3 + TUKEY_K * (q3 - q1)))


def default_max_loss(lpips_used: bool) -> float:
    return DEFAULT_MAX_LOSS["lpips" if lpips_used else "fallback"]


@dataclass
class PairsConfig:
    engine: str
    n: int
    renders: str | None = None      # render folder (default: <out>/renders, rendered if missing)
    render_size: int = 64
    render_seed: int = 0
    chunk: int = 32                 # sources per shard (the unit of resumption)
    max_loss: float | None | str = "auto"  # quality filter on the final loss (None: off; "auto": per perceptual term)
    latent_anchor: str = "start"    # the latent regulariser pulls to the start code, or to w_mean ("mean")
    lpips_weights: str | None = None
    init: InitConfig = field(default_factory=InitConfig)
    inversion: InversionConfig = field(default_factory=InversionConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    grid_sources: int = 8
    # parts whose mean colour each realistic face takes from its render (recolour.py; ours, not the paper's)
    recolour: tuple[str, ...] = ()
    render_options: Any = None      # render.job.EngineOptions when renders are made here (default: in-process)

    def __post_init__(self) -> None:
        if self.n < 1:
            raise AvatarToolError(f"-n must be at least 1, got {self.n}")
        if self.chunk < 1:
            raise AvatarToolError(f"--chunk must be at least 1, got {self.chunk}")
        if self.augment.k < 0:
            raise AvatarToolError(f"-k must be 0 or more, got {self.augment.k}")
        if self.latent_anchor not in ("start", "mean"):
            raise AvatarToolError(f"latent anchor must be 'start' or 'mean', got {self.latent_anchor!r}")
        if self.max_loss == "auto":
            pass
        elif isinstance(self.max_loss, str):
            raise AvatarToolError(f"--max-loss must be a number or 'auto', got {self.max_loss!r}")
        elif self.max_loss is not None and self.max_loss <= 0:
            raise AvatarToolError(f"--max-loss must be positive (or negative to turn the filter off), got {self.max_loss}")

    def fingerprint(self) -> dict[str, Any]:
        """What must not change between a run and its resumption."""
        # the transfer enters only when on, so datasets made before it existed keep their fingerprint
        return {"engine": self.engine, "render_size": self.render_size, "render_seed": self.render_seed,
                "chunk": self.chunk, "max_loss": self.max_loss, "latent_anchor": self.latent_anchor, "init": vars(self.init),
                "inversion": self.inversion.to_json(), "augment": self.augment.to_json(),
                **({"recolour": list(self.recolour)} if self.recolour else {})}


def resolve_generators(run: str | Path | None = None, real: str | Path | None = None,
                       avatar: str | Path | None = None) -> tuple[Path, Path]:
    def gen_file(p: Path) -> Path:
        return p / "generator.safetensors" if p.is_dir() else p
    r = Path(real) if real else None
    a = Path(avatar) if avatar else None
    if run is not None:
        run = Path(run)
        if (run / "real").exists() and (run / "avatar").exists():
            r, a = r or run / "real", a or run / "avatar"
        elif (run / "run.json").is_file():
            meta = json.loads((run / "run.json").read_text())
            a = a or run
            if r is None and meta.get("real_generator"):
                r = Path(meta["real_generator"])
        else:
            raise AvatarToolError(f"--generators {run}: expected real/ and avatar/ folders or a finetune run folder (run.json)")
    if r is None or a is None:
        raise AvatarToolError("need both generators: --generators RUN, or --real-generator and --avatar-generator")
    r, a = gen_file(r), gen_file(a)
    for role, p in (("G_real", r), ("G_avatar", a)):
        if not p.is_file():
            raise AvatarToolError(f"{role}: {p} does not exist")
    return r, a


def inversion_items(cfg: PairsConfig, folder: RenderFolder, vectors: list[dict], sources: Iterable[int], init,
                    g_av) -> Iterator[tuple]:
    """Lazily, per source render: (index, target, start code, anchor or None, part map or None), as
    :func:`~.inversion.invert_stream` reads them. Part maps are read only when the part-map term is on."""
    size = g_av.cfg.size
    anchor = init.w_mean if cfg.latent_anchor == "mean" else None
    lut = np.array(g_av.cfg.label_to_part(), np.int64) if cfg.inversion.lambda_s > 0 else None
    for i in sources:
        parts = None
        if lut is not None:
            path = folder.mask_path(i)
            if path is None:
                raise AvatarToolError(f"render {i} of {folder.root} has no mask, which the part-map term of the "
                                      "inversion needs; set pairs.mask_weight=0 (--mask-weight 0) for an engine "
                                      "that draws no masks")
            parts = torch.from_numpy(part_map(path, size, lut))
        yield (i, uint8_to_signed(load_target(folder.image_path(i), size)[None])[0],
               init.for_vectors([vectors[i]])[0], anchor, parts)


def render_colours(cfg: PairsConfig, folder: RenderFolder, g_real) -> RenderColours | None:
    """The colour transfer's source colours, or None when it is off; checks the part names and that the renders have
    masks before any inversion runs."""
    if not cfg.recolour:
        return None
    return RenderColours(folder, g_real.cfg, resolve_recolour_parts(g_real.cfg, cfg.recolour))


def source_generator(seed: int, source: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + source)


def _ensure_renders(cfg: PairsConfig, out: Path) -> RenderFolder:
    from ..render.job import EngineOptions, render_folder
    rdir = Path(cfg.renders) if cfg.renders else out / "renders"
    if not (is_render_folder(rdir) and RenderFolder.open(rdir).rendered(cfg.n)):
        opts = cfg.render_options or EngineOptions(workers=0)
        render_folder(opts.config(cfg.engine, cfg.n, seed=cfg.render_seed, size=cfg.render_size), rdir)
    folder = RenderFolder.open(rdir)
    if folder.engine != cfg.engine:
        raise AvatarToolError(f"{rdir} holds renders of engine '{folder.engine}', not '{cfg.engine}'")
    return folder


def chunk_samples(cfg: PairsConfig, g_real, src: list[int], results: list[InvertedSample], vectors: list[dict],
                  max_loss: float | None, auto_floor: float | None = None,
                  colours: RenderColours | None = None) -> tuple[list[tuple], list[dict]]:
    """Filter, synthesise and augment one chunk of finished sources: ([(image, vector, provenance, latent)],
    dropped sources). With ``auto_floor`` the threshold is this chunk's :func:`chunk_threshold`; with ``colours``
    every face of a source takes those parts' colours from its render (:mod:`.recolour`)."""
    if auto_floor is not None:
        max_loss = chunk_threshold([r.loss for r in results], auto_floor)
    dropped, samples = [], []
    with torch.no_grad():
        for i, res, vector in zip(src, results, vectors):
            if max_loss is not None and res.loss > max_loss:
                dropped.append({"source": i, "loss": round(res.loss, 5), "threshold": round(max_loss, 5)})
                continue
            codes = torch.cat((res.wplus[None], augment(g_real, res.wplus, cfg.augment.strengths, cfg.augment.k,
                                                        source_generator(cfg.augment.seed, i))))
            synth = g_real.synthesize(codes, "const")
            images = signed_to_uint8(synth.image)
            if colours is not None:
                targets = np.repeat(colours(i)[None], len(codes), axis=0)
                images = transfer_colours(images, synth.part_probs().float().cpu().numpy(), colours.parts, targets)
            stats = {"loss": round(res.loss, 5), "perceptual": round(res.perceptual, 5), "mse": round(res.mse, 5),
                     "steps": res.steps}
            for j in range(len(codes)):
                samples.append((images[j], vector, {"source": i, "aug": j, **(stats if j == 0 else {})},
                                codes[j].cpu().numpy()))
    return samples, dropped


def _seal_chunk(cfg: PairsConfig, writer: PairedDatasetWriter, g_real, src: list[int], results: list[InvertedSample],
                vectors: list[dict], max_loss: float | None, auto_floor: float | None = None,
                colours: RenderColours | None = None) -> dict[str, Any]:
    """:func:`chunk_samples`, written as one shard together with the progress record (one atomic index
    write). Returns the new progress record."""
    wmeta = writer.index["meta"]
    samples, dropped = chunk_samples(cfg, g_real, src, results, vectors, max_loss, auto_floor, colours)
    for image, vector, provenance, latent in samples:
        writer.add(image, vector, provenance=provenance, latent=latent)
    added = len(samples)
    prog = {"sources_done": src[-1] + 1, "dropped": wmeta["progress"]["dropped"] + dropped}
    wmeta["progress"] = prog
    if added:
        writer.flush()  # shard + index (with the progress above) in one atomic index write
    else:
        writer.save_index()
    return prog


def produce_pairs(cfg: PairsConfig, out_dir: str | Path, real_generator: str | Path, avatar_generator: str | Path,
                  progress: ProgressFn | None = None, stop_after_chunks: int | None = None) -> dict[str, Any]:
    """Produce (or resume) the paired dataset in ``out_dir``. Returns a summary."""
    out = Path(out_dir)
    t0 = time.perf_counter()
    dist = distributed.info()
    folder = distributed.main_only_write(_ensure_renders, cfg, out) if dist.enabled else _ensure_renders(cfg, out)
    if folder is None:
        folder = _ensure_renders(cfg, out)  # rank 0 rendered; this only opens and checks the folder
    folder.require(cfg.n)
    schema, rdir, vectors = folder.schema, folder.root, folder.vectors[: cfg.n]
    g_real, _ = load_generator(real_generator)
    g_av, _ = load_generator(avatar_generator)
    for g in (g_real, g_av):
        g.requires_grad_(False)
    if (g_real.cfg.parts, g_real.cfg.n_latent, g_real.cfg.style_dim) != (g_av.cfg.parts, g_av.cfg.n_latent, g_av.cfg.style_dim):
        raise AvatarToolError("G_real and G_avatar have different W+ layouts; they must share one config")
    resolve_parts(g_real, cfg.augment.strengths)  # fail before any work on a bad part name
    colours = render_colours(cfg, folder, g_real)
    perceptual, lpips_info = make_perceptual(cfg.lpips_weights)
    auto_floor = default_max_loss(lpips_info["used"]) if cfg.max_loss == "auto" else None
    max_loss = None if auto_floor is not None else cfg.max_loss
    fingerprint = {**cfg.fingerprint(), "lpips": {k: lpips_info.get(k) for k in ("used", "fallback")},
                   "generators": {"real": str(Path(real_generator).resolve()), "avatar": str(Path(avatar_generator).resolve())}}
    made_from = [render_folder_origin(rdir, cfg.n), generator_origin(real_generator), generator_origin(avatar_generator)]
    meta = {"kind": "gan-pairs", "engine": folder.engine_name, "engine_spec": cfg.engine, "sources": [str(rdir.resolve())],
            "fingerprint": fingerprint, "made_from": made_from,
            "lpips": lpips_info, "samples_per_source": 1 + cfg.augment.k,
            "progress": {"sources_done": 0, "dropped": []}}
    # rank 0 creates the index, the other ranks read it (we seal shards ourselves: no size limit)
    writer = distributed.main_only_write(PairedDatasetWriter, out, schema, meta=meta, shard_size=10 ** 12)
    if writer is None:
        writer = PairedDatasetWriter(out, schema, meta=meta, shard_size=10 ** 12)
    wmeta = writer.index["meta"]
    if wmeta.get("fingerprint") != fingerprint:
        raise AvatarToolError(f"{out} holds paired data made with other settings; rerun with the same options to "
                              "resume it, or choose another --out folder")
    wmeta.setdefault("made_from", made_from)   # a dataset begun before provenance was recorded
    init = build_init(g_av, schema, cfg.init)
    wmeta["init"] = init.to_json()
    if dist.enabled:
        from .pairs_ranks import produce_on_ranks
        produce_on_ranks(cfg, out, writer, g_real, g_av, perceptual, init, folder, vectors, max_loss, auto_floor,
                         progress, stop_after_chunks, colours)
        return distributed.broadcast_object(
            _summary(cfg, out, writer, g_av, rdir, lpips_info, init, auto_floor, max_loss, t0) if dist.is_main else None)
    from .pairs_ranks import merge_parts
    merge_parts(cfg, out, writer)  # chunks an interrupted run on several ranks finished
    prog = wmeta["progress"]
    start = prog["sources_done"]
    if progress:
        progress(start, cfg.n, {"kept": len(writer) // (1 + cfg.augment.k), "dropped": len(prog["dropped"]),
                                "sealed": start})
    items = inversion_items(cfg, folder, vectors, range(start, cfg.n), init, g_av)
    finished: dict[int, InvertedSample] = {}
    chunks, c0 = 0, start
    stream = invert_stream(g_av, perceptual, items, cfg.inversion)
    try:
        for n_inverted, (i, res) in enumerate(stream, 1):
            finished[i] = res
            if progress:
                progress(start + n_inverted, cfg.n, {"kept": len(writer) // (1 + cfg.augment.k),
                                                     "dropped": len(wmeta["progress"]["dropped"]), "sealed": c0})
            # seal chunks in source order as soon as all of their sources are finished
            while c0 < cfg.n and all(j in finished for j in range(c0, min(cfg.n, c0 + cfg.chunk))):
                src = list(range(c0, min(cfg.n, c0 + cfg.chunk)))
                prog = _seal_chunk(cfg, writer, g_real, src, [finished.pop(j) for j in src],
                                   [vectors[j] for j in src], max_loss, auto_floor, colours)
                c0, chunks = src[-1] + 1, chunks + 1
            if stop_after_chunks is not None and chunks >= stop_after_chunks:
                break
    finally:
        stream.close()
    merge_parts(cfg, out, writer)  # only deletes parts of chunks this run made itself
    return _summary(cfg, out, writer, g_av, rdir, lpips_info, init, auto_floor, max_loss, t0)


def _summary(cfg: PairsConfig, out: Path, writer: PairedDatasetWriter, g_av, rdir: Path, lpips_info: dict, init,
             auto_floor: float | None, max_loss: float | None, t0: float) -> dict[str, Any]:
    wmeta = writer.index["meta"]
    prog = wmeta["progress"]
    done = prog["sources_done"] >= cfg.n
    summary = {"out": str(out), "sources": cfg.n, "sources_done": prog["sources_done"], "samples": len(writer),
               "kept_sources": len(writer) // (1 + cfg.augment.k), "dropped_sources": len(prog["dropped"]),
               "dropped": prog["dropped"], "lpips": lpips_info, "init": init.to_json(),
               "max_loss": f"auto (chunk Q3+{TUKEY_K} IQR, floor {auto_floor})" if auto_floor is not None else max_loss,
               "seconds": round(time.perf_counter() - t0, 1), "complete": done}
    if done and len(writer) and cfg.grid_sources:
        from .figures import pairs_grid
        summary["grid"] = str(pairs_grid(out, g_av, rdir, n_sources=cfg.grid_sources))
    return summary

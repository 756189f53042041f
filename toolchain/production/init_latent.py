"""Where inversion starts: the paper's w_mean, and the modified w̃_mean for assets that may be absent.

Starting every inversion at the mean face misses transparent / optional assets (glasses): the mean
code draws none, and the gradient of a thin, half-transparent part is too weak to grow one. The
schema says which discrete parameters may be absent (``DiscreteParam.absent_option``) and which part
they live on; the generator config says which W+ rows drive that part (``latent_slices``). For every
such parameter whose part maps to its *own* generator part (glasses: yes; beard: no, it shares the
hair part), we build a "present" code for the part's rows:

1. map ``n`` samples, score each by the part's mean coarse-segmentation probability, and average the
   part rows of the top ``top_frac`` (the samples whose segmentation shows the asset most);
2. the finetuned G_avatar rarely draws the asset at all (mode dropping), so this mean still shows
   little of it: a few Adam steps on those rows only push the part's soft coverage of the mean face
   to ``target_coverage`` (the fraction of render pixels the asset covers, measured on the render masks).

The same problem runs the other way on a G_avatar that draws the asset on its mean face (ours does
after longer finetuning on renders where 60 % wear glasses): inversions of bare faces then keep faint
glasses. So an "absent" code is built the same way from the samples that show the asset *least*,
calibrated towards zero coverage.

Per vector, the part rows start at the present code when the asset is there and at the absent code
when it is not; every other row starts at w_mean. Modes: ``"modified"`` (both codes), ``"present"``
(present code only, absent vectors start at w_mean: the paper's w̃_mean) and ``"mean"`` (the plain
w_mean everywhere: the ablation).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import AvatarToolError
from ..generators.generator import SemanticGenerator
from ..schema import AvatarSchema, DiscreteParam


INIT_MODES = ("modified", "present", "mean")


@dataclass
class InitConfig:
    mode: str = "modified"          # "modified" (present + absent codes), "present" (w̃_mean) or "mean" (w_mean)
    n_mean: int = 10_000            # mapped samples for w_mean (paper: 10^4)
    seed: int = 0
    top_frac: float = 0.01          # fraction of samples, ranked by part coverage, averaged for "present"
    target_coverage: float = 0.03   # soft part coverage the present code is pushed to (renders: ~0.027 glasses)
    calib_steps: int = 60
    calib_lr: float = 0.05

    def __post_init__(self) -> None:
        if self.mode not in INIT_MODES:
            raise AvatarToolError(f"--init must be one of {', '.join(INIT_MODES)}, got {self.mode!r}")


@dataclass
class PartInit:
    param: str
    part: str
    absent_index: int
    rows: slice
    present: torch.Tensor           # [rows, D]
    coverage_before: float
    coverage_after: float
    absent: torch.Tensor | None = None   # [rows, D]; None: absent vectors start at w_mean
    absent_coverage: float | None = None


@dataclass
class LatentInit:
    w_mean: torch.Tensor                       # [n_latent, D]
    parts: list[PartInit] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    mode: str = "modified"

    def for_vectors(self, vectors: Sequence[dict]) -> torch.Tensor:
        """Initial W+ [B, n_latent, D] per avatar vector."""
        w = self.w_mean[None].repeat(len(vectors), 1, 1)
        for b, v in enumerate(vectors):
            for p in self.parts:
                if int(v[p.param]) != p.absent_index:
                    w[b, p.rows] = p.present
                elif p.absent is not None:
                    w[b, p.rows] = p.absent
        return w

    def to_json(self) -> dict[str, Any]:
        return {"mode": self.mode, "skipped": self.skipped,
                "parts": [{"param": p.param, "part": p.part, "rows": [p.rows.start, p.rows.stop],
                           "coverage_before": round(p.coverage_before, 5), "coverage_after": round(p.coverage_after, 5),
                           "absent_coverage": None if p.absent_coverage is None else round(p.absent_coverage, 5)}
                          for p in self.parts]}


def generator_part(schema_part: str, g: SemanticGenerator) -> tuple[str | None, str]:
    """The generator part a schema part maps to, if it is that part's only source (-> (part, reason))."""
    cfg = g.cfg
    labels = cfg.mask_labels or cfg.parts
    if schema_part not in labels:
        return None, f"part '{schema_part}' is not one of the generator's mask labels"
    lut = cfg.label_to_part()
    gp = lut[labels.index(schema_part)]
    if lut.count(gp) > 1:
        return None, f"part '{schema_part}' shares the generator part '{cfg.parts[gp]}' with other labels"
    return cfg.parts[gp], ""


@torch.no_grad()
def _score(g: SemanticGenerator, wplus: torch.Tensor, k: int) -> torch.Tensor:
    return torch.cat([g.synthesize(c, "const").seg_coarse[:, k].mean((1, 2)) for c in wplus.split(500)])


def _with_rows(w_mean: torch.Tensor, rows: slice, code: torch.Tensor) -> torch.Tensor:
    return torch.cat((w_mean[None, :rows.start], code[None], w_mean[None, rows.stop:]), 1)


def _coverage(g: SemanticGenerator, w_mean: torch.Tensor, rows: slice, code: torch.Tensor, k: int) -> float:
    return float(_score(g, _with_rows(w_mean, rows, code), k)[0])


def _calibrate(g: SemanticGenerator, w_mean: torch.Tensor, rows: slice, code: torch.Tensor, k: int, target: float,
               cfg: InitConfig) -> torch.Tensor:
    """A few Adam steps on the part's rows only, pushing the part's soft coverage of the mean face to ``target``."""
    code = code.clone().requires_grad_(True)
    opt = torch.optim.Adam([code], lr=cfg.calib_lr)
    for _ in range(cfg.calib_steps):
        cov = g.synthesize(_with_rows(w_mean, rows, code), "const").seg_coarse[:, k].mean()
        code.grad = torch.autograd.grad((cov - target) ** 2, code)[0]  # no grads into the generator's weights
        opt.step()
    return code.detach()


def build_init(g: SemanticGenerator, schema: AvatarSchema, cfg: InitConfig = InitConfig()) -> LatentInit:
    gc = g.cfg
    dev = next(g.parameters()).device
    z = torch.randn(cfg.n_mean, gc.style_dim, generator=torch.Generator().manual_seed(cfg.seed)).to(dev)
    with torch.no_grad():
        ws = torch.cat([g.mapping(c) for c in z.split(2048)])
    w_mean = ws.mean(0)[None].repeat(gc.n_latent, 1)
    init = LatentInit(w_mean=w_mean, mode=cfg.mode)
    if cfg.mode == "mean":
        return init
    slices = gc.latent_slices()
    for p in schema.discrete:
        if not (isinstance(p, DiscreteParam) and p.may_be_absent and p.part):
            continue
        part, why = generator_part(p.part, g)
        if part is None:
            init.skipped[p.name] = why
            continue
        k, rows = gc.part_index(part), slices[part]
        n_score = min(len(ws), 2000)
        scores = _score(g, ws[:n_score, None].expand(-1, gc.n_latent, -1), k)
        n_top = max(1, int(cfg.top_frac * n_score))
        present = ws[scores.topk(n_top).indices].mean(0)[None].repeat(rows.stop - rows.start, 1)
        before = _coverage(g, w_mean, rows, present, k)
        present = _calibrate(g, w_mean, rows, present, k, cfg.target_coverage, cfg)
        part_init = PartInit(p.name, part, p.absent_index, rows, present, before,
                             _coverage(g, w_mean, rows, present, k))
        if cfg.mode == "modified":
            absent = ws[scores.topk(n_top, largest=False).indices].mean(0)[None].repeat(rows.stop - rows.start, 1)
            part_init.absent = _calibrate(g, w_mean, rows, absent, k, 0.0, cfg)
            part_init.absent_coverage = _coverage(g, w_mean, rows, part_init.absent, k)
        init.parts.append(part_init)
    return init

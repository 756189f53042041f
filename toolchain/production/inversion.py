"""Batched optimisation-based GAN inversion into W+ (paper Eq. 4-5):

    w* = argmin_w  λp·LPIPS(y, G(w)) + λi·‖y − G(w)‖² + λl·‖w − w_0‖²  [+ λs·CE(m, P(w))]

Adam, lr 0.1 with cosine annealing, 200 steps (the paper's settings; all in ``InversionConfig``).
The bracketed term is ours, off by default: the cross-entropy between the target's part map ``m`` (an engine
draws one with every render) and G's own per-pixel part probabilities ``P(w)``. Image losses alone let a code
keep the wrong hair outline or colour (long hair came back short, blue hair brown); the part map says where the
hair, glasses and skin are, so the code must put them there.
``‖·‖²`` are means over a sample's pixels / latent entries. ``w_0`` is the sample's *anchor*: by default
where it started (the paper's w_mean; the modified w̃_mean for assets it has, so the regulariser does
not pull them out again); an item may name another anchor (e.g. w_mean for every sample, the paper's
literal regulariser). Every sample runs its ``steps`` (the paper); early stopping is an option.

Images stream through a fixed number of *slots* (``batch_size``): every optimisation step runs the
generator and the loss on all slots at once; a sample that has run its steps, or stopped improving
(relative gain < ``early_stop_tol`` over ``patience`` steps), hands its slot to the next image at once,
so early stopping saves work and no slot idles until the input runs out.

Why slots, and not a batch that shrinks as samples converge: on CPU the kernels PyTorch picks (and so
the rounding) depend on the batch *size*, and Adam amplifies 1e-8 gradient differences into visible
ones over 200 steps. With a fixed shape, a row's arithmetic does not depend on what the other rows
hold or on the row's position (checked: bit for bit), and everything else here is per slot:
* the loss is a sum of per-sample terms, so each W+ row gets exactly its own gradient;
* Adam is written out elementwise with a step counter per slot; learning rates and bias corrections
  come from tables computed in Python, so no vectorised transcendental sees a slot-dependent lane;
* the generator uses its fixed ("const") noise buffers; nothing in it mixes samples (no batch norm).
So a sample's result is bit-identical whichever images share its batch, in whatever order, and
whenever it entered. Changing ``batch_size`` (the slot count) may change results in the last digits.

``precision="bf16"`` runs the generator's pass under bf16 autocast (2.0x faster on a 2-core CPU with
AVX512-BF16, same final loss); the slot property holds there too (tested), only the codes differ from fp32's.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Hashable, Iterable, Iterator

import torch
from torch import nn

from ..errors import AvatarToolError
from ..precision import resolve_precision
from ..generators.generator import SemanticGenerator


EARLY_STOP_TOL = 1e-3               # what ``--early-stop`` turns on: relative gain per ``patience`` steps


@dataclass(frozen=True)
class InversionConfig:
    steps: int = 200
    lr: float = 0.1
    schedule: str = "cosine"        # "cosine" (paper) or "constant"
    lambda_p: float = 1.0           # perceptual (LPIPS or its fallback)
    lambda_i: float = 0.1           # pixel MSE
    lambda_l: float = 1.0           # latent regulariser towards the start code
    lambda_s: float = 0.0           # part-map cross-entropy (ours, not the paper's); > 0 needs a part map per item
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    early_stop_tol: float = 0.0     # relative loss gain below which a sample counts as converged; 0: off (paper)
    patience: int = 25
    batch_size: int = 64            # slots: images optimised together (the fixed batch shape)
    precision: str = "fp32"         # the generator pass's arithmetic, resolved: "fp32" or "bf16" (autocast)

    def __post_init__(self) -> None:
        if self.precision not in ("fp32", "bf16"):
            raise AvatarToolError(f"inversion precision must be 'fp32' or 'bf16' (resolve 'auto' first), "
                                  f"got {self.precision!r}")
        if self.schedule not in ("cosine", "constant"):
            raise AvatarToolError(f"inversion schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.steps < 1:
            raise AvatarToolError(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise AvatarToolError(f"--batch (inversion slots) must be at least 1, got {self.batch_size}")
        if self.lambda_s < 0:
            raise AvatarToolError(f"the part-map weight (mask weight) must be 0 or more, got {self.lambda_s}")

    def to_json(self) -> dict:
        d = asdict(self)
        d["betas"] = list(self.betas)
        return d


def inversion_precision(setting: str) -> str:
    """``setting`` (auto / bf16 / fp32) resolved for the inversion, which runs where the pairs load their
    generators: on the CPU."""
    return resolve_precision(setting, "cpu")


@dataclass
class InvertedSample:
    """One finished inversion. The terms are evaluated at the returned code."""
    wplus: torch.Tensor             # [n_latent, D]
    loss: float
    perceptual: float
    mse: float
    latent: float
    steps: int                      # Adam steps taken before it finished
    semantic: float = 0.0           # part-map cross-entropy (0 when lambda_s is 0)


@dataclass
class InversionResult:
    wplus: torch.Tensor             # [B, n_latent, D]
    loss: torch.Tensor              # [B] final total loss (evaluated at the returned codes)
    perceptual: torch.Tensor        # [B]
    mse: torch.Tensor               # [B]
    latent: torch.Tensor            # [B]
    steps_run: torch.Tensor         # [B] Adam steps each sample took before it finished
    semantic: torch.Tensor          # [B]
    history: dict[str, list[float]] = field(default_factory=dict)  # per step, means over busy slots


def lr_at(cfg: InversionConfig, step: int) -> float:
    if cfg.schedule == "constant":
        return cfg.lr
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * step / cfg.steps))


def _terms(g: SemanticGenerator, perceptual: nn.Module, cfg: InversionConfig, w: torch.Tensor, w0: torch.Tensor,
           y: torch.Tensor, parts: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    # bf16 runs only the generator's pass (and its backward); the losses, the gradient w.r.t. W+ and Adam stay
    # float32, so the codes themselves are never rounded to bf16
    with torch.autocast(device_type=w.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        out = g.synthesize(w, "const")
    x = out.image.float()
    p = perceptual(x, y)
    mse = (x - y).pow(2).mean((1, 2, 3))
    lat = (w - w0).pow(2).mean((1, 2))
    loss = cfg.lambda_p * p + cfg.lambda_i * mse + cfg.lambda_l * lat
    if parts is None:
        return loss, p, mse, lat, torch.zeros_like(lat)
    # the raw depth softmax, in which glasses compete with what lies under them, so glasses drawn where the map
    # has none cost as much as glasses missing
    probs = out.part_probs().float().clamp_min(1e-6)
    sem = -probs.log().gather(1, parts[:, None]).mean((1, 2, 3))
    return loss + cfg.lambda_s * sem, p, mse, lat, sem


def invert_stream(g: SemanticGenerator, perceptual: nn.Module, items: Iterable[tuple],
                  cfg: InversionConfig = InversionConfig(), history: dict[str, list[float]] | None = None,
                  on_step: Callable[[int], None] | None = None) -> Iterator[tuple[Hashable, InvertedSample]]:
    """Invert ``items`` = (key, target [3, S, S] in [-1, 1], start code [n_latent, D][, anchor code of the
    latent regulariser or None for the start code[, part map: int64 [S, S] of G's part indices, needed when
    ``cfg.lambda_s`` > 0]]), read lazily as slots free up; yields (key, result) as samples finish, which is not
    input order. ``history``, when given, receives per step the mean terms over busy slots; ``on_step`` gets
    the global step count."""
    g.requires_grad_(False)
    dev = next(g.parameters()).device
    it = iter(items)
    first = next(it, None)
    if first is None:
        return
    n_slots = cfg.batch_size
    y1, w1 = first[1], first[2]
    y = y1.to(dev)[None].repeat(n_slots, 1, 1, 1)          # idle slots hold a copy of real data (finite,
    w = w1.to(dev)[None].repeat(n_slots, 1, 1)             # harmless); their results are never used
    w0, m, v = w.clone(), torch.zeros_like(w), torch.zeros_like(w)
    parts = torch.zeros(n_slots, *y.shape[-2:], dtype=torch.long, device=dev) if cfg.lambda_s > 0 else None
    t = torch.zeros(n_slots, dtype=torch.long, device=dev)  # Adam steps taken, per slot
    best = torch.full((n_slots,), float("inf"), device=dev)
    since_best = torch.zeros(n_slots, dtype=torch.long, device=dev)
    keys: list[Hashable | None] = [None] * n_slots
    beta1, beta2 = cfg.betas
    lr_table = torch.tensor([lr_at(cfg, s) for s in range(cfg.steps)], device=dev)
    bc1 = torch.tensor([1 - beta1 ** (s + 1) for s in range(cfg.steps)], device=dev)
    bc2 = torch.tensor([1 - beta2 ** (s + 1) for s in range(cfg.steps)], device=dev)
    pending: list[Any] = [first]

    def fill() -> None:
        for s in range(n_slots):
            if keys[s] is not None:
                continue
            item = pending.pop() if pending else next(it, None)
            if item is None:
                return
            key, ys, ws = item[:3]
            anchor = item[3] if len(item) > 3 and item[3] is not None else ws
            if parts is not None:
                if len(item) < 5 or item[4] is None:
                    raise AvatarToolError(f"inversion item {key!r} has no part map, but the part-map term is on "
                                          f"(lambda_s {cfg.lambda_s}); give the target's mask or set the weight to 0")
                parts[s] = item[4].to(dev)
            keys[s] = key
            y[s], w[s], w0[s] = ys.to(dev), ws.to(dev), anchor.to(dev)
            m[s], v[s], t[s], best[s], since_best[s] = 0, 0, 0, float("inf"), 0

    fill()
    step = 0
    while any(k is not None for k in keys):
        busy = torch.tensor([k is not None for k in keys], device=dev)
        wa = w.detach().requires_grad_(True)
        loss, p, mse, lat, sem = _terms(g, perceptual, cfg, wa, w0, y, parts)
        grad, = torch.autograd.grad(loss.sum(), wa)        # sum: every row gets its own sample's gradient
        with torch.no_grad():
            ld = loss.detach()
            finish = t >= cfg.steps
            if cfg.early_stop_tol > 0:
                improved = ld < best * (1 - cfg.early_stop_tol)
                best = torch.where(improved, ld, torch.minimum(best, ld))
                since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
                finish = finish | (since_best >= cfg.patience)
            finish = finish & busy
            if history is not None:
                for k_, val in zip(("loss", "perceptual", "mse", "latent", "semantic"), (ld, p, mse, lat, sem)):
                    history.setdefault(k_, []).append(float(val[busy].mean()))
                history.setdefault("active", []).append(int(busy.sum()))
            done = []
            for s in finish.nonzero().flatten().tolist():
                done.append((keys[s], InvertedSample(w[s].clone(), float(ld[s]), float(p[s]), float(mse[s]),
                                                     float(lat[s]), int(t[s]), float(sem[s]))))
                keys[s] = None
            upd = (busy & ~finish)[:, None, None]
            tc = t.clamp(max=cfg.steps - 1)
            m = torch.where(upd, beta1 * m + (1 - beta1) * grad, m)
            v = torch.where(upd, beta2 * v + (1 - beta2) * grad * grad, v)
            mhat = m / bc1[tc][:, None, None]
            vhat = v / bc2[tc][:, None, None]
            w = torch.where(upd, w - lr_table[tc][:, None, None] * mhat / (vhat.sqrt() + cfg.eps), w)
            t = t + upd.flatten().long()
        step += 1
        if on_step:
            on_step(step)
        yield from done
        fill()


def invert(g: SemanticGenerator, perceptual: nn.Module, targets: torch.Tensor, w_init: torch.Tensor,
           cfg: InversionConfig = InversionConfig(), record_history: bool = False,
           parts: torch.Tensor | None = None) -> InversionResult:
    """Invert ``targets`` ([B, 3, S, S] in [-1, 1]) from ``w_init`` ([B, n_latent, D]) through
    ``cfg.batch_size`` slots, with the targets' part maps ``parts`` ([B, S, S] int64) when ``cfg.lambda_s`` > 0;
    results in input order."""
    hist: dict[str, list[float]] | None = {} if record_history else None
    items = ((i, targets[i], w_init[i], None, None if parts is None else parts[i]) for i in range(len(targets)))
    got = dict(invert_stream(g, perceptual, items, cfg, hist))
    out = [got[i] for i in range(len(targets))]
    return InversionResult(torch.stack([o.wplus for o in out]),
                           *(torch.tensor([getattr(o, k) for o in out]) for k in ("loss", "perceptual", "mse", "latent")),
                           torch.tensor([o.steps for o in out]), torch.tensor([o.semantic for o in out]), hist or {})

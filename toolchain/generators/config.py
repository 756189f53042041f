"""SemanticStyleGAN configuration: one dataclass from the tiny CPU/test size to the official 512 px model.

The generator has one *local generator* per semantic part. Our engines draw masks with their own label
set (e.g. ``face_art.PARTS``: 10 labels); ``part_sources`` maps each generator part to the mask labels it
covers, so a small config can merge labels (tiny: 6 parts) while the official config keeps CelebAMask-HQ's
13 classes. Part 0 is always the background (it gets no pseudo-depth and no shared coarse codes).

W+ layout (``n_latent = base_layers + 2 * n_parts`` codes of ``style_dim``)::

    [coarse_0 .. coarse_{base_layers-1}, part0.shape, part0.texture, part1.shape, part1.texture, ...]

Each local generator has ``local_layers`` modulated 1x1 layers: non-background parts use the coarse codes
for their first ``base_layers`` layers, their shape code up to ``depth_layers`` (where the pseudo-depth is
read out), then their texture code; the background uses its shape code up to ``depth_layers`` and its
texture code after. This is the layout of the official generator (Shi et al., CVPR 2022; facts taken
from github.com/seasonSH/SemanticStyleGAN, models/semantic_stylegan.py, see docs/semantic-stylegan-spec.md).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..errors import AvatarToolError

# Our engines' mask labels (toolchain/engines/face_art.py PARTS), value k in a mask PNG = ENGINE_LABELS[k].
ENGINE_LABELS = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "beard", "glasses", "clothes")

# CelebAMask-HQ as re-mapped by the official release (13 classes, transparent: 10 and 12).
OFFICIAL_PARTS = ("background", "face", "eye", "brow", "mouth", "nose", "ear", "hair", "neck", "cloth",
                  "eyeglass", "hat", "earring")


@dataclass(frozen=True)
class GeneratorConfig:
    size: int = 512                 # output image size (power of 2)
    style_dim: int = 512            # z / w width
    n_mlp: int = 8                  # mapping network depth
    lr_mlp: float = 0.01            # mapping network learning-rate multiplier
    parts: tuple[str, ...] = OFFICIAL_PARTS
    transparent: tuple[str, ...] = ("eyeglass", "earring")
    # generator part -> mask labels it covers (names in ``mask_labels``); empty = identity by name
    part_sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
    mask_labels: tuple[str, ...] = ()
    local_layers: int = 10          # modulated 1x1 layers per local generator
    base_layers: int = 2            # layers driven by the shared coarse codes
    depth_layers: int = 6           # pseudo-depth read out after this many layers
    local_channel: int = 64
    coarse_channel: int = 512       # feature channels each local generator outputs
    coarse_size: int = 64           # local generators' coordinate grid = coarse segmentation size
    min_feat_size: int = 16         # render net starts from the features pooled to this size
    channel_base: int = 32768       # render net / discriminator channels at size s: min(max, base // s)
    channel_max: int = 512
    residual_refine: bool = True    # final segmentation = coarse segmentation + learned residual
    fourier_freqs: int = 0          # 0: log2(size), as the official model
    # also embed the diagonal coordinates (x + y, x - y) / sqrt(2): their sinusoids are sums of products of x and
    # y sinusoids, so one linear projection can place blobs (two eyes) that axis-aligned ones draw as stripes.
    # Not in the official model (its positional embedding takes x and y only).
    fourier_diagonal: bool = False
    # also give the local generators a learned per-pixel embedding of the coarse grid (local_channel channels,
    # shared by all samples, concatenated to the Fourier features), as CIPS does: a spatial basis the network
    # learns, where fixed sinusoids fit small sharp parts (eyes, mouths) slowly. Not in the official model.
    coord_embedding: bool = False

    def __post_init__(self) -> None:
        if self.size & (self.size - 1) or self.size < 8:
            raise AvatarToolError(f"generator size must be a power of two >= 8, got {self.size}")
        if not (self.min_feat_size < self.coarse_size < self.size and self.coarse_size % self.min_feat_size == 0):
            raise AvatarToolError("need min_feat_size < coarse_size < size, coarse_size a multiple of min_feat_size")
        if not (self.base_layers < self.depth_layers <= self.local_layers):
            raise AvatarToolError("need base_layers < depth_layers <= local_layers")
        if len(self.parts) < 2 or self.parts[0] != "background":
            raise AvatarToolError("parts must start with 'background' and have at least 2 entries")
        for t in self.transparent:
            if t not in self.parts:
                raise AvatarToolError(f"transparent part '{t}' is not one of the parts {self.parts}")
        for p, src in self.part_sources.items():
            if p not in self.parts:
                raise AvatarToolError(f"part_sources names '{p}', which is not a generator part")
            bad = [s for s in src if s not in self.mask_labels]
            if bad:
                raise AvatarToolError(f"part_sources['{p}'] names unknown mask labels {bad}")

    # --- derived -----------------------------------------------------------------------------------
    @property
    def n_parts(self) -> int:
        return len(self.parts)

    @property
    def n_latent(self) -> int:
        return self.base_layers + 2 * self.n_parts

    @property
    def n_freqs(self) -> int:
        return self.fourier_freqs or int(math.log2(self.size))

    @property
    def local_in_channels(self) -> int:
        """Channels the local generators' first layer reads: the embedded coordinates."""
        return self.local_channel * (2 if self.coord_embedding else 1)

    @property
    def coord_channels(self) -> int:
        return 4 if self.fourier_diagonal else 2

    @property
    def transparent_idx(self) -> tuple[int, ...]:
        return tuple(self.parts.index(t) for t in self.transparent)

    def channels(self, s: int) -> int:
        return min(self.channel_max, self.channel_base // s)

    def part_index(self, name: str) -> int:
        if name not in self.parts:
            raise AvatarToolError(f"unknown part '{name}' (parts: {', '.join(self.parts)})")
        return self.parts.index(name)

    def latent_slices(self) -> dict[str, slice]:
        """Named rows of the W+ latent: 'coarse', '<part>' (shape+texture), '<part>.shape', '<part>.texture'."""
        out = {"coarse": slice(0, self.base_layers)}
        for i, p in enumerate(self.parts):
            k = self.base_layers + 2 * i
            out[p] = slice(k, k + 2)
            out[f"{p}.shape"] = slice(k, k + 1)
            out[f"{p}.texture"] = slice(k + 1, k + 2)
        return out

    def label_to_part(self) -> list[int]:
        """Lookup table: mask label index (in ``mask_labels``) -> generator part index."""
        labels = self.mask_labels or self.parts
        lut = [-1] * len(labels)
        for pi, p in enumerate(self.parts):
            for src in self.part_sources.get(p, (p,) if p in labels else ()):
                lut[labels.index(src)] = pi
        missing = [labels[k] for k, v in enumerate(lut) if v < 0]
        if missing:
            raise AvatarToolError(f"mask labels {missing} map to no generator part; add them to part_sources")
        return lut

    # --- (de)serialisation ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"], d["transparent"], d["mask_labels"] = list(self.parts), list(self.transparent), list(self.mask_labels)
        d["part_sources"] = {k: list(v) for k, v in self.part_sources.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "GeneratorConfig":
        d = dict(d)
        for k in ("parts", "transparent", "mask_labels"):
            if k in d:
                d[k] = tuple(d[k])
        d["part_sources"] = {k: tuple(v) for k, v in d.get("part_sources", {}).items()}
        return cls(**d)


# Tiny: 6 parts merged from the engines' 10 labels; 32 px out of a 16x16 coordinate grid. Trains on 2 CPU cores.
# Its Fourier features stop at frequency 4 (3 octaves, not log2(32) = 5): on the 16-point grid the higher ones
# alias into stripes and speckle that 600 steps never cleared, while with 3 the first hundreds of steps give
# smooth head silhouettes (compared at steps 250 and 600 on the smoke photos, 2026-12-03).
ENGINE_PART_SOURCES = {
    "background": ("background",),
    "skin": ("skin", "nose"),
    "hair": ("hair", "beard"),
    "features": ("eyes", "brows", "mouth"),
    "glasses": ("glasses",),
    "clothes": ("clothes",),
}

_TINY = GeneratorConfig(size=32, style_dim=64, n_mlp=2, parts=tuple(ENGINE_PART_SOURCES), transparent=("glasses",),
                        part_sources=ENGINE_PART_SOURCES, mask_labels=ENGINE_LABELS, local_layers=5, base_layers=2,
                        depth_layers=4, local_channel=32, coarse_channel=32, coarse_size=16, min_feat_size=8,
                        channel_base=1024, channel_max=64, fourier_freqs=3)

PRESETS: dict[str, GeneratorConfig] = {
    "official512": GeneratorConfig(),
    "official256": GeneratorConfig(size=256),
    # engines' 10 labels, one local generator each, 256 px (CPU benchmark size)
    "engine256": GeneratorConfig(size=256, parts=ENGINE_LABELS, transparent=("glasses",), mask_labels=ENGINE_LABELS,
                                 coarse_size=64, min_feat_size=16),
    "small64": GeneratorConfig(size=64, style_dim=128, n_mlp=4, parts=tuple(ENGINE_PART_SOURCES), transparent=("glasses",),
                               part_sources=ENGINE_PART_SOURCES, mask_labels=ENGINE_LABELS, local_layers=6, base_layers=2,
                               depth_layers=4, local_channel=32, coarse_channel=64, coarse_size=32, min_feat_size=8,
                               channel_base=4096, channel_max=128),
    "tiny": _TINY,
    # the best G_real measured on this project's CPUs (README, "The ablation on our data"): `tiny` at 64 px with a
    # 32x32 coarse grid, octaves to 2^4 with diagonal sinusoids, local generators twice as wide plus a learned
    # per-pixel embedding; 39/200 faces (25 % of the proxy photos' own rate) after 4,500 steps, ~0.95 steps/s on
    # 2 threads (benchmarks/results/g_real_size_64px_c32_f5_diag_l64_emb_4500.md: AMD EPYC, float32, denormals kept);
    # ~2.1 steps/s in bf16 with denormals flushed on a Xeon with AMX, 36/200 faces (g_real_size_64px_face64_4500_bf16.md);
    # tests pin it to that result
    "face64": replace(_TINY, size=64, local_channel=64, coarse_size=32, channel_base=2048, fourier_freqs=5,
                      fourier_diagonal=True, coord_embedding=True),
}


def generator_preset(name: str, **overrides: Any) -> GeneratorConfig:
    from ..presets import lookup_preset
    return lookup_preset(PRESETS, name, "generator config", **overrides)

"""Fuse-time rewrite of nearest Upsample → Concat → BiLevelRoutingAttention into one layer whose q/k/v projection of
the upsampled input runs at its low resolution (docs/bra.md, "The inference path").

BRA's q/k/v projection is per pixel and nearest upsampling copies pixels, so W·cat(up(a), b) = up(W_a·a) + W_b·b:
the projection of the upsampled channels costs 1/s² of the plain one, and neither the upsampled nor the
concatenated image is built. Exact up to float rounding. Under autograd, tracing, FLOP counting, hooks on the inner
BRA, ... (whenever BRA's CPU inference path would not run) the layer computes upsample, concat, BRA as written.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .block import BiLevelRoutingAttention
from .bra_infer import bra_infer_projected, infer_path_applies, project_upsampled
from .conv import Concat


class LayerInputs(tuple):
    """The inputs of a fused layer, passed on as one value; slicing slices the batch of each (x[:1]: first image)."""

    def __getitem__(self, key):  # noqa: ANN001, ANN204 (tuple's signature)
        if isinstance(key, slice):
            return LayerInputs(t[key] for t in self)
        return tuple.__getitem__(self, key)


class PassThrough(nn.Module):
    """Stands in for a layer folded into a later one: returns its input (a list becomes `LayerInputs`).

    `original` is the replaced layer (kept unregistered: it has no parameters, the state_dict is unchanged), for
    the forwards that show every stage as built (`visualize`, `embed`)."""

    def __init__(self, original: nn.Module | None = None):
        super().__init__()
        self.__dict__["original"] = original

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor | LayerInputs:
        return LayerInputs(x) if isinstance(x, list) else x


class UpsampleConcatBRA(nn.Module):
    """BRA of cat(up(x[u]), x[1-u]) along channels, `up` a nearest integer-scale `nn.Upsample`, `u` = `up_index`."""

    def __init__(self, bra: BiLevelRoutingAttention, up: nn.Upsample, up_index: int):
        super().__init__()
        self.bra, self.up, self.up_index = bra, up, up_index
        self.scale = int(_integer_scale(up))

    @property
    def original(self) -> BiLevelRoutingAttention:
        """The BRA layer as built (it takes the concatenated image), for forwards that show every stage."""
        return self.bra

    def forward(self, x: LayerInputs | list[torch.Tensor]) -> torch.Tensor:
        low, full = x[self.up_index], x[1 - self.up_index]
        if self._fused_applies(low, full):
            hh, ww = full.shape[-2:]
            self.bra._warn_padding(hh, ww)
            nw = self.bra.n_win
            q, kv = project_upsampled(self.bra, low, full, self.scale, self.up_index == 0)
            return bra_infer_projected(self.bra, q, kv, full.shape[0], hh, ww, (hh + nw - 1) // nw,
                                       (ww + nw - 1) // nw)
        parts = [self.up(low), full] if self.up_index == 0 else [full, self.up(low)]
        return self.bra(torch.cat(parts, 1))

    def _fused_applies(self, low: torch.Tensor, full: torch.Tensor) -> bool:
        """Shapes that concatenate, BRA's inference path applicable, no hooks on the BRA (they see its input)."""
        s, bra = self.scale, self.bra
        shapes = (low.dim() == 4 and full.dim() == 4 and low.shape[0] == full.shape[0]
                  and low.shape[1] + full.shape[1] == bra.dim and low.dtype == full.dtype
                  and (low.shape[2] * s, low.shape[3] * s) == tuple(full.shape[2:]))
        hooked = bra._forward_hooks or bra._forward_pre_hooks
        return shapes and not hooked and infer_path_applies(bra, full, full.shape[2], full.shape[3])


def _integer_scale(up: nn.Module) -> int | None:
    """The scale of a nearest `nn.Upsample` with one integer scale factor for both axes, else None."""
    if not isinstance(up, nn.Upsample) or up.mode != "nearest" or up.size is not None or up.scale_factor is None:
        return None
    sf = up.scale_factor if isinstance(up.scale_factor, tuple) else (up.scale_factor, up.scale_factor)
    if len(sf) != 2 or sf[0] != sf[1] or float(sf[0]) != int(sf[0]) or int(sf[0]) < 1:
        return None
    return int(sf[0])


def _sources(layer: nn.Module, i: int) -> list[int]:
    """The absolute indices of the layers feeding `layer` (index `i`)."""
    return [i - 1 if j == -1 else j for j in (layer.f if isinstance(layer.f, list) else [layer.f])]


def _tag(new: nn.Module, old: nn.Module, f: int | list[int]) -> nn.Module:
    new.i, new.f, new.type = old.i, f, f"{type(new).__module__}.{type(new).__name__}"
    new.np = sum(p.numel() for p in new.parameters())
    return new


def fuse_upsample_concat_bra(layers: nn.Sequential) -> int:
    """Rewrite each Upsample(nearest, integer scale) → Concat(two inputs, dim 1) → BRA run of `layers` (each with
    `.f`/`.i`) whose upsampled and concatenated images feed nothing else: the Upsample and Concat become
    `PassThrough` layers (same `.f`: the input of the upsampling, then both inputs), the BRA an `UpsampleConcatBRA`.
    Layer indices are kept, so `.f` and the saved outputs stay valid. Returns how many runs were rewritten."""
    fused = 0
    for k in range(2, len(layers)):
        bra, cat, up = layers[k], layers[k - 1], layers[k - 2]
        if not isinstance(bra, BiLevelRoutingAttention) or _sources(bra, k) != [k - 1] or _integer_scale(up) is None:
            continue
        if not isinstance(cat, Concat) or cat.d != 1 or len(_sources(cat, k - 1)) != 2:
            continue
        src = _sources(cat, k - 1)
        if src.count(k - 2) != 1:
            continue
        users = {j for j, m in enumerate(layers) for s in _sources(m, j) if s in (k - 2, k - 1)}
        if users != {k - 1, k}:  # the upsampled image feeds only the Concat, the concatenation only the BRA
            continue
        layers[k - 2] = _tag(PassThrough(up), up, up.f)
        layers[k - 1] = _tag(PassThrough(cat), cat, cat.f)
        layers[k] = _tag(UpsampleConcatBRA(bra, up, src.index(k - 2)), bra, bra.f)
        fused += 1
    return fused

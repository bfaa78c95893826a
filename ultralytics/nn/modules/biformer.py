"""BiFormer's transformer block around Bi-Level Routing Attention, and a C2f whose bottlenecks are such blocks."""

from __future__ import annotations

import torch
import torch.nn as nn

from ultralytics.errors import ModelConfigError

from .block import C2f, BiLevelRoutingAttention

__all__ = ["BiFormerBlock", "C2f_BiFormer", "heads_for"]


def heads_for(dim: int, head_dim: int = 32) -> int:
    """Attention heads for `dim` channels: the largest divisor of dim not above dim / head_dim (at least 1)."""
    heads = max(1, dim // head_dim)
    while dim % heads:
        heads -= 1
    return heads


def _check_int(name: str, value: object, low: int = 1) -> None:
    """YAML rows are positional: a bool or float where an int belongs is a misplaced argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ModelConfigError(f"BiFormer: {name} must be an integer >= {low}, got {value!r} "
                               "(rows are [n_win, topk, mlp_ratio] after the channels; see docs/models.md)")


class BiFormerBlock(nn.Module):
    """BiFormer block on an (N, dim, H, W) map (same shape out).

    x + DWConv3×3(x) (position encoding), then x + BRA(LayerNorm(x)) and x + MLP(LayerNorm(x)) with a
    2-layer MLP of expansion `mlp_ratio` (GELU). The BRA has `dim / head_dim` heads (see `heads_for`), a
    `side_dwconv` LePE and the article's other defaults. state_dict keys follow BiFormer's `Block`:
    `pos_embed.*`, `norm1.*`, `attn.*`, `norm2.*`, `mlp.0.*`, `mlp.3.*`.
    """

    def __init__(self, dim: int, n_win: int = 7, topk: int = 4, mlp_ratio: float = 3.0, head_dim: int = 32,
                 side_dwconv: int = 5, qk_dim: int | None = None, auto_pad: bool = True):
        super().__init__()
        _check_int("n_win", n_win)
        _check_int("topk", topk)
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ModelConfigError(f"BiFormerBlock: mlp_ratio must be a positive number, got {mlp_ratio!r}")
        hidden = int(mlp_ratio * dim)
        self.pos_embed = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = BiLevelRoutingAttention(dim, n_win=n_win, num_heads=heads_for(dim, head_dim), qk_dim=qk_dim,
                                            topk=topk, side_dwconv=side_dwconv, auto_pad=auto_pad)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Identity(), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.pos_embed(x)
        t = x.permute(0, 2, 3, 1)  # NHWC view: LayerNorm and the MLP act on the channels of each token
        t = t + self.attn(self.norm1(t).permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2)


class C2f_BiFormer(C2f):  # noqa: N801 (the name yamls use)
    """C2f whose `n` bottlenecks are BiFormer blocks on its hidden `c2 · e` channels.

    Args: c1, c2 channels in/out; n blocks; n_win, topk, mlp_ratio of each block; e hidden-channel ratio.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, n_win: int = 7, topk: int = 4, mlp_ratio: float = 3.0,
                 e: float = 0.5):
        super().__init__(c1, c2, n, shortcut=False, e=e)
        self.m = nn.ModuleList(BiFormerBlock(self.c, n_win, topk, mlp_ratio) for _ in range(n))

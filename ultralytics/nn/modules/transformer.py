"""Transformer blocks for CNN feature maps (used by C3TR): TransformerLayer and TransformerBlock."""

from __future__ import annotations

import torch
import torch.nn as nn

from .conv import Conv

__all__ = ["TransformerLayer", "TransformerBlock"]


class TransformerLayer(nn.Module):
    """Post-residual transformer layer without LayerNorm on (sequence, batch, c) tensors.

    Bias-free q/k/v projections feed multi-head attention (residual added), then a bias-free two-layer linear
    stack without activation (residual added).
    """

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ma(self.q(x), self.k(x), self.v(x))[0]
        return x + self.fc2(self.fc1(x))


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (H·W, B, C)."""
    return x.flatten(2).permute(2, 0, 1)


def tokens_to_map(t: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(H·W, B, C) → (B, C, H, W)."""
    return t.permute(1, 2, 0).reshape(t.shape[1], t.shape[2], height, width)


class TransformerBlock(nn.Module):
    """Optional 1×1 Conv to c2 channels (when c1 != c2), a learned linear position term added to the pixel tokens,
    then `num_layers` TransformerLayers; returns a map of the input's spatial size."""

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        tokens = map_to_tokens(x)
        return tokens_to_map(self.tr(tokens + self.linear(tokens)), x.shape[2], x.shape[3])

"""More convolution blocks for YOLO yamls: Conv2, ConvTranspose, DWConvTranspose2d, Focus, GhostConv, RepConv,
and the CBAM attention blocks (ChannelAttention, SpatialAttention, CBAM)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import Conv, autopad

__all__ = ["Conv2", "ConvTranspose", "DWConvTranspose2d", "Focus", "GhostConv", "RepConv",
           "ChannelAttention", "SpatialAttention", "CBAM", "fold_batchnorm"]


def pick_activation(act: bool | nn.Module) -> nn.Module:
    """True → Conv's current default activation (a yaml may swap it), a module → itself, otherwise Identity."""
    if act is True:
        return Conv.default_act
    return act if isinstance(act, nn.Module) else nn.Identity()


def fold_batchnorm(kernel: torch.Tensor, bn: nn.BatchNorm2d | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(kernel, bias) of a bias-free convolution followed by `bn` (eval statistics) as one convolution."""
    if bn is None:
        return kernel, torch.zeros(kernel.shape[0], dtype=kernel.dtype, device=kernel.device)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


def center_in(kernel: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Zero-pad a smaller (odd-sized) kernel so that it sits in the middle of a `size` kernel."""
    dh, dw = size[0] - kernel.shape[2], size[1] - kernel.shape[3]
    return F.pad(kernel, [dw // 2, dw - dw // 2, dh // 2, dh - dh // 2])


def identity_kernel(channels: int, groups: int, size: tuple[int, int], like: torch.Tensor) -> torch.Tensor:
    """A grouped `size` kernel that copies every input channel to the same output channel."""
    per_group = channels // groups
    kernel = torch.zeros(channels, per_group, *size, dtype=like.dtype, device=like.device)
    idx = torch.arange(channels, device=like.device)
    kernel[idx, idx % per_group, size[0] // 2, size[1] // 2] = 1.0
    return kernel


class Conv2(nn.Module):
    """Conv whose k×k convolution runs beside a parallel 1×1 convolution; the sum goes through BN and activation.

    `merge_branches()` adds the 1×1 kernel into the centre of the k×k one (same output, one convolution).
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int | None = None, g: int = 1, d: int = 1,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.cv2 = nn.Conv2d(c1, c2, 1, s, autopad(1, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = pick_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        if hasattr(self, "cv2"):
            y = y + self.cv2(x)
        return self.act(self.bn(y))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward once the branches are merged and the BatchNorm is folded into `conv`."""
        return self.act(self.conv(x))

    @torch.no_grad()
    def merge_branches(self) -> None:
        """Fold the 1×1 branch into the k×k kernel and drop it."""
        if hasattr(self, "cv2"):
            self.conv.weight += center_in(self.cv2.weight, self.conv.weight.shape[2:])
            del self.cv2


class ConvTranspose(nn.Module):
    """Transposed convolution (upsampling), then BatchNorm (or a conv bias when bn=False), then activation."""

    def __init__(self, c1: int, c2: int, k: int = 2, s: int = 2, p: int = 0, bn: bool = True,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv_transpose = nn.ConvTranspose2d(c1, c2, k, s, p, bias=not bn)
        self.bn = nn.BatchNorm2d(c2) if bn else nn.Identity()
        self.act = pick_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv_transpose(x)))


class DWConvTranspose2d(nn.ConvTranspose2d):
    """Depth-wise transposed convolution: groups = gcd(c1, c2); p1 is the padding, p2 the output padding."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p1: int = 0, p2: int = 0):
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))


def space_to_depth(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) → (B, 4C, H/2, W/2): the four pixel phases stacked along channels.

    Phase order: (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
    """
    return torch.cat([x[..., r::2, c::2] for c in (0, 1) for r in (0, 1)], 1)


class Focus(nn.Module):
    """Space-to-depth (the 2×2 pixel phases become channels) followed by a Conv."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool | nn.Module = True):
        super().__init__()
        self.conv = Conv(4 * c1, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(space_to_depth(x))


class GhostConv(nn.Module):
    """Ghost convolution: a primary Conv makes half the channels, a cheap depth-wise 5×5 Conv on those makes the
    other half; the two halves are concatenated."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | nn.Module = True):
        super().__init__()
        half = c2 // 2
        self.cv1 = Conv(c1, half, k, s, None, g, act=act)
        self.cv2 = Conv(half, half, 5, 1, None, half, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        primary = self.cv1(x)
        return torch.cat((primary, self.cv2(primary)), 1)


class RepConv(nn.Module):
    """Re-parameterisable conv: a k×k Conv+BN, a 1×1 Conv+BN and (bn=True, c1 == c2, s == 1) an identity BN,
    summed before the activation. `fuse_convs()` turns the branches into one biased k×k convolution."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, p: int = 1, g: int = 1, d: int = 1,
                 act: bool | nn.Module = True, bn: bool = False, deploy: bool = False):
        super().__init__()
        if k != 3 or p != 1:
            raise ValueError(f"RepConv needs k=3 and p=1 (got k={k}, p={p})")
        self.g, self.c1, self.c2 = g, c1, c2
        self.act = pick_activation(act)
        if deploy:
            self.conv = nn.Conv2d(c1, c2, k, s, p, groups=g, dilation=d, bias=True)
            return
        self.bn = nn.BatchNorm2d(c1) if bn and c1 == c2 and s == 1 else None
        self.conv1 = Conv(c1, c2, k, s, p=p, g=g, act=False)
        self.conv2 = Conv(c1, c2, 1, s, p=p - k // 2, g=g, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if hasattr(self, "conv"):
            return self.act(self.conv(x))
        y = self.conv1(x) + self.conv2(x)
        if self.bn is not None:
            y = y + self.bn(x)
        return self.act(y)

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def equivalent_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The single k×k (kernel, bias) whose output equals the sum of the branches (eval statistics)."""
        size = tuple(self.conv1.conv.weight.shape[2:])
        k3, b3 = fold_batchnorm(self.conv1.conv.weight, getattr(self.conv1, "bn", None))
        k1, b1 = fold_batchnorm(self.conv2.conv.weight, getattr(self.conv2, "bn", None))
        kernel, bias = k3 + center_in(k1, size), b3 + b1
        if self.bn is not None:
            ki, bi = fold_batchnorm(identity_kernel(self.c1, self.g, size, kernel), self.bn)
            kernel, bias = kernel + ki, bias + bi
        return kernel, bias

    @torch.no_grad()
    def fuse_convs(self) -> None:
        """Replace the branches by one biased convolution with the same output."""
        if hasattr(self, "conv"):
            return
        kernel, bias = self.equivalent_kernel_bias()
        ref = self.conv1.conv
        self.conv = nn.Conv2d(ref.in_channels, ref.out_channels, ref.kernel_size, ref.stride, ref.padding,
                              dilation=ref.dilation, groups=ref.groups, bias=True).requires_grad_(False)
        self.conv.weight.copy_(kernel)
        self.conv.bias.copy_(bias)
        for name in ("conv1", "conv2", "bn"):
            delattr(self, name)


class ChannelAttention(nn.Module):
    """Channel gate: x · sigmoid(1×1 conv of the global average of each channel)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Conv2d(channels, channels, 1, 1, 0, bias=True)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.act(self.fc(self.pool(x)))


class SpatialAttention(nn.Module):
    """Spatial gate: x · sigmoid(k×k conv of the channel-mean and channel-max maps); k is 3 or 7."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        if kernel_size not in (3, 7):
            raise ValueError(f"SpatialAttention kernel_size must be 3 or 7, got {kernel_size}")
        self.cv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.act = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        maps = torch.cat((x.mean(1, keepdim=True), x.amax(1, keepdim=True)), 1)
        return x * self.act(self.cv1(maps))


class CBAM(nn.Module):
    """Convolutional Block Attention Module: channel attention, then spatial attention."""

    def __init__(self, c1: int, kernel_size: int = 7):
        super().__init__()
        self.channel_attention = ChannelAttention(c1)
        self.spatial_attention = SpatialAttention(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial_attention(self.channel_attention(x))

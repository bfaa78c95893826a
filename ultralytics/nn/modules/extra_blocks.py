"""More CSP-style blocks for YOLO yamls: C1, C2, C3x, C3TR, C3Ghost, GhostBottleneck, BottleneckCSP and SPP."""

from __future__ import annotations

import torch
import torch.nn as nn

from .block import C3, Bottleneck
from .conv import Conv, DWConv
from .extra_conv import GhostConv
from .transformer import TransformerBlock

__all__ = ["C1", "C2", "C3x", "C3TR", "C3Ghost", "GhostBottleneck", "BottleneckCSP", "SPP"]


class C1(nn.Module):
    """A 1×1 Conv to c2 channels, then n 3×3 Convs with a residual around the whole stack."""

    def __init__(self, c1: int, c2: int, n: int = 1):
        super().__init__()
        self.cv1 = Conv(c1, c2, 1, 1)
        self.m = nn.Sequential(*(Conv(c2, c2, 3) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return self.m(y) + y


class C2(nn.Module):
    """CSP block with two convolutions: the first half of cv1's output goes through n Bottlenecks, the second half
    is carried over; both are concatenated (processed half first) and fused by cv2."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv(2 * self.c, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        processed, carried = self.cv1(x).chunk(2, 1)
        return self.cv2(torch.cat((self.m(processed), carried), 1))


class C3x(C3):
    """C3 whose Bottlenecks use a 1×3 then a 3×1 convolution."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=((1, 3), (3, 1)), e=1.0) for _ in range(n)))


class C3TR(C3):
    """C3 whose Bottlenecks are replaced by a TransformerBlock of n layers with 4 heads."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)


class GhostBottleneck(nn.Module):
    """GhostConv (to c2/2) → depth-wise k×k stride-s Conv (only when s == 2) → GhostConv (to c2, linear),
    plus a shortcut: identity at s == 1, a depth-wise stride-2 Conv and a 1×1 Conv (both linear) at s == 2."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        mid = c2 // 2
        down = s == 2
        self.conv = nn.Sequential(
            GhostConv(c1, mid, 1, 1),
            DWConv(mid, mid, k, s, act=False) if down else nn.Identity(),
            GhostConv(mid, c2, 1, 1, act=False),
        )
        self.shortcut = (nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False))
                         if down else nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


class C3Ghost(C3):
    """C3 whose Bottlenecks are GhostBottlenecks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))


class BottleneckCSP(nn.Module):
    """The original CSP bottleneck: Conv → n Bottlenecks → plain 1×1 conv on one path, a plain 1×1 conv on the
    other; concatenated, BatchNorm + SiLU, then a fusing Conv."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_)
        self.act = nn.SiLU()
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        main = self.cv3(self.m(self.cv1(x)))
        return self.cv4(self.act(self.bn(torch.cat((main, self.cv2(x)), 1))))


class SPP(nn.Module):
    """Spatial pyramid pooling: parallel stride-1 max-pools of sizes k on a halved map, concatenated with it."""

    def __init__(self, c1: int, c2: int, k: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=size, stride=1, padding=size // 2) for size in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return self.cv2(torch.cat([y, *(pool(y) for pool in self.m)], 1))

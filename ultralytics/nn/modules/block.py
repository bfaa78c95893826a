"""Network blocks of YOLOv8 (Bottleneck, C2f, C3, SPPF, DFL) and BiFormer's Bi-Level Routing Attention."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from ultralytics.errors import ModelConfigError, UnsupportedError
from ultralytics.utils import LOGGER

from .bra_infer import bra_attention
from .bra_ops import KV_DOWNSAMPLE_MODES
from .conv import Conv

__all__ = [
    "Bottleneck",
    "C2f",
    "C3",
    "SPPF",
    "DFL",
    "TopkRouting",
    "QKVLinear",
    "ZeroLePE",
    "BiLevelRoutingAttention",
    "quiet_padding_warnings",
]


class Bottleneck(nn.Module):
    """Two convolutions with an optional residual connection (only when c1 == c2)."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1,
                 k: tuple[int, int] = (3, 3), e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, k[0], 1)
        self.cv2 = Conv(c_, c2, k[1], 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP block with two convolutions: split, n Bottlenecks whose every output is kept, concat, fuse."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = False, g: int = 1, e: float = 0.5):
        super().__init__()
        self.c = int(c2 * e)
        self.cv1 = Conv(c1, 2 * self.c, 1, 1)
        self.cv2 = Conv((2 + n) * self.c, c2, 1)
        self.m = nn.ModuleList(Bottleneck(self.c, self.c, shortcut, g, k=(3, 3), e=1.0) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = list(self.cv1(x).chunk(2, 1))
        for block in self.m:
            parts.append(block(parts[-1]))
        return self.cv2(torch.cat(parts, 1))


class C3(nn.Module):
    """CSP bottleneck with three convolutions."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, k=(1, 3), e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    """Spatial pyramid pooling (fast): three chained max-pools, concatenated with their input."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = [self.cv1(x)]
        for _ in range(3):
            y.append(self.m(y[-1]))
        return self.cv2(torch.cat(y, 1))


class DFL(nn.Module):
    """Distribution Focal Loss integral: expected value of a softmax over `c1` bins (a fixed 1×1 conv)."""

    def __init__(self, c1: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(c1, 1, 1, bias=False).requires_grad_(False)
        self.conv.weight.data[:] = torch.arange(c1, dtype=torch.float).view(1, c1, 1, 1)
        self.c1 = c1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, a = x.shape  # (batch, 4 * c1, anchors)
        return self.conv(x.view(b, 4, self.c1, a).transpose(2, 1).softmax(1)).view(b, 4, a)


# ----------------------------------------------------------------------------------------------
# Bi-Level Routing Attention (BiFormer). The module holds the parameters in the article's layout
# (state_dict keys lepe.*, router.emb.*, qkv.qkv.*, wo.*); the computation is in bra_ops.py.
# ----------------------------------------------------------------------------------------------


class TopkRouting(nn.Module):
    """Region-to-region router: scaled affinity of region-mean queries and keys, top-k per query region.

    Holds only the optional `emb` Linear (param_routing). The computation is `bra_ops.route`.
    """

    def __init__(self, qk_dim: int, topk: int = 4, qk_scale: float | None = None,
                 param_routing: bool = False, diff_routing: bool = False):
        super().__init__()
        self.topk = topk
        self.qk_dim = qk_dim
        self.scale = qk_scale or qk_dim ** -0.5
        self.diff_routing = diff_routing
        self.emb = nn.Linear(qk_dim, qk_dim) if param_routing else nn.Identity()


class QKVLinear(nn.Module):
    """One Linear producing queries (qk_dim), keys (qk_dim) and values (dim) for every token."""

    def __init__(self, dim: int, qk_dim: int, bias: bool = True):
        super().__init__()
        self.dim = dim
        self.qk_dim = qk_dim
        self.qkv = nn.Linear(dim, qk_dim + qk_dim + dim, bias=bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, kv = self.qkv(x).split([self.qk_dim, self.qk_dim + self.dim], dim=-1)
        return q, kv


class ZeroLePE(nn.Module):
    """LePE disabled (side_dwconv=0): contributes zeros. A module, not a lambda, so it pickles."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)


def _kv_downsampler(mode: str, kv_per_win: int | None, ratio: int | None) -> nn.Module:
    if mode not in KV_DOWNSAMPLE_MODES:
        raise ModelConfigError(f"BiLevelRoutingAttention: kv_downsample_mode={mode!r} is not supported; "
                         f"choose one of {sorted(KV_DOWNSAMPLE_MODES)}")
    if mode in {"fracpool", "conv"}:
        raise UnsupportedError(f"BiLevelRoutingAttention: kv_downsample_mode={mode!r} is left unimplemented by "
                                  "BiFormer; use 'identity', 'avgpool', 'maxpool', 'ada_avgpool' or 'ada_maxpool'")
    if mode in {"ada_avgpool", "ada_maxpool"}:
        if not kv_per_win or kv_per_win < 1:
            raise ModelConfigError(f"BiLevelRoutingAttention: kv_downsample_mode={mode!r} needs kv_per_win >= 1")
        return (nn.AdaptiveAvgPool2d if mode == "ada_avgpool" else nn.AdaptiveMaxPool2d)(kv_per_win)
    if mode in {"avgpool", "maxpool"}:
        if not ratio or ratio < 1:
            raise ModelConfigError(f"BiLevelRoutingAttention: kv_downsample_mode={mode!r} needs kv_downsample_ratio >= 1")
        if ratio == 1:
            return nn.Identity()
        return (nn.AvgPool2d if mode == "avgpool" else nn.MaxPool2d)(ratio)
    return nn.Identity()


class BiLevelRoutingAttention(nn.Module):
    """Bi-Level Routing Attention (BiFormer): region routing, then token attention over the routed regions.

    Input and output are (N, C, H, W) with C == dim. With `auto_pad` the input is zero-padded at the
    right/bottom to multiples of `n_win` (and cropped back). See docs/bra.md for the full semantics.

    Args:
        dim: channels of the input (and output).
        n_win: regions per side (n_win × n_win regions).
        num_heads: attention heads; dim and qk_dim must be divisible by it.
        qk_dim: query/key channels (default dim).
        qk_scale: logit scale (default qk_dim ** -0.5, used for routing and token attention).
        kv_per_win: key/value tokens per region side for the 'ada_*pool' down-sampling modes.
        kv_downsample_ratio: pooling ratio for 'avgpool'/'maxpool'.
        kv_downsample_kernel: accepted for compatibility (used by no implemented mode).
        kv_downsample_mode: 'identity' (default), 'avgpool', 'maxpool', 'ada_avgpool', 'ada_maxpool'.
        topk: routed regions per query region.
        param_attention: 'qkvo' (output Linear `wo`) or 'qkv' (wo = Identity).
        param_routing: learnable Linear in the router (needs diff_routing).
        diff_routing: let gradients flow through the routing logits.
        soft_routing: scale gathered keys/values by the softmax of the top-k routing logits.
        side_dwconv: kernel of the depth-wise LePE conv on v (0 disables it).
        auto_pad: pad to multiples of n_win instead of requiring them.
    """

    def __init__(self, dim: int, n_win: int = 7, num_heads: int = 8, qk_dim: int | None = None,
                 qk_scale: float | None = None, kv_per_win: int = 4, kv_downsample_ratio: int = 4,
                 kv_downsample_kernel: int | None = None, kv_downsample_mode: str = "identity", topk: int = 4,
                 param_attention: str = "qkvo", param_routing: bool = False, diff_routing: bool = False,
                 soft_routing: bool = False, side_dwconv: int = 3, auto_pad: bool = True):
        super().__init__()
        self.dim = dim
        self.n_win = n_win
        self.num_heads = num_heads
        self.qk_dim = qk_dim or dim
        if num_heads < 1 or self.qk_dim % num_heads or dim % num_heads:
            raise ModelConfigError(f"BiLevelRoutingAttention: dim ({dim}) and qk_dim ({self.qk_dim}) must be divisible "
                             f"by num_heads ({num_heads})")
        if n_win < 1:
            raise ModelConfigError(f"BiLevelRoutingAttention: n_win must be >= 1, got {n_win}")
        if not 1 <= topk <= n_win * n_win:
            raise ModelConfigError(f"BiLevelRoutingAttention: topk ({topk}) must be between 1 and the number of "
                             f"regions n_win**2 ({n_win * n_win})")
        if param_routing and not diff_routing:
            raise ModelConfigError("BiLevelRoutingAttention: param_routing=True needs diff_routing=True "
                             "(a learnable router without gradients would never train)")
        if diff_routing and not soft_routing:
            raise UnsupportedError("BiLevelRoutingAttention: differentiable hard routing (diff_routing=True, "
                                      "soft_routing=False) is left unimplemented by BiFormer; set soft_routing=True")
        if side_dwconv < 0 or (side_dwconv and side_dwconv % 2 == 0):
            raise ModelConfigError(f"BiLevelRoutingAttention: side_dwconv must be 0 or an odd kernel size, got {side_dwconv}")
        self.scale = qk_scale or self.qk_dim ** -0.5
        self.lepe = (nn.Conv2d(dim, dim, kernel_size=side_dwconv, stride=1, padding=side_dwconv // 2, groups=dim)
                     if side_dwconv > 0 else ZeroLePE())
        self.topk = topk
        self.param_routing = param_routing
        self.diff_routing = diff_routing
        self.soft_routing = soft_routing
        self.router = TopkRouting(self.qk_dim, topk=topk, qk_scale=self.scale,
                                  param_routing=param_routing, diff_routing=diff_routing)
        self.param_attention = param_attention
        if param_attention not in {"qkvo", "qkv"}:
            raise ModelConfigError(f"BiLevelRoutingAttention: param_attention={param_attention!r} is not supported; "
                             "choose 'qkvo' or 'qkv'")
        self.qkv = QKVLinear(dim, self.qk_dim)
        self.wo = nn.Linear(dim, dim) if param_attention == "qkvo" else nn.Identity()
        self.kv_downsample_mode = kv_downsample_mode
        self.kv_per_win = kv_per_win
        self.kv_downsample_ratio = kv_downsample_ratio
        self.kv_downsample_kernel = kv_downsample_kernel
        self.kv_down = _kv_downsampler(kv_downsample_mode, kv_per_win, kv_downsample_ratio)
        self.auto_pad = auto_pad

    def extra_repr(self) -> str:
        return (f"dim={self.dim}, n_win={self.n_win}, num_heads={self.num_heads}, qk_dim={self.qk_dim}, "
                f"topk={self.topk}, kv_downsample_mode={self.kv_downsample_mode!r}")

    def forward(self, x: torch.Tensor, ret_attn_mask: bool = False
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N, dim, H, W) → same; with `ret_attn_mask` the article's (out, r_weight, r_idx, attn_weight)."""
        if x.dim() == 4 and isinstance(x.shape[-1], int) and not torch.jit.is_tracing():
            self._warn_padding(x.shape[-2], x.shape[-1])
        return bra_attention(self, x, ret_attn_mask)

    def _warn_padding(self, hh: int, ww: int) -> None:
        """Warn once per (n_win, input size) when padding to multiples of n_win makes over a quarter of the tokens."""
        s = self.n_win
        hp, wp = -(-hh // s) * s, -(-ww // s) * s
        share = 1 - hh * ww / (hp * wp)
        if share > 0.25 and not _PADDING_QUIET and (s, hh, ww) not in _PADDING_WARNED:
            _PADDING_WARNED.add((s, hh, ww))
            LOGGER.warning(f"WARNING ⚠️ BiLevelRoutingAttention(n_win={s}): a {hh}×{ww} input is padded to {hp}×{wp}, "
                           f"{share:.0%} of the tokens are padding; use an n_win that divides the feature map side "
                           "(imgsz / stride) at this imgsz, see docs/bra.md")


_PADDING_WARNED: set[tuple[int, int, int]] = set()  # (n_win, H, W) already warned about
_PADDING_QUIET: list[bool] = []  # non-empty inside `quiet_padding_warnings()`


@contextlib.contextmanager
def quiet_padding_warnings() -> Iterator[None]:
    """No n_win padding warnings inside (e.g. a model's stride dry run at a small size)."""
    _PADDING_QUIET.append(True)
    try:
        yield
    finally:
        _PADDING_QUIET.pop()


def _first_pointwise_conv(layer: nn.Module) -> nn.Conv2d | None:
    """The 1×1 conv a layer applies first to its whole input (C2f / C3-like `cv1`, or a 1×1 Conv), if any."""
    first = getattr(layer, "cv1", None) if isinstance(layer, (C2f, C3)) else layer
    conv = getattr(first, "conv", None) if isinstance(first, Conv) else None
    if isinstance(layer, C3):
        return None  # C3 feeds its input to cv1 and cv2: both would need the fold
    if isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1 \
            and conv.padding == (0, 0):
        return conv
    return None


@torch.no_grad()
def fold_bra_output_projections(layers: nn.Sequential) -> int:
    """Fold each BRA's output Linear `wo` into the 1×1 conv that the next layer applies first; returns how many.

    For `layers` of a model (each with `.f`, the index of its input layers): a BRA layer whose output only feeds the
    next layer, when that layer starts with a 1×1 conv W (C2f/C3 `cv1`, or a 1×1 Conv), becomes BRA-without-wo and
    W' = W·Wo, b' = W·bo + b. Exact up to float rounding (inference; call after BatchNorm fusion).
    """
    folded = 0
    for i, m in enumerate(layers[:-1]):
        if not isinstance(m, BiLevelRoutingAttention) or not isinstance(m.wo, nn.Linear):
            continue
        users = [j for j, n in enumerate(layers) if j != i + 1 and i in (n.f if isinstance(n.f, list) else [n.f])]
        nxt = layers[i + 1]
        conv = _first_pointwise_conv(nxt) if nxt.f in (-1, i) and not users else None
        if conv is None:
            continue
        w = conv.weight.view(conv.out_channels, -1)
        bias = w @ m.wo.bias + (conv.bias if conv.bias is not None else 0)
        conv.weight.copy_((w @ m.wo.weight).view_as(conv.weight))
        if conv.bias is None:
            conv.bias = nn.Parameter(bias)
        else:
            conv.bias.copy_(bias)
        m.wo = nn.Identity()
        folded += 1
    return folded

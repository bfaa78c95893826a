"""Bi-Level Routing Attention: the forward dispatcher, and its inference path on CPU (no autograd).

The inference path computes exactly what `bra_ops._bra_cpu` computes, minus work whose result is cropped away
or thrown out at once (docs/bra.md, "Inference path"):

* queries of padded tokens are not attended: each region row is attended in at most two kernel calls, the regions
  of whole columns (their real tokens are a prefix of the region's row-major tokens) and the region of the last,
  partial column (its real tokens copied out first); padded keys/values still take part, as in the article;
* keys and values are projected into one (R, T, 2·dim) tensor and gathered once per region row (not per image),
  into a small buffer the kernel reads strided;
* the large intermediates live in per-thread scratch buffers reused from call to call, so a forward does not
  fault in tens of MiB of fresh pages (which cost as much as the gathers themselves).
"""

from __future__ import annotations

import functools
import math
import threading
from typing import TYPE_CHECKING, Callable

import torch
from torch.utils._python_dispatch import is_in_torch_dispatch_mode

from . import bra_ops as ops

if TYPE_CHECKING:  # pragma: no cover
    from .block import BiLevelRoutingAttention

INFER_KERNELS = True  # set False to run inference through the training path (benchmarks and tests compare both)
CHANNELS_LAST_OUT = True  # output allocated NHWC: token-major writes, and the next layers' convolutions run NHWC
ROW_CALLS_MIN_TOKENS = 16  # regions with fewer tokens are attended in one kernel call
SCRATCH_BYTES = 64 << 20  # scratch kept per thread between calls, all buffers together; beyond it: fresh memory
_LOCAL = threading.local()


def _scratch(name: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """A per-thread tensor of `shape` reused across calls (contents undefined); never returned to callers."""
    numel = math.prod(shape)
    store = _LOCAL.__dict__.setdefault("store", {})
    key = (name, like.dtype, torch.is_inference_mode_enabled())  # inference tensors can't be written outside it
    buf = store.get(key)
    if buf is None or buf.numel() < numel:
        held = sum(b.numel() * b.element_size() for k, b in store.items() if k != key)
        if held + numel * like.element_size() > SCRATCH_BYTES:
            return like.new_empty(shape)
        buf = store[key] = like.new_empty(numel)
    return buf[:numel].view(shape)


def release_scratch() -> None:
    """Free this thread's scratch buffers (they are otherwise kept for the next forward)."""
    _LOCAL.__dict__.pop("store", None)


def _use_infer_path(m: BiLevelRoutingAttention, x: torch.Tensor) -> bool:
    """No autograd, fp32/fp64 without autocast, identity key/value down-sampling, and no dispatch mode active
    (FLOP counting must see the article's full computation, padded queries included)."""
    return (INFER_KERNELS and not torch.is_grad_enabled() and x.dtype in (torch.float32, torch.float64)
            and not torch.is_autocast_enabled(x.device.type) and isinstance(m.kv_down, torch.nn.Identity)
            and not is_in_torch_dispatch_mode())


def _project(m: BiLevelRoutingAttention, xr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Region tokens (R, T, C) → q (R, T, dim) and kv (R, T, 2·dim), both contiguous scratch."""
    lin, dim = m.qkv.qkv, m.dim
    x2 = xr.view(-1, xr.shape[-1])
    q, kv = _scratch("q", (*xr.shape[:2], dim), xr), _scratch("kv", (*xr.shape[:2], 2 * dim), xr)
    for out, wt, b in ((q, lin.weight[:dim], None if lin.bias is None else lin.bias[:dim]),
                       (kv, lin.weight[dim:], None if lin.bias is None else lin.bias[dim:])):
        if b is None:
            torch.mm(x2, wt.t(), out=out.view(x2.shape[0], -1))
        else:
            torch.addmm(b, x2, wt.t(), out=out.view(x2.shape[0], -1))
    return q, kv


def _attend(q: torch.Tensor, sel: torch.Tensor, heads: int, scale: float) -> torch.Tensor:
    """q (B, L, dim) over gathered sel (B, S, 2·dim) keys|values → (B, L, heads, dim/heads) (a view)."""
    dim = q.shape[-1]
    out, _ = ops._FLASH_FWD(ops._heads(q, heads), ops._heads(sel[..., :dim], heads),
                            ops._heads(sel[..., dim:], heads), scale=scale)
    return out.transpose(1, 2)


def _values_image(v: torch.Tensor, n: int, nw: int, h: int, w: int) -> torch.Tensor:
    """Values (R, T, dim) as a channels_last (N, dim, nw·h, nw·w) scratch image, for LePE's conv."""
    img = _scratch("v", (n, nw * h, nw * w, v.shape[-1]), v)  # NHWC memory
    img.view(n, nw, h, nw, w, -1).permute(0, 1, 3, 2, 4, 5).copy_(v.view(n, nw, nw, h, w, -1))
    return img.permute(0, 3, 1, 2)


def _gather(kv: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor | None, name: str) -> torch.Tensor:
    """Keys|values (R, T, 2·dim) of the routed `rows` (B, topk) → scratch (B, topk·T, 2·dim), soft-routing
    scaled."""
    sel = _scratch(name, (rows.numel(), *kv.shape[1:]), kv)
    torch.index_select(kv, 0, rows.reshape(-1), out=sel)
    if weight is not None:  # soft routing scales each routed region's keys and values
        sel.view(*rows.shape, -1).mul_(weight.unsqueeze(-1).to(sel.dtype))
    return sel.view(rows.shape[0], -1, kv.shape[-1])


def _attention(m: BiLevelRoutingAttention, q: torch.Tensor, kv: torch.Tensor, rows: torch.Tensor,
               weight: torch.Tensor | None, write: Callable, geometry: tuple[int, ...]) -> None:
    """Token attention of the real query tokens of every region row, each result handed to `write(o, b, y, x)`:
    o (regions, real token rows, real token columns, dim) for the image rows/columns from (y, x) of image b.

    Regions of ROW_CALLS_MIN_TOKENS tokens or more: two kernel calls per region row, real queries only. Smaller
    regions: one gather and one call for everything (padded queries included; per-call overhead would dominate).
    """
    n, hh, ww, nw, h, w = geometry
    heads, dim = m.num_heads, m.dim
    full_rows, last_rows = divmod(hh, h)
    full_cols, last_cols = divmod(ww, w)
    cols = full_cols + (1 if last_cols else 0)  # region columns holding real tokens
    per_row = q.shape[1] >= ROW_CALLS_MIN_TOKENS
    if not per_row:
        whole = _attend(q, _gather(kv, rows, weight, "sel"), heads, m.scale).reshape(-1, h, w, dim)
    for b in range(n):
        for i in range(full_rows + (1 if last_rows else 0)):
            real = h if i < full_rows else last_rows  # real token rows in this region row
            r0 = (b * nw + i) * nw
            if not per_row:
                if full_cols:
                    write(whole[r0:r0 + full_cols, :real], b, i * h, 0)
                if last_cols:
                    write(whole[r0 + full_cols:r0 + cols, :real, :last_cols], b, i * h, full_cols * w)
                continue
            routed = _gather(kv, rows[r0:r0 + cols], None if weight is None else weight[r0:r0 + cols], "sel")
            if full_cols:  # real tokens of whole-column regions: a prefix of their row-major tokens
                o = _attend(q[r0:r0 + full_cols, :real * w], routed[:full_cols], heads, m.scale)
                write(o.reshape(full_cols, real, w, dim), b, i * h, 0)
            if last_cols:
                qc = q[r0 + full_cols].view(h, w, dim)[:real, :last_cols].reshape(1, real * last_cols, dim)
                o = _attend(qc, routed[full_cols:], heads, m.scale)
                write(o.reshape(1, real, last_cols, dim), b, i * h, full_cols * w)


def bra_cpu_infer(m: BiLevelRoutingAttention, x: torch.Tensor, hh: int, ww: int, h: int, w: int) -> torch.Tensor:
    """BRA forward on CPU without autograd: (N, C, hh, ww) → (N, C, hh, ww), equal to `bra_ops._bra_cpu`."""
    n, nw = x.shape[0], m.n_win
    xr = _scratch("x", (n * nw * nw, h * w, x.shape[1]), x)  # zero-padded region tokens
    img6 = ops._image_view(xr, n, nw, h, w)
    if (hh, ww) != (nw * h, nw * w):
        ops._zero_padding(img6, hh, ww)
    ops._copy_blocks(x, img6, to_regions=True)
    q, kv = _project(m, xr)
    return bra_infer_projected(m, q, kv, n, hh, ww, h, w)


@functools.lru_cache(maxsize=16)
def _upsampled_rows(n: int, hh: int, ww: int, nw: int, h: int, w: int, s: int) -> torch.Tensor:
    """For every region token (R·T,): the row of its source pixel in the low-resolution (N·hh/s·ww/s) token
    matrix of a nearest ×s upsampling, or N·hh/s·ww/s (one past the last: the bias-only row) for a padded token."""
    y = (torch.arange(nw).view(nw, 1, 1, 1) * h + torch.arange(h).view(1, 1, h, 1)).expand(nw, nw, h, w)
    x = (torch.arange(nw).view(1, nw, 1, 1) * w + torch.arange(w).view(1, 1, 1, w)).expand(nw, nw, h, w)
    lw, low = ww // s, (hh // s) * (ww // s)
    row = torch.where((y < hh) & (x < ww), (y // s) * lw + x // s, -1)
    rows = row.reshape(1, -1) + torch.arange(n).view(n, 1) * low
    return torch.where(row.reshape(1, -1) < 0, n * low, rows).reshape(-1)


def project_upsampled(m: BiLevelRoutingAttention, low: torch.Tensor, full: torch.Tensor, s: int, low_first: bool
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """q and kv region tokens (as `_project` makes them) of cat(up(low), full) (or cat(full, up(low))), `up` a
    nearest ×s upsampling, without building either: the projection is per pixel, so the columns of `low`'s channels
    are applied at low resolution (bias included) and gathered, then those of `full` added at full resolution."""
    lin, dim, cl = m.qkv.qkv, m.dim, low.shape[1]
    n, cf, hh, ww = full.shape
    nw = m.n_win
    h, w = (hh + nw - 1) // nw, (ww + nw - 1) // nw
    lo_cols, hi_cols = (slice(0, cl), slice(cl, None)) if low_first else (slice(cf, None), slice(0, cf))
    xr = _scratch("x", (n * nw * nw, h * w, cf), full)  # zero-padded region tokens of `full`
    img6 = ops._image_view(xr, n, nw, h, w)
    if (hh, ww) != (nw * h, nw * w):
        ops._zero_padding(img6, hh, ww)
    ops._copy_blocks(full, img6, to_regions=True)
    a = low.permute(0, 2, 3, 1).reshape(-1, cl)  # low-resolution tokens (N·hh/s·ww/s, cl)
    idx = _upsampled_rows(n, hh, ww, nw, h, w, s)
    q, kv = _scratch("q", (*xr.shape[:2], dim), xr), _scratch("kv", (*xr.shape[:2], 2 * dim), xr)
    for out, rows in ((q, slice(0, dim)), (kv, slice(dim, None))):
        wt, b = lin.weight[rows], None if lin.bias is None else lin.bias[rows]
        lowp = a.new_zeros(a.shape[0] + 1, wt.shape[0])  # last row: a padded token's share (the bias, or 0)
        if b is not None:
            torch.addmm(b, a, wt[:, lo_cols].t(), out=lowp[:-1])
            lowp[-1] = b
        else:
            torch.mm(a, wt[:, lo_cols].t(), out=lowp[:-1])
        o2 = out.view(-1, wt.shape[0])
        torch.index_select(lowp, 0, idx, out=o2)
        o2.addmm_(xr.view(-1, cf), wt[:, hi_cols].t())
    return q, kv


def infer_path_applies(m: BiLevelRoutingAttention, x: torch.Tensor, hh: int, ww: int) -> bool:
    """Whether `bra_attention` would take the CPU inference path for an input like `x` of size hh × ww."""
    divisible = not (hh % m.n_win or ww % m.n_win) or m.auto_pad
    return divisible and ops._use_cpu_kernels(x) and m.qk_dim == m.dim and _use_infer_path(m, x)


def bra_infer_projected(m: BiLevelRoutingAttention, q: torch.Tensor, kv: torch.Tensor, n: int, hh: int, ww: int,
                        h: int, w: int) -> torch.Tensor:
    """The rest of `bra_cpu_infer` from the projected region tokens: q (R, T, dim), kv (R, T, 2·dim), contiguous,
    padded tokens holding the projection of zeros (the bias). Also the hook of `bra_fused.UpsampleConcatBRA`."""
    nw, dim = m.n_win, m.dim
    r_weight, r_idx = ops._route_regions(m, q, kv[..., :dim], n)
    rows, weight = ops._rows(r_idx), r_weight.reshape(n * nw * nw, -1) if m.soft_routing else None
    geometry = (n, hh, ww, nw, h, w)
    # LePE on the padded values image, as in the article
    lepe = m.lepe(_values_image(kv[..., dim:], n, nw, h, w)) if isinstance(m.lepe, torch.nn.Conv2d) else None
    if isinstance(m.wo, torch.nn.Identity):  # (wo folded away) attention + LePE straight into the output image
        img = q.new_empty(n, hh, ww, dim).permute(0, 3, 1, 2) if CHANNELS_LAST_OUT else q.new_empty(n, dim, hh, ww)

        def write(o: torch.Tensor, b: int, y: int, x0: int) -> None:
            regions, rows, width = o.shape[:3]
            span = (slice(y, y + rows), slice(x0, x0 + regions * width))
            dst = img[b, :, span[0], span[1]].unflatten(2, (regions, width))  # (dim, rows, regions, width)
            src = o.permute(3, 1, 0, 2)
            if lepe is None:
                dst.copy_(src)
            else:
                torch.add(src, lepe[b, :, span[0], span[1]].unflatten(2, (regions, width)), out=dst)

        _attention(m, q, kv, rows, weight, write, geometry)
        return img
    out = _scratch("x", q.shape, q)  # the input tokens are no longer needed

    def write_regions(o: torch.Tensor, b: int, y: int, x0: int) -> None:
        r = (b * nw + y // h) * nw + x0 // w
        out[r:r + o.shape[0]].view(o.shape[0], h, w, dim)[:, :o.shape[1], :o.shape[2]].copy_(o)

    _attention(m, q, kv, rows, weight, write_regions, geometry)
    if lepe is not None:
        out.view(n, nw, nw, h, w, dim).add_(ops._image_as_regions(lepe, nw, h, w))
    o2 = _scratch("q", out.shape, out).view(-1, dim)  # q is no longer needed
    if isinstance(m.wo, torch.nn.Linear) and m.wo.bias is not None:
        torch.addmm(m.wo.bias, out.view(-1, dim), m.wo.weight.t(), out=o2)
    elif isinstance(m.wo, torch.nn.Linear):
        torch.mm(out.view(-1, dim), m.wo.weight.t(), out=o2)
    else:
        o2 = m.wo(out)
    return ops._to_image(o2.view(out.shape), n, hh, ww, nw, h, w)


def bra_attention(m: BiLevelRoutingAttention, x: torch.Tensor, ret_attn_mask: bool = False
                  ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward of `BiLevelRoutingAttention` `m` on an (N, C, H, W) input; returns (N, C, H, W).

    With `ret_attn_mask` it returns what the article's module returns: (out, r_weight, r_idx, attn_weight) —
    out (N, C, H, W); r_weight, r_idx (N, n_win², topk): softmax of the top-k routing logits and the routed
    regions (row-major region indices); attn_weight (N·n_win², num_heads, T, topk·T'): the token attention
    probabilities of each query region over the tokens of its routed regions, in routing order.
    """
    if x.dim() != 4 or x.shape[1] != m.dim:
        raise ValueError(f"BiLevelRoutingAttention(dim={m.dim}) expects an (N, {m.dim}, H, W) input, "
                         f"got shape {tuple(x.shape)}")
    hh, ww = x.shape[-2:]
    nw = m.n_win
    if (hh % nw or ww % nw) and not m.auto_pad:
        raise ValueError(f"BiLevelRoutingAttention: input {hh}×{ww} is not divisible by n_win={nw}; "
                         "set auto_pad=True or resize the input")
    h, w = (hh + nw - 1) // nw, (ww + nw - 1) // nw  # ceil; no negative floor division (ONNX Div truncates)
    fast = ops._use_cpu_kernels(x) and m.qk_dim == m.dim  # the fused kernel needs equal q/k and v head sizes
    if fast and not ret_attn_mask and _use_infer_path(m, x):
        return bra_cpu_infer(m, x, hh, ww, h, w)
    out, extras = (ops._bra_cpu if fast else ops._bra_generic)(m, x, hh, ww, h, w, ret_attn_mask)
    return (out, *extras) if ret_attn_mask else out

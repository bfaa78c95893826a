"""The computation of Bi-Level Routing Attention (fast path), as functions over a BRA module's parameters.

Everything runs in one region-major token layout, (N·p², T, C) with p² = n_win² regions of T tokens:
the input is cut into (zero-padded) regions once, the qkv projection, routing, token attention and
output projection work on that layout, and one copy turns the result back into a cropped image.

Two executions of the same computation (docs/bra.md explains both and why they are exact); the forward
dispatcher `bra_attention` and a third, inference-only CPU execution are in `bra_infer.py`:

* CPU (`_bra_cpu`): q, k, v as three contiguous tensors; the routed key/value regions gathered a chunk of query
  regions at a time for PyTorch's fused CPU attention kernel, whose backward is called with the saved output and
  log-sum-exp (`_RoutedAttention`); LePE on a channels_last image.
* Everywhere else (CUDA, tracing, ONNX export, torch.compile, qk_dim != dim): plain tensor ops, one
  `index_select` of the keys and values and `F.scaled_dot_product_attention` — or, on CUDA, no gather at all:
  `flex_attention` with a `BlockMask` built from the routing (block = one region's tokens).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import warnings

import torch
import torch.nn.functional as F
from torch.autograd import Function

try:  # block-sparse attention (torch >= 2.5)
    from torch.nn.attention.flex_attention import BlockMask, flex_attention
except ImportError:  # pragma: no cover
    BlockMask = flex_attention = None

if TYPE_CHECKING:  # pragma: no cover
    from .block import BiLevelRoutingAttention, TopkRouting

KV_DOWNSAMPLE_MODES = frozenset({"identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool", "fracpool", "conv"})
CHUNK_ELEMENTS = 1 << 23  # routed key/value elements the CPU path gathers at once (32 MiB in fp32)

_FLASH_FWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)
_FLASH_BWD = getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu_backward", None)


# ---------------------------------------------------------------------------------------------
# Layout: image (N, C, H, W) ↔ region-major tokens (N·n_win², h·w, C)
# ---------------------------------------------------------------------------------------------


def image_to_regions(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(N, C, H, W) with H, W divisible by n_win → (N·n_win², (H/n_win)·(W/n_win), C), regions row-major."""
    n, c, hh, ww = x.shape
    h, w = hh // n_win, ww // n_win
    x = x.view(n, c, n_win, h, n_win, w).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n * n_win * n_win, h * w, c)


def regions_to_image(x: torch.Tensor, n: int, n_win: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `image_to_regions`: (N·n_win², h·w, C) → contiguous (N, C, n_win·h, n_win·w)."""
    c = x.shape[-1]
    x = x.view(n, n_win, n_win, h, w, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, c, n_win * h, n_win * w)


def _image_view(reg: torch.Tensor, n: int, n_win: int, h: int, w: int) -> torch.Tensor:
    """A contiguous (N·n_win², h·w, C) region tensor seen as an (N, C, n_win, h, n_win, w) image (a view)."""
    return reg.view(n, n_win, n_win, h, w, reg.shape[-1]).permute(0, 5, 1, 3, 2, 4)


def _block_pieces(size: int, block: int) -> list[tuple[int, int, int]]:
    """Cover [0, size) of one image axis by regions of `block` rows: (first region, regions, rows each)."""
    full, rem = divmod(size, block)
    return ([(0, full, block)] if full else []) + ([(full, 1, rem)] if rem else [])


def _copy_blocks(img: torch.Tensor, img6: torch.Tensor, to_regions: bool) -> None:
    """Copy the (N, C, H, W) image into the region view `img6` (or back): at most four strided copies."""
    h, w = img6.shape[3], img6.shape[5]
    for hb, hn, hl in _block_pieces(img.shape[2], h):
        for wb, wn, wl in _block_pieces(img.shape[3], w):
            part = img[:, :, hb * h:hb * h + hn * hl, wb * w:wb * w + wn * wl].unflatten(3, (wn, wl)).unflatten(2, (hn, hl))
            regs = img6[:, :, hb:hb + hn, :hl, wb:wb + wn, :wl]
            (regs if to_regions else part).copy_(part if to_regions else regs)


def _zero_padding(img6: torch.Tensor, hh: int, ww: int) -> None:
    """Zero the rows ≥ hh and columns ≥ ww of the region view `img6` (the padding, nothing else)."""
    for blk, size in ((2, hh), (4, ww)):
        nw, b = img6.shape[blk], img6.shape[blk + 1]
        full, rem = divmod(size, b)
        if rem:
            img6.narrow(blk, full, 1).narrow(blk + 1, rem, b - rem).zero_()
        start = full + (1 if rem else 0)
        if start < nw:
            img6.narrow(blk, start, nw - start).zero_()


def _to_regions(x: torch.Tensor, n_win: int, h: int, w: int) -> torch.Tensor:
    """(N, C, H, W) → zero-padded region-major (N·n_win², h·w, C) in one pass (no separate pad copy)."""
    n, c, hh, ww = x.shape
    reg = x.new_empty(n * n_win * n_win, h * w, c)
    img6 = _image_view(reg, n, n_win, h, w)
    if hh != n_win * h or ww != n_win * w:
        _zero_padding(img6, hh, ww)
    _copy_blocks(x, img6, to_regions=True)
    return reg


def _to_image(reg: torch.Tensor, n: int, hh: int, ww: int, n_win: int, h: int, w: int) -> torch.Tensor:
    """Region-major (N·n_win², h·w, C) → contiguous (N, C, hh, ww), cropping the padding in the same pass."""
    reg = reg.contiguous()
    img = reg.new_empty(n, reg.shape[-1], hh, ww)
    _copy_blocks(img, _image_view(reg, n, n_win, h, w), to_regions=False)
    return img


class _ToRegions(Function):
    """Autograd wrapper of `_to_regions`; the backward crops and un-permutes the gradient in one pass."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n_win: int, h: int, w: int) -> torch.Tensor:
        ctx.geometry = (x.shape[0], x.shape[2], x.shape[3], n_win, h, w)
        return _to_regions(x, n_win, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return _to_image(grad, *ctx.geometry), None, None, None


class _ToImage(Function):
    """Autograd wrapper of `_to_image`; the backward re-pads (with zeros) and permutes in one pass."""

    @staticmethod
    def forward(ctx, reg: torch.Tensor, n: int, hh: int, ww: int, n_win: int, h: int, w: int) -> torch.Tensor:
        ctx.geometry = (n_win, h, w)
        return _to_image(reg, n, hh, ww, n_win, h, w)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (_to_regions(grad, *ctx.geometry),) + (None,) * 6


class _SplitLinear(Function):
    """x (R, T, C) → q, k, v: the qkv Linear as three contiguous outputs (row blocks of one weight).

    The backward accumulates the input gradient in place (one buffer and `addmm_`) and writes the weight
    and bias gradients straight into their row blocks, instead of three matmuls, two additions and the
    weight-slice gradients that three `F.linear` calls would cost. fp32/fp64 without autocast only.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, sizes: list[int]):
        x2 = x.reshape(-1, x.shape[-1])
        ctx.save_for_backward(x2, weight)
        ctx.sizes, ctx.has_bias, ctx.shape = sizes, bias is not None, x.shape
        biases = bias.split(sizes) if bias is not None else [None] * len(sizes)
        outs = [torch.addmm(b, x2, wt.t()) if b is not None else x2 @ wt.t() for wt, b in zip(weight.split(sizes), biases)]
        return tuple(o.view(*x.shape[:-1], o.shape[-1]) for o in outs)

    @staticmethod
    def backward(ctx, *grads):
        x2, weight = ctx.saved_tensors
        sizes = ctx.sizes
        dx = dweight = dbias = None
        g2 = [None if g is None else g.reshape(-1, g.shape[-1]) for g in grads]
        if ctx.needs_input_grad[0]:
            for g, wt in zip(g2, weight.split(sizes)):
                if g is not None:
                    dx = g @ wt if dx is None else dx.addmm_(g, wt)
            dx = x2.new_zeros(ctx.shape) if dx is None else dx.view(ctx.shape)
        if ctx.needs_input_grad[1]:
            dweight = torch.zeros_like(weight)
            for g, rows in zip(g2, dweight.split(sizes)):
                if g is not None:
                    torch.mm(g.t(), x2, out=rows)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            dbias = weight.new_zeros(weight.shape[0])
            for g, part in zip(g2, dbias.split(sizes)):
                if g is not None:
                    torch.sum(g, 0, out=part)
        return dx, dweight, dbias, None


# ---------------------------------------------------------------------------------------------
# Routing
# ---------------------------------------------------------------------------------------------


def route(router: TopkRouting, q_win: torch.Tensor, k_win: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-level routing in fp32 (or wider): (N, p², c) region queries/keys → (weights, indices), each (N, p², topk)."""
    if not router.diff_routing:
        q_win, k_win = q_win.detach(), k_win.detach()
    dtype = torch.promote_types(q_win.dtype, torch.float32)  # fp32 at least (fp16/bf16 under autocast)
    with torch.autocast(q_win.device.type, enabled=False):  # autocast would run the matmuls in low precision
        q_win, k_win = q_win.to(dtype), k_win.to(dtype)
        emb = router.emb
        if isinstance(emb, torch.nn.Linear):  # param_routing: run the learnable projection in that precision too
            weight = emb.weight.to(dtype)
            bias = emb.bias.to(dtype) if emb.bias is not None else None
            q_win, k_win = F.linear(q_win, weight, bias), F.linear(k_win, weight, bias)
        logits = (q_win * router.scale) @ k_win.transpose(-2, -1)  # (N, p², p²)
        top_logits, index = torch.topk(logits, k=topk, dim=-1)
        return top_logits.softmax(dim=-1), index


def _route_regions(m: BiLevelRoutingAttention, q: torch.Tensor, k: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean query/key (R, T, qk) of every region → the article's (r_weight, r_idx), each (N, p², topk)."""
    p2 = m.n_win * m.n_win
    with torch.set_grad_enabled(m.router.diff_routing and torch.is_grad_enabled()):
        q_win, k_win = q.mean(1).view(n, p2, -1), k.mean(1).view(n, p2, -1)
    return route(m.router, q_win, k_win, m.topk)


def _rows(index: torch.Tensor) -> torch.Tensor:
    """Per-image region indices (N, p², topk) → rows of the region-major batch (N·p², topk)."""
    n, p2, topk = index.shape
    return (index + torch.arange(n, device=index.device).view(n, 1, 1) * p2).view(n * p2, topk)


def _downsample_kv(kv_down: torch.nn.Module, kv: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Pool each region's key/value tokens: (R, h·w, c) → (R, h'·w', c)."""
    if isinstance(kv_down, torch.nn.Identity):
        return kv
    r, _, c = kv.shape
    pooled = kv_down(kv.transpose(1, 2).reshape(r, c, h, w))
    return pooled.flatten(2).transpose(1, 2)


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(B, L, heads·d) → (B, heads, L, d) as a strided view."""
    return x.unflatten(-1, (num_heads, -1)).transpose(1, 2)


# ---------------------------------------------------------------------------------------------
# Token attention over the routed regions: CPU fused kernel, chunked, with a hand-written backward
# ---------------------------------------------------------------------------------------------


def _chunks(regions: int, per_region: int) -> list[tuple[int, int]]:
    """Split [0, regions) into runs whose gathered key/value elements stay within CHUNK_ELEMENTS."""
    step = max(1, CHUNK_ELEMENTS // max(per_region, 1))
    return [(r0, min(r0 + step, regions)) for r0 in range(0, regions, step)]


def _gather(src: torch.Tensor, rows: torch.Tensor, topk: int) -> torch.Tensor:
    """Tokens (R, T', c) of the routed regions `rows` (c_q·topk,) → contiguous (c_q, topk·T', c)."""
    return src.index_select(0, rows).view(rows.numel() // topk, -1, src.shape[-1])


def _scaled(sel: torch.Tensor, weight: torch.Tensor | None, inplace: bool) -> torch.Tensor:
    """Gathered (c_q, topk·T', c) tokens, each routed region's scaled by its (c_q, topk) soft-routing weight."""
    if weight is None:
        return sel
    rows = sel.view(weight.numel(), -1, sel.shape[-1])
    w = weight.reshape(-1, 1, 1).to(sel.dtype)
    return (rows.mul_(w) if inplace else rows * w).view_as(sel)


def _values_image(v: torch.Tensor, n: int, n_win: int, h: int, w: int) -> torch.Tensor:
    """Values (R, T, dim) as a channels_last (N, dim, n_win·h, n_win·w) image, for LePE's conv."""
    img = v.new_empty(n, n_win * h, n_win * w, v.shape[-1])  # NHWC memory
    img.view(n, n_win, h, n_win, w, -1).permute(0, 1, 3, 2, 4, 5).copy_(v.view(n, n_win, n_win, h, w, -1))
    return img.permute(0, 3, 1, 2)


def _image_as_regions(img: torch.Tensor, n_win: int, h: int, w: int) -> torch.Tensor:
    """(N, C, n_win·h, n_win·w) image of any layout → (N, n_win, n_win, h, w, C) view of its tokens."""
    return img.permute(0, 2, 3, 1).unflatten(2, (n_win, w)).unflatten(1, (n_win, h)).permute(0, 1, 3, 2, 4, 5)


class _RoutedAttention(Function):
    """Every query region attends, per head, to the key/value tokens of its routed regions (CPU kernels).

    q (R, T, qk), k (R, T', qk), v (R, T', dim) per region; index (R, topk) routed rows; weight (R, topk) soft-routing
    weights or None; geometry (N, n_win, h, w) to also return v as a channels_last image for LePE, or None. Returns
    (out (R, T, dim), the values image or an empty tensor). Keys/values are gathered a chunk of query regions at a
    time and dropped (only out and its log-sum-exp are kept); the backward gathers again and index_adds dk, dv.
    """

    @staticmethod
    def forward(ctx, q, k, v, index, weight, heads: int, scale: float, geometry):
        ctx.set_materialize_grads(False)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        r, t, _ = q.shape
        topk, dim = index.shape[1], v.shape[-1]
        ctx.spans = _chunks(r, topk * k.shape[1] * (k.shape[-1] + dim))
        out, lses = None, []
        for r0, r1 in ctx.spans:
            rows, w = index[r0:r1].reshape(-1), None if weight is None else weight[r0:r1]
            o, lse = _FLASH_FWD(_heads(q[r0:r1], heads), _heads(_scaled(_gather(k, rows, topk), w, True), heads),
                                _heads(_scaled(_gather(v, rows, topk), w, True), heads), scale=scale)
            lses.append(lse)
            if len(ctx.spans) == 1:
                out = o.transpose(1, 2).reshape(r, t, dim)
            else:
                out = q.new_empty(r, t, dim) if out is None else out
                out[r0:r1].view(r1 - r0, t, heads, -1).copy_(o.transpose(1, 2))
        ctx.meta = heads, scale, geometry, lses
        ctx.save_for_backward(q, k, v, index, weight, out)
        img = _values_image(v, *geometry) if geometry is not None else q.new_empty(0)
        if geometry is None:
            ctx.mark_non_differentiable(img)
        return out, img

    @staticmethod
    def backward(ctx, grad_out, grad_img):
        q, k, v, index, weight, out = ctx.saved_tensors
        heads, scale, geometry, lses = ctx.meta
        t, topk, tk = q.shape[1], index.shape[1], k.shape[1]
        grad_out = torch.zeros_like(out) if grad_out is None else grad_out.contiguous()
        dq, dk = torch.empty_like(q), torch.zeros_like(k)
        if grad_img is not None and geometry is not None:  # LePE's gradient w.r.t. the values
            n, n_win, h, w = geometry
            dv = torch.empty_like(v)
            dv.view(n, n_win, n_win, h, w, -1).copy_(_image_as_regions(grad_img, n_win, h, w))
        else:
            dv = torch.zeros_like(v)
        dweight = torch.empty_like(weight) if weight is not None and ctx.needs_input_grad[4] else None
        for (r0, r1), lse in zip(ctx.spans, lses):
            rows, w = index[r0:r1].reshape(-1), None if weight is None else weight[r0:r1]
            k_raw, v_raw = _gather(k, rows, topk), _gather(v, rows, topk)
            k_sel, v_sel = _scaled(k_raw, w, False), _scaled(v_raw, w, False)
            dq_c, dk_c, dv_c = _FLASH_BWD(_heads(grad_out[r0:r1], heads), _heads(q[r0:r1], heads),
                                          _heads(k_sel, heads), _heads(v_sel, heads), _heads(out[r0:r1], heads),
                                          lse, 0.0, False, scale=scale)
            dq[r0:r1].view(r1 - r0, t, heads, -1).copy_(dq_c.transpose(1, 2))
            dk_c = dk_c.transpose(1, 2).reshape(rows.numel(), tk, -1)  # (c_q·topk, T', qk), contiguous
            dv_c = dv_c.transpose(1, 2).reshape(rows.numel(), tk, -1)
            if w is not None:  # k_sel = w·k[rows]: d/dw = <dk_sel, k[rows]> + <dv_sel, v[rows]>, d/dk[rows] = w·dk_sel
                wr = w.reshape(-1, 1, 1).to(dk_c.dtype)
                if dweight is not None:
                    acc = torch.promote_types(dk_c.dtype, torch.float32)  # sum in fp32 at least
                    dw = (dk_c.to(acc) * k_raw.view_as(dk_c)).sum((1, 2)) + (dv_c.to(acc) * v_raw.view_as(dv_c)).sum((1, 2))
                    dweight[r0:r1] = dw.view(r1 - r0, topk).to(dweight.dtype)
                dk_c, dv_c = dk_c.mul_(wr), dv_c.mul_(wr)
            dk.index_add_(0, rows, dk_c)  # the backward of the gather; serial over rows on CPU, deterministic
            dv.index_add_(0, rows, dv_c)
        return dq, dk, dv, None, dweight, None, None, None


def attention_weights(q: torch.Tensor, k: torch.Tensor, rows: torch.Tensor, weight: torch.Tensor | None,
                      heads: int, scale: float) -> torch.Tensor:
    """The article's `attn_weight` (R, heads, T, topk·T'): softmax((q·scale) @ k_selᵀ) of q (R, T, qk) over the keys
    of k (R, T', qk) in the routed `rows` (R, topk), scaled by soft-routing `weight` (R, topk) or None."""
    topk = rows.shape[1]
    k_sel = _scaled(_gather(k, rows.reshape(-1), topk), weight, False)
    return torch.softmax((_heads(q, heads) * scale) @ _heads(k_sel, heads).transpose(-2, -1), dim=-1)


def routing_block_mask(index: torch.Tensor, tokens: int) -> BlockMask:
    """BRA as a `BlockMask` over each image's region-major sequence of p²·`tokens` tokens.

    Query block r (region r's tokens) sees the key blocks `index[:, r]` (N, p², topk): the block table gives the
    sparsity, `mask_mod` repeats it per token (so the compiled kernels and the eager one agree).
    """
    n, p2, topk = index.shape
    routed = torch.zeros(n, p2, p2, dtype=torch.bool, device=index.device)
    routed.scatter_(2, index, True)

    def mask_mod(b, h, q_idx, kv_idx):
        return routed[b, q_idx // tokens, kv_idx // tokens]

    kv_indices = torch.zeros(n, 1, p2, p2, dtype=torch.int32, device=index.device)
    kv_indices[..., :topk] = index.sort(-1).values.view(n, 1, p2, topk).to(torch.int32)
    num = torch.full((n, 1, p2), topk, dtype=torch.int32, device=index.device)
    return BlockMask.from_kv_blocks(num, kv_indices, BLOCK_SIZE=tokens, mask_mod=mask_mod,
                                    seq_lengths=(p2 * tokens, p2 * tokens))


USE_FLEX: bool | str = "auto"  # 'auto': flex_attention on CUDA; True: wherever the plain-ops path runs; False: never
_FLEX_COMPILED: list = []  # torch.compile(flex_attention), built on first CUDA use


def _use_flex(m: BiLevelRoutingAttention, x: torch.Tensor) -> bool:
    """Whether the plain-ops path attends with flex_attention (identity kv and hard routing only)."""
    if flex_attention is None or USE_FLEX is False or (USE_FLEX == "auto" and x.device.type != "cuda"):
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    no_backward = x.device.type == "cpu" and torch.is_grad_enabled()  # flex has no CPU backward
    return isinstance(m.kv_down, torch.nn.Identity) and not m.soft_routing and not no_backward


def _flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, heads: int,
          scale: float) -> torch.Tensor:
    """Token attention of (R, T, ·) region tensors with flex_attention and the routing BlockMask → (R, T, dim)."""
    n, (r, t) = index.shape[0], q.shape[:2]

    def seq(a: torch.Tensor) -> torch.Tensor:  # (N·p², T, c) → (N, heads, p²·T, c/heads)
        return a.reshape(n, r // n * t, a.shape[-1]).unflatten(-1, (heads, -1)).transpose(1, 2)

    if q.device.type == "cuda" and not _FLEX_COMPILED:  # eager flex materialises the scores; compiled is block-sparse
        _FLEX_COMPILED.append(torch.compile(flex_attention, dynamic=False))
    fn = _FLEX_COMPILED[0] if q.device.type == "cuda" else flex_attention
    out = fn(seq(q), seq(k), seq(v), block_mask=routing_block_mask(index, t), scale=scale)
    return out.transpose(1, 2).reshape(r, t, v.shape[-1])


def _flex_or_none(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor, heads: int,
                  scale: float) -> torch.Tensor | None:
    """`_flex`, or None (and the gather + SDPA path from then on) where flex fails on this GPU/torch."""
    global USE_FLEX
    try:
        return _flex(q, k, v, index, heads, scale)
    except Exception as e:  # noqa: BLE001 (compile/kernel errors of an untested CUDA setup have no common class)
        if q.device.type != "cuda":
            raise
        USE_FLEX = False
        warnings.warn(f"BiLevelRoutingAttention: flex_attention failed ({type(e).__name__}: {e}); "
                      "using gather + SDPA instead", stacklevel=2)
        return None


def _use_cpu_kernels(x: torch.Tensor) -> bool:
    """Whether the CPU path applies: CPU tensors, the fused kernels present, and no tracing/export/compile."""
    if not CPU_KERNELS or x.device.type != "cpu" or _FLASH_FWD is None or _FLASH_BWD is None:
        return False
    if torch.jit.is_tracing() or torch.jit.is_scripting() or torch.onnx.is_in_onnx_export():
        return False
    return not torch.compiler.is_compiling()


CPU_KERNELS = True  # set False to run the plain-ops path on CPU too (tests compare both)


def _bra_cpu(m: BiLevelRoutingAttention, x: torch.Tensor, hh: int, ww: int, h: int, w: int,
             ret_attn_mask: bool) -> tuple[torch.Tensor, tuple | None]:
    """BRA forward on CPU: one-pass layout copies, chunked fused attention, channels_last LePE."""
    n, nw, qk, dim = x.shape[0], m.n_win, m.qk_dim, m.dim
    xr = _ToRegions.apply(x, nw, h, w)  # (R, T, C) zero-padded, R = N·p², T = h·w
    # q, k and v as three contiguous tensors (row blocks of the one qkv weight): contiguous sources keep
    # the gathers and the gradient accumulation (index_select / index_add_) on their fast paths.
    lin = m.qkv.qkv
    if torch.is_autocast_enabled(x.device.type) or x.dtype not in (torch.float32, torch.float64):
        biases = lin.bias.split([qk, qk, dim]) if lin.bias is not None else (None, None, None)
        q, k, v = (F.linear(xr, wt, b) for wt, b in zip(lin.weight.split([qk, qk, dim]), biases))
    else:
        q, k, v = _SplitLinear.apply(xr, lin.weight, lin.bias, [qk, qk, dim])
    r_weight, r_idx = _route_regions(m, q, k, n)
    rows, weight = _rows(r_idx), r_weight.reshape(n * nw * nw, -1) if m.soft_routing else None
    lepe = isinstance(m.lepe, torch.nn.Conv2d)  # side_dwconv=0 (ZeroLePE) adds nothing
    pooled = not isinstance(m.kv_down, torch.nn.Identity)
    k_att, v_att = (_downsample_kv(m.kv_down, k, h, w), _downsample_kv(m.kv_down, v, h, w)) if pooled else (k, v)
    out, v_img = _RoutedAttention.apply(q, k_att, v_att, rows, weight, m.num_heads, m.scale,
                                        (n, nw, h, w) if lepe and not pooled else None)
    if lepe:
        if pooled:  # LePE works on the full-resolution values, which the attention did not see
            v_img = regions_to_image(v, n, nw, h, w)
        out = torch.add(out.view(n, nw, nw, h, w, dim), _image_as_regions(m.lepe(v_img), nw, h, w)).reshape(out.shape)
    extras = (r_weight, r_idx, attention_weights(q, k_att, rows, weight, m.num_heads, m.scale)) if ret_attn_mask else None
    return _ToImage.apply(m.wo(out), n, hh, ww, nw, h, w), extras


def _bra_generic(m: BiLevelRoutingAttention, x: torch.Tensor, hh: int, ww: int, h: int, w: int,
                 ret_attn_mask: bool) -> tuple[torch.Tensor, tuple | None]:
    """BRA forward with plain tensor ops and F.scaled_dot_product_attention or flex_attention (CUDA, tracing, export)."""
    n, nw, qk, heads = x.shape[0], m.n_win, m.qk_dim, m.num_heads
    # Under tracing/export always pad and crop (zero-width when divisible), so a dynamic-shape graph traced at a
    # divisible size still pads at other sizes.
    exporting = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
    padded = exporting or (hh, ww) != (nw * h, nw * w)
    if padded:
        x = F.pad(x, (0, nw * w - ww, 0, nw * h - hh))  # zeros right/bottom; padded tokens still get the qkv bias
    qkv = m.qkv.qkv(image_to_regions(x, nw))  # (R, T, 2qk + dim), R = N·p², T = h·w
    q = qkv[..., :qk]
    r_weight, r_idx = _route_regions(m, q, qkv[..., qk:2 * qk], n)
    rows, weight = _rows(r_idx), r_weight.reshape(n * nw * nw, -1) if m.soft_routing else None
    kv = _downsample_kv(m.kv_down, qkv[..., qk:], h, w)  # (R, T', qk + dim)
    out = _flex_or_none(q, kv[..., :qk], kv[..., qk:], r_idx, heads, m.scale) if _use_flex(m, x) else None
    if out is None:  # gather + SDPA
        kv_sel = _scaled(kv.index_select(0, rows.reshape(-1)), weight, False)  # keys and values in one gather
        kv_sel = kv_sel.view(rows.shape[0], -1, kv.shape[-1])  # (R, topk·T', qk + dim)
        out = F.scaled_dot_product_attention(_heads(q, heads), _heads(kv_sel[..., :qk], heads),
                                             _heads(kv_sel[..., qk:], heads), scale=m.scale)
        out = out.transpose(1, 2).flatten(2)  # (R, T, dim)
    if isinstance(m.lepe, torch.nn.Conv2d):
        out = out + image_to_regions(m.lepe(regions_to_image(qkv[..., 2 * qk:], n, nw, h, w)), nw)
    out = regions_to_image(m.wo(out), n, nw, h, w)
    extras = (r_weight, r_idx, attention_weights(q, kv[..., :qk], rows, weight, heads, m.scale)) if ret_attn_mask else None
    return (out[:, :, :hh, :ww].contiguous() if padded else out), extras

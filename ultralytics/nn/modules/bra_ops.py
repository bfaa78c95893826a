"""The computation of Bi-Level Routing Attention (fast path), as functions over a BRA module's parameters.

Everything runs in one region-major token layout, (N·p², T, C) with p² = n_win² regions of T tokens:
the input is cut into regions once, the qkv projection, routing, token attention and output
projection work on that layout, and one permute turns the result back into an image. The routed
key/value regions are collected with a single `index_select` (its backward is an `index_add`
of the size of the keys/values, not of the top-k-expanded copy), and the token attention runs
through `F.scaled_dot_product_attention`, so no (T × top-k·T) attention matrix is kept on the
CPU fused kernel or on CUDA flash / memory-efficient kernels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # pragma: no cover
    from .block import BiLevelRoutingAttention, TopkRouting

KV_DOWNSAMPLE_MODES = frozenset({"identity", "avgpool", "maxpool", "ada_avgpool", "ada_maxpool", "fracpool", "conv"})


def image_to_regions(x: torch.Tensor, n_win: int) -> torch.Tensor:
    """(N, C, H, W) → (N·n_win², (H/n_win)·(W/n_win), C), regions in row-major order."""
    n, c, hh, ww = x.shape
    h, w = hh // n_win, ww // n_win
    x = x.view(n, c, n_win, h, n_win, w).permute(0, 2, 4, 3, 5, 1)
    return x.reshape(n * n_win * n_win, h * w, c)


def regions_to_image(x: torch.Tensor, n: int, n_win: int, h: int, w: int) -> torch.Tensor:
    """Inverse of `image_to_regions`: (N·n_win², h·w, C) → contiguous (N, C, n_win·h, n_win·w)."""
    c = x.shape[-1]
    x = x.view(n, n_win, n_win, h, w, c).permute(0, 5, 1, 3, 2, 4)
    return x.reshape(n, c, n_win * h, n_win * w)


def route(router: TopkRouting, q_win: torch.Tensor, k_win: torch.Tensor, topk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Region-level routing in fp32: (N, p², c) region queries/keys → (weights, indices), each (N, p², topk)."""
    if not router.diff_routing:
        q_win, k_win = q_win.detach(), k_win.detach()
    q_win, k_win = q_win.float(), k_win.float()
    emb = router.emb
    if isinstance(emb, torch.nn.Linear):  # param_routing: run the learnable projection in fp32 as well
        weight = emb.weight.float()
        bias = emb.bias.float() if emb.bias is not None else None
        q_win, k_win = F.linear(q_win, weight, bias), F.linear(k_win, weight, bias)
    logits = (q_win * router.scale) @ k_win.transpose(-2, -1)  # (N, p², p²)
    top_logits, index = torch.topk(logits, k=topk, dim=-1)
    return top_logits.softmax(dim=-1), index


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


def bra_attention(m: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """Forward of `BiLevelRoutingAttention` `m` on an (N, C, H, W) input; returns (N, C, H, W)."""
    if x.dim() != 4 or x.shape[1] != m.dim:
        raise ValueError(f"BiLevelRoutingAttention(dim={m.dim}) expects an (N, {m.dim}, H, W) input, "
                         f"got shape {tuple(x.shape)}")
    n, _, h_in, w_in = x.shape
    nw = m.n_win
    pad_r, pad_b = (-w_in) % nw, (-h_in) % nw
    if pad_r or pad_b:
        if not m.auto_pad:
            raise ValueError(f"BiLevelRoutingAttention: input {h_in}×{w_in} is not divisible by n_win={nw}; "
                             "set auto_pad=True or resize the input")
        x = F.pad(x, (0, pad_r, 0, pad_b))  # zeros right/bottom; padded tokens still get the qkv bias
    h, w = (h_in + pad_b) // nw, (w_in + pad_r) // nw
    qk, heads = m.qk_dim, m.num_heads

    # Split (not slice) the projection: the backward of a split is one concatenation, while every
    # slice's backward would allocate and zero a tensor of the full qkv size.
    q, k, v = m.qkv.qkv(image_to_regions(x, nw)).split([qk, qk, m.dim], dim=-1)  # (R, T, ·), R = N·p², T = h·w

    # Region level: mean query/key of every region, top-k regions per query region.
    p2 = nw * nw
    r_weight, r_idx = route(m.router, q.mean(1).view(n, p2, qk), k.mean(1).view(n, p2, qk), m.topk)

    # Token level: gather the routed regions' keys/values (one copy each) and attend.
    offsets = torch.arange(n, device=x.device).view(n, 1, 1) * p2
    index = (r_idx + offsets).flatten()  # (R·topk,) rows of the region-major layout
    k_sel = _downsample_kv(m.kv_down, k, h, w).index_select(0, index)  # (R·topk, T', qk)
    v_sel = _downsample_kv(m.kv_down, v, h, w).index_select(0, index)  # (R·topk, T', dim)
    if m.soft_routing:
        weight = r_weight.flatten().to(k_sel.dtype).view(-1, 1, 1)
        k_sel, v_sel = k_sel * weight, v_sel * weight
    k_sel = k_sel.view(n * p2, -1, qk)  # (R, topk·T', qk)
    v_sel = v_sel.view(n * p2, -1, m.dim)
    out = F.scaled_dot_product_attention(_heads(q, heads), _heads(k_sel, heads), _heads(v_sel, heads), scale=m.scale)
    out = out.transpose(1, 2).flatten(2)  # (R, T, dim)

    if isinstance(m.lepe, torch.nn.Conv2d):  # side_dwconv=0 (ZeroLePE) adds nothing
        out = out + image_to_regions(m.lepe(regions_to_image(v, n, nw, h, w)), nw)
    out = regions_to_image(m.wo(out), n, nw, h, w)
    if pad_r or pad_b:
        out = out[:, :, :h_in, :w_in].contiguous()
    return out

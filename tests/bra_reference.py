"""Plain implementations of Bi-Level Routing Attention that the fast path is tested (and benchmarked) against.

Both read the parameters of a `BiLevelRoutingAttention` module and follow the semantics of SPEC §3 and
the BiFormer article literally:

* `reference_bra` is the article-style vectorised formulation: an image-layout (NHWC) tensor, a
  top-k *expanded* `torch.gather` of the key/value regions, and an explicitly materialised softmax
  attention matrix. It is the baseline of benchmarks/bra.py.
* `naive_bra` loops over images, query regions and heads with no batching tricks at all; it is slow
  and only meant for tiny inputs, as an independent check of `reference_bra` itself.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange


def _pad(m, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """NCHW → padded NHWC (zeros right/bottom to multiples of n_win)."""
    h_in, w_in = x.shape[-2:]
    x = x.permute(0, 2, 3, 1)
    pad_r, pad_b = (-w_in) % m.n_win, (-h_in) % m.n_win
    return F.pad(x, (0, 0, 0, pad_r, 0, pad_b)), h_in, w_in


def _routing(m, q_win: torch.Tensor, k_win: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if not m.diff_routing:
        q_win, k_win = q_win.detach(), k_win.detach()
    q_win, k_win = m.router.emb(q_win), m.router.emb(k_win)
    logits = (q_win * m.scale) @ k_win.transpose(-2, -1)
    top, idx = torch.topk(logits, k=m.topk, dim=-1)
    return torch.softmax(top, dim=-1), idx


def _lepe(m, v_img: torch.Tensor) -> torch.Tensor:
    """v as an NHWC image → LePE term, NHWC."""
    if not isinstance(m.lepe, torch.nn.Conv2d):
        return torch.zeros_like(v_img)
    return m.lepe(v_img.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def _pool_regions(m, kv: torch.Tensor) -> torch.Tensor:
    """(n, p², h, w, c) → (n, p², h'·w', c) through m.kv_down."""
    n, p2 = kv.shape[:2]
    pooled = m.kv_down(rearrange(kv, "n p h w c -> (n p) c h w"))
    return rearrange(pooled, "(n p) c h w -> n p (h w) c", n=n, p=p2)


def reference_bra(m, x: torch.Tensor) -> torch.Tensor:
    """Article-style BRA forward (expanded gather + materialised attention); (N, C, H, W) → same."""
    x, h_in, w_in = _pad(m, x)
    n, hh, ww, _ = x.shape
    nw, qk = m.n_win, m.qk_dim
    regions = rearrange(x, "n (j h) (i w) c -> n (j i) h w c", j=nw, i=nw)
    q, kv = m.qkv(regions)  # (n, p², h, w, qk), (n, p², h, w, qk + dim)
    q_pix = rearrange(q, "n p h w c -> n p (h w) c")
    kv_pix = _pool_regions(m, kv)
    r_weight, r_idx = _routing(m, q.mean([2, 3]), kv[..., :qk].mean([2, 3]))

    p2, t_kv, c_kv = kv_pix.shape[1:]
    k_sel_idx = r_idx.view(n, p2, m.topk, 1, 1).expand(-1, -1, -1, t_kv, c_kv)
    kv_sel = torch.gather(kv_pix.view(n, 1, p2, t_kv, c_kv).expand(-1, p2, -1, -1, -1), dim=2, index=k_sel_idx)
    if m.soft_routing:
        kv_sel = r_weight.view(n, p2, m.topk, 1, 1) * kv_sel
    k_sel, v_sel = kv_sel.split([qk, m.dim], dim=-1)

    heads = m.num_heads
    k_sel = rearrange(k_sel, "n p k t (m c) -> (n p) m c (k t)", m=heads)
    v_sel = rearrange(v_sel, "n p k t (m c) -> (n p) m (k t) c", m=heads)
    q_pix = rearrange(q_pix, "n p t (m c) -> (n p) m t c", m=heads)
    attn = torch.softmax((q_pix * m.scale) @ k_sel, dim=-1)
    out = rearrange(attn @ v_sel, "(n j i) m (h w) c -> n (j h) (i w) (m c)", j=nw, i=nw, h=hh // nw, w=ww // nw)

    v_img = rearrange(kv[..., qk:], "n (j i) h w c -> n (j h) (i w) c", j=nw, i=nw)
    out = m.wo(out + _lepe(m, v_img))
    return out[:, :h_in, :w_in].permute(0, 3, 1, 2).contiguous()


def naive_bra(m, x: torch.Tensor) -> torch.Tensor:
    """Loop-by-loop BRA forward for tiny inputs: per image, per query region, per head."""
    x, h_in, w_in = _pad(m, x)
    n, hh, ww, _ = x.shape
    nw, qk, heads = m.n_win, m.qk_dim, m.num_heads
    h, w = hh // nw, ww // nw
    qkv = m.qkv.qkv(x)  # (n, H, W, 2qk + dim), per pixel
    q_img, k_img, v_img = qkv[..., :qk], qkv[..., qk:2 * qk], qkv[..., 2 * qk:]

    def region(t: torch.Tensor, b: int, r: int) -> torch.Tensor:  # (h, w, c) block of region r
        j, i = divmod(r, nw)
        return t[b, j * h:(j + 1) * h, i * w:(i + 1) * w]

    out = torch.zeros(n, hh, ww, m.dim, dtype=x.dtype)
    dq, dv = qk // heads, m.dim // heads
    for b in range(n):
        q_win = torch.stack([region(q_img, b, r).mean((0, 1)) for r in range(nw * nw)])
        k_win = torch.stack([region(k_img, b, r).mean((0, 1)) for r in range(nw * nw)])
        weights, idx = _routing(m, q_win[None], k_win[None])
        for r in range(nw * nw):
            keys, values = [], []
            for slot, src in enumerate(idx[0, r].tolist()):
                kv_reg = torch.cat([region(k_img, b, src), region(v_img, b, src)], -1)  # (h, w, qk + dim)
                kv_reg = m.kv_down(kv_reg.permute(2, 0, 1)[None])[0].flatten(1).T  # (t', qk + dim)
                if m.soft_routing:
                    kv_reg = kv_reg * weights[0, r, slot]
                keys.append(kv_reg[:, :qk])
                values.append(kv_reg[:, qk:])
            keys, values = torch.cat(keys), torch.cat(values)
            queries = region(q_img, b, r).reshape(h * w, qk)
            for hd in range(heads):
                qh, kh, vh = queries[:, hd * dq:(hd + 1) * dq], keys[:, hd * dq:(hd + 1) * dq], values[:, hd * dv:(hd + 1) * dv]
                a = torch.softmax(qh @ kh.T * m.scale, dim=-1) @ vh
                j, i = divmod(r, nw)
                out[b, j * h:(j + 1) * h, i * w:(i + 1) * w, hd * dv:(hd + 1) * dv] = a.view(h, w, dv)
    out = m.wo(out + _lepe(m, v_img))
    return out[:, :h_in, :w_in].permute(0, 3, 1, 2).contiguous()

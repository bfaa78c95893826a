"""Bi-Level Routing Attention: the fast path against the article-style reference, gradients, options,
robustness (layouts, grad modes, autocast, determinism, pickling), state_dict layout and FLOPs."""

from __future__ import annotations

import inspect
import pickle
import re
import sys
import warnings
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ultralytics.nn.modules.bra_ops as bra_ops  # noqa: E402
from bra_reference import naive_bra, reference_bra  # noqa: E402
from ultralytics.nn.modules.block import BiLevelRoutingAttention  # noqa: E402

ATOL = RTOL = 1e-5


def assert_matches(a: torch.Tensor, b: torch.Tensor, what: str = "", tol: float = 1e-5) -> None:
    """max |a − b| ≤ tol · max(1, max |b|): fp32 agreement within 1e-5 of the tensor's scale (weight
    gradients sum hundreds of token terms, so their absolute rounding grows with their size)."""
    scale = max(1.0, b.abs().max().item())
    err = (a - b).abs().max().item()
    assert a.shape == b.shape and err <= tol * scale, f"{what}: max abs diff {err:.3g} > {tol:g} × {scale:.3g}"

# (constructor kwargs, input shape): small sizes, each a different corner of the option space
CASES = {
    "divisible-b3": (dict(dim=32, n_win=7, num_heads=4), (3, 32, 14, 14)),
    "not-divisible-b1": (dict(dim=32, n_win=7, num_heads=4), (1, 32, 15, 17)),
    "smaller-than-n_win": (dict(dim=32, n_win=7, num_heads=4), (2, 32, 5, 9)),
    "one-pixel-regions": (dict(dim=16, n_win=3, num_heads=2, topk=2), (2, 16, 3, 2)),
    "topk1-heads1": (dict(dim=16, n_win=4, num_heads=1, topk=1), (2, 16, 8, 12)),
    "topk-all-heads8": (dict(dim=32, n_win=3, num_heads=8, topk=9), (2, 32, 9, 10)),
    "qk_dim": (dict(dim=32, n_win=3, num_heads=4, qk_dim=16, topk=3), (2, 32, 11, 9)),
    "avgpool": (dict(dim=16, n_win=3, num_heads=2, topk=2, kv_downsample_mode="avgpool", kv_downsample_ratio=2),
                (2, 16, 12, 12)),
    "maxpool": (dict(dim=16, n_win=3, num_heads=2, topk=2, kv_downsample_mode="maxpool", kv_downsample_ratio=2),
                (2, 16, 11, 12)),
    "ada_avgpool": (dict(dim=16, n_win=3, num_heads=2, topk=3, kv_downsample_mode="ada_avgpool", kv_per_win=2),
                    (2, 16, 15, 13)),
    "ada_maxpool-qk_dim": (dict(dim=16, n_win=2, num_heads=2, qk_dim=8, topk=2, kv_downsample_mode="ada_maxpool",
                                kv_per_win=3), (2, 16, 12, 10)),
    "soft": (dict(dim=16, n_win=3, num_heads=2, topk=3, soft_routing=True), (2, 16, 10, 11)),
    "diff+soft": (dict(dim=16, n_win=3, num_heads=2, topk=3, soft_routing=True, diff_routing=True), (2, 16, 9, 9)),
    "param_routing": (dict(dim=16, n_win=3, num_heads=2, topk=2, soft_routing=True, diff_routing=True,
                           param_routing=True), (2, 16, 9, 12)),
    "qkv-no-lepe": (dict(dim=16, n_win=3, num_heads=2, topk=2, param_attention="qkv", side_dwconv=0), (2, 16, 10, 9)),
    "lepe5-qk_scale": (dict(dim=16, n_win=3, num_heads=4, topk=2, side_dwconv=5, qk_scale=0.3), (2, 16, 9, 9)),
}


def make(seed: int = 0, **kwargs) -> BiLevelRoutingAttention:
    """A BRA module with random (not default-initialised) weights, so every term matters."""
    torch.manual_seed(seed)
    m = BiLevelRoutingAttention(**kwargs)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.25)
    return m


def outputs_and_grads(fn, m: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor) -> list[torch.Tensor]:
    """[output, d/dx, d/dparam...] of fn(m, x) for the upstream gradient `grad`."""
    x = x.detach().clone().requires_grad_(True)
    y = fn(m, x)
    params = [p for p in m.parameters()]
    grads = torch.autograd.grad(y, [x, *params], grad, allow_unused=True)
    return [y.detach(), *[g if g is not None else torch.zeros_like(p) for g, p in zip(grads, [x, *params])]]


@pytest.fixture(params=["cpu-kernels", "plain-ops"])
def path(request, monkeypatch):
    """Run a test on both executions of the fast path (CPU fused kernels, and the plain-ops one)."""
    monkeypatch.setattr(bra_ops, "CPU_KERNELS", request.param == "cpu-kernels")
    return request.param


@pytest.mark.parametrize("case", list(CASES))
def test_fast_path_matches_reference(case, path):
    kwargs, shape = CASES[case]
    m = make(**kwargs)
    torch.manual_seed(1)
    x, g = torch.randn(shape), torch.randn(shape)
    fast = outputs_and_grads(lambda mod, inp: mod(inp), m, x, g)
    ref = outputs_and_grads(reference_bra, m, x, g)
    names = ["output", "input grad"] + [f"grad of {n}" for n, _ in m.named_parameters()]
    for name, a, b in zip(names, fast, ref):
        assert_matches(a, b, f"{case} / {path}: {name}")


def test_many_chunks_match_reference(monkeypatch):
    """The CPU path gathers keys/values a chunk of query regions at a time: tiny chunks change nothing."""
    kwargs, shape = dict(dim=16, n_win=4, num_heads=2, topk=3, soft_routing=True, diff_routing=True), (3, 16, 13, 14)
    m = make(**kwargs)
    torch.manual_seed(2)
    x, g = torch.randn(shape), torch.randn(shape)
    ref = outputs_and_grads(reference_bra, m, x, g)
    for elements in (1, 3 * 4 * 16 * 2 * 5):  # one query region per chunk; five per chunk (uneven tail)
        monkeypatch.setattr(bra_ops, "CHUNK_ELEMENTS", elements)
        for a, b in zip(outputs_and_grads(lambda mod, inp: mod(inp), m, x, g), ref):
            assert_matches(a, b, f"chunk of {elements} elements")


@pytest.mark.parametrize("case", ["not-divisible-b1", "one-pixel-regions", "qk_dim", "maxpool", "ada_avgpool",
                                  "diff+soft", "qkv-no-lepe"])
def test_reference_matches_naive_loops(case):
    """The oracle itself: the vectorised reference equals a plain per-region, per-head loop (fp64)."""
    kwargs, shape = CASES[case]
    if kwargs["n_win"] > 3:
        kwargs, shape = {**kwargs, "n_win": 3}, (1, shape[1], 7, 8)
    m = make(**kwargs).double()
    torch.manual_seed(3)
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(reference_bra(m, x), naive_bra(m, x), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("kwargs", [dict(), dict(soft_routing=True, diff_routing=True, param_routing=True)],
                         ids=["default", "param_routing"])
def test_gradient_reaches_every_parameter(kwargs, path):
    m = make(dim=16, n_win=3, num_heads=2, topk=2, **kwargs)
    m(torch.randn(2, 16, 9, 10)).square().sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
        assert p.grad.abs().sum() > 0, f"{name} has an all-zero gradient"
    assert any(n.startswith("router.emb") for n, _ in m.named_parameters()) == bool(kwargs)


def test_routing_gradient_only_with_diff_routing():
    """Without diff_routing the routing is detached: the soft weights carry no gradient to q/k."""
    torch.manual_seed(4)
    x = torch.randn(1, 16, 9, 9)
    grads = []
    for diff in (False, True):
        m = make(dim=16, n_win=3, num_heads=2, topk=2, soft_routing=True, diff_routing=diff)
        y = m(x)
        grads.append(torch.autograd.grad(y.square().sum(), m.qkv.qkv.weight)[0])
        ref = torch.autograd.grad(reference_bra(m, x).square().sum(), m.qkv.qkv.weight)[0]
        assert_matches(grads[-1], ref, f"diff_routing={diff}")
    assert not torch.allclose(grads[0], grads[1])


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    (dict(kv_downsample_mode="fracpool"), NotImplementedError, "fracpool.*unimplemented"),
    (dict(kv_downsample_mode="conv"), NotImplementedError, "'conv'.*unimplemented"),
    (dict(diff_routing=True), NotImplementedError, "hard routing"),
    (dict(kv_downsample_mode="bilinear"), ValueError, "not supported"),
    (dict(param_routing=True), ValueError, "needs diff_routing"),
    (dict(num_heads=5), ValueError, "divisible by num_heads"),
    (dict(qk_dim=20, num_heads=8), ValueError, "divisible by num_heads"),
    (dict(topk=50), ValueError, "topk"),
    (dict(topk=0), ValueError, "topk"),
    (dict(n_win=0), ValueError, "n_win"),
    (dict(side_dwconv=4), ValueError, "side_dwconv"),
    (dict(param_attention="qkvx"), ValueError, "param_attention"),
    (dict(kv_downsample_mode="ada_avgpool", kv_per_win=0), ValueError, "kv_per_win"),
    (dict(kv_downsample_mode="avgpool", kv_downsample_ratio=0), ValueError, "kv_downsample_ratio"),
])
def test_invalid_options_raise_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        BiLevelRoutingAttention(32, **kwargs)


def test_invalid_inputs_raise_clear_errors():
    m = BiLevelRoutingAttention(32, num_heads=4)
    with pytest.raises(ValueError, match=r"expects an \(N, 32, H, W\) input"):
        m(torch.randn(1, 16, 14, 14))
    with pytest.raises(ValueError, match="expects"):
        m(torch.randn(32, 14, 14))
    with pytest.raises(ValueError, match="not divisible by n_win=7.*auto_pad"):
        BiLevelRoutingAttention(32, num_heads=4, auto_pad=False)(torch.randn(1, 32, 15, 14))


def test_no_bare_asserts_in_bra_code():
    """Validation raises real exceptions (asserts vanish under python -O)."""
    bra_infer = sys.modules["ultralytics.nn.modules.bra_infer"]
    for module in (bra_ops, bra_infer, sys.modules[BiLevelRoutingAttention.__module__]):
        assert not re.search(r"^\s*assert\b", inspect.getsource(module), re.M), module.__name__


def test_pickle_round_trip_without_lepe():
    m = make(dim=16, n_win=3, num_heads=2, topk=2, side_dwconv=0)
    x = torch.randn(1, 16, 9, 9)
    m2 = pickle.loads(pickle.dumps(m))
    with torch.no_grad():
        torch.testing.assert_close(m2(x), m(x), atol=0, rtol=0)


def test_channels_last_and_non_contiguous_inputs(path):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    torch.manual_seed(5)
    x = torch.randn(2, 16, 10, 11)
    with torch.no_grad():
        y = m(x)
        torch.testing.assert_close(m(x.contiguous(memory_format=torch.channels_last)), y, atol=ATOL, rtol=RTOL)
        torch.testing.assert_close(m(torch.randn(2, 16, 12, 13)[:, :, 1:11, 2:13].copy_(x)), y, atol=ATOL, rtol=RTOL)
        transposed = x.transpose(2, 3).contiguous().transpose(2, 3)  # (N, C, H, W) view with W as the slow axis
        assert not transposed.is_contiguous()
        torch.testing.assert_close(m(transposed), y, atol=ATOL, rtol=RTOL)
    xg = x.contiguous(memory_format=torch.channels_last).requires_grad_(True)
    m(xg).sum().backward()
    x2 = x.clone().requires_grad_(True)
    m(x2).sum().backward()
    assert_matches(xg.grad, x2.grad, "channels_last input grad")


def test_no_grad_and_inference_mode(path):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    x = torch.randn(1, 16, 10, 10)
    ref = reference_bra(m, x).detach()
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, atol=ATOL, rtol=RTOL)
    with torch.inference_mode():
        torch.testing.assert_close(m(x), ref, atol=ATOL, rtol=RTOL)


def _routing_logits(m: BiLevelRoutingAttention, x: torch.Tensor) -> torch.Tensor:
    """fp32 region-to-region routing logits of m on x (n_win divides x's size)."""
    with torch.no_grad():
        q, k, _ = m.qkv.qkv(bra_ops._to_regions(x, m.n_win, x.shape[2] // m.n_win, x.shape[3] // m.n_win)).split(
            [m.qk_dim, m.qk_dim, m.dim], -1)
    return (q.mean(1) * m.scale) @ k.mean(1).T


def _separated_input(m: BiLevelRoutingAttention) -> torch.Tensor:
    """An input made of region-constant codes whose top-k routing choice wins by > 5% of the logit range."""
    for seed in range(500):
        torch.manual_seed(seed)
        codes = torch.randn(m.n_win * m.n_win, m.dim) * 2
        x = codes.view(m.n_win, m.n_win, -1).permute(2, 0, 1).repeat_interleave(4, 1).repeat_interleave(4, 2)
        x = (x + 0.01 * torch.randn_like(x)).unsqueeze(0)
        top = _routing_logits(m, x).sort(-1, descending=True).values
        if (top[:, m.topk - 1] - top[:, m.topk]).min() > 0.05 * (top.max() - top.min()):
            return x
    raise RuntimeError("no well-separated input found")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cpu_autocast_is_finite_and_routes_like_fp32(dtype, monkeypatch):
    m = make(dim=16, n_win=2, num_heads=2, topk=2, soft_routing=True)
    x = _separated_input(m)
    seen = []
    route = bra_ops.route

    def spy(*args, **kwargs):
        weights, index = route(*args, **kwargs)
        seen.append((weights.dtype, index.clone()))
        return weights, index

    monkeypatch.setattr(bra_ops, "route", spy)
    with torch.no_grad():
        m(x)
    (_, idx32), = seen
    seen.clear()
    xg = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=dtype):
        y = m(xg)
    assert y.dtype == dtype and torch.isfinite(y).all()
    y.float().square().mean().backward()
    assert torch.isfinite(xg.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
    (w_dtype, idx_amp), = seen
    assert w_dtype == torch.float32  # routing logits / top-k in fp32
    assert torch.equal(idx_amp.sort(-1).values, idx32.sort(-1).values)


def test_deterministic_algorithms(path):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    x = torch.randn(2, 16, 10, 11)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        runs = []
        for _ in range(2):
            m.zero_grad(set_to_none=True)
            xg = x.clone().requires_grad_(True)
            m(xg).square().sum().backward()
            runs.append([xg.grad] + [p.grad.clone() for p in m.parameters()])
    finally:
        torch.use_deterministic_algorithms(previous)
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("kwargs", "keys"), [
    (dict(), ["lepe.weight", "lepe.bias", "qkv.qkv.weight", "qkv.qkv.bias", "wo.weight", "wo.bias"]),
    (dict(param_routing=True, diff_routing=True, soft_routing=True),
     ["lepe.weight", "lepe.bias", "router.emb.weight", "router.emb.bias", "qkv.qkv.weight", "qkv.qkv.bias",
      "wo.weight", "wo.bias"]),
    (dict(side_dwconv=0, param_attention="qkv"), ["qkv.qkv.weight", "qkv.qkv.bias"]),
])
def test_state_dict_layout(kwargs, keys):
    sd = BiLevelRoutingAttention(64, num_heads=8, qk_dim=32, **kwargs).state_dict()
    assert list(sd) == keys
    assert sd["qkv.qkv.weight"].shape == (2 * 32 + 64, 64)


def bra_flops(dim: int, h: int, w: int, n_win: int = 7, topk: int = 4, qk_dim: int | None = None,
              side_dwconv: int = 3, kv_tokens: int | None = None, param_routing: bool = False, wo: bool = True) -> int:
    """Hand count of one BRA forward (batch 1), 2 FLOPs per multiply-add, as docs/bra.md states."""
    qk = qk_dim or dim
    hp, wp = -(-h // n_win) * n_win, -(-w // n_win) * n_win  # padded
    tokens, regions = hp * wp, n_win * n_win
    keys = topk * (kv_tokens if kv_tokens is not None else tokens // regions)  # keys each query attends to
    flops = 2 * tokens * dim * (2 * qk + dim)  # qkv Linear
    flops += 2 * regions * regions * qk  # routing logits
    flops += 2 * 2 * regions * qk * qk if param_routing else 0  # router.emb on region queries and keys
    flops += 2 * tokens * keys * qk + 2 * tokens * keys * dim  # attention: q·kᵀ and softmax·v over topk·T keys
    flops += 2 * tokens * dim * side_dwconv ** 2  # LePE depth-wise conv on the padded value image
    flops += 2 * tokens * dim * dim if wo else 0  # output Linear
    return flops


@pytest.mark.parametrize(("kwargs", "size", "extra"), [
    (dict(dim=64, num_heads=8), (20, 20), {}),
    (dict(dim=32, num_heads=4, n_win=3, topk=2, qk_dim=16, side_dwconv=5), (13, 11), {}),
    (dict(dim=32, num_heads=4, n_win=3, topk=2, kv_downsample_mode="ada_avgpool", kv_per_win=2,
          param_attention="qkv", side_dwconv=0), (12, 12), dict(kv_tokens=4, wo=False)),
    (dict(dim=32, num_heads=4, n_win=3, topk=3, soft_routing=True, diff_routing=True, param_routing=True),
     (9, 9), dict(param_routing=True)),
])
def test_get_flops_of_a_lone_bra_matches_hand_count(kwargs, size, extra, path):
    from ultralytics.utils.torch_utils import get_flops

    m = BiLevelRoutingAttention(**kwargs)
    expected = bra_flops(kwargs["dim"], *size, n_win=kwargs.get("n_win", 7), topk=kwargs.get("topk", 4),
                         qk_dim=kwargs.get("qk_dim"), side_dwconv=kwargs.get("side_dwconv", 3), **extra)
    assert get_flops(m, imgsz=size, ch=kwargs["dim"]) * 1e9 == pytest.approx(expected, rel=1e-9)


def test_biformer_gflops_include_the_three_bras():
    from ultralytics.nn.tasks import DetectionModel
    from ultralytics.utils.torch_utils import get_flops

    plain = get_flops(DetectionModel("yolov8n.yaml", verbose=False), 640)
    biformer = get_flops(DetectionModel("yolov8n_BiFormer.yaml", verbose=False), 640)
    bras = sum(bra_flops(c, s, s) for c, s in ((192, 80), (192, 40), (384, 20))) / 1e9
    assert biformer - plain >= bras - 1e-6
    assert biformer - plain == pytest.approx(bras, rel=1e-6)  # the BRAs are the only difference


# ---------------------------------------------------------------------------------------------
# forward(x, ret_attn_mask=True): the article's (out, r_weight, r_idx, attn_weight)
# ---------------------------------------------------------------------------------------------


class _Capture(torch.overrides.TorchFunctionMode):
    """Records the results of torch.topk and torch.softmax calls (reference_bra's routing and attention)."""

    def __init__(self):
        super().__init__()
        self.topk, self.softmax = [], []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.topk:
            self.topk.append(out)
        elif func is torch.softmax:
            self.softmax.append(out)
        return out


def reference_with_mask(m, x):
    """reference_bra's output and its intermediates as the article's module returns them:
    r_weight = softmax of the top-k logits, r_idx = the top-k indices, attn_weight = the token softmax."""
    with _Capture() as cap:
        out = reference_bra(m, x)
    (_, r_idx), = cap.topk
    r_weight, attn_weight = cap.softmax
    return out, r_weight, r_idx, attn_weight


@pytest.mark.parametrize("case", ["divisible-b3", "not-divisible-b1", "smaller-than-n_win", "qk_dim", "soft",
                                  "ada_avgpool", "qkv-no-lepe"])
def test_ret_attn_mask_matches_article_outputs(case, path):
    kwargs, shape = CASES[case]
    m = make(**kwargs)
    torch.manual_seed(5)
    x = torch.randn(shape)
    got = m(x, ret_attn_mask=True)
    ref = reference_with_mask(m, x)
    assert len(got) == 4
    n, p2, k = shape[0], m.n_win ** 2, m.topk
    assert got[1].shape == got[2].shape == (n, p2, k)
    assert got[2].dtype == torch.int64
    assert got[3].shape == ref[3].shape and got[3].shape[:2] == (n * p2, m.num_heads)
    assert torch.equal(got[2], ref[2]), f"{case}: r_idx differs"
    for name, a, b in zip(("out", "r_weight", "r_idx", "attn_weight"), got, ref):
        assert_matches(a.float(), b.float(), f"{case} / {path}: {name}")
    torch.testing.assert_close(got[3].sum(-1), torch.ones_like(got[3][..., 0]))  # probabilities
    assert_matches(got[0], m(x), f"{case}: out with and without ret_attn_mask")


def test_ret_attn_mask_outputs_are_differentiable(path):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    x = torch.randn(1, 16, 9, 9, requires_grad=True)
    out, r_weight, r_idx, attn = m(x, ret_attn_mask=True)
    (out.square().sum() + attn.square().sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not r_weight.requires_grad  # routing is detached without diff_routing, as in the article


# ---------------------------------------------------------------------------------------------
# flex_attention (CUDA path): exact against gather + SDPA; checked here with the eager CPU flex
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "shape"), [
    (dict(dim=32, n_win=7, num_heads=4), (2, 32, 15, 17)),
    (dict(dim=32, n_win=3, num_heads=4, qk_dim=16, topk=3), (2, 32, 11, 9)),
    (dict(dim=64, n_win=2, num_heads=8, topk=1), (1, 64, 24, 24)),  # 144-token blocks
])
def test_flex_attention_path_matches_gather_sdpa(kwargs, shape, monkeypatch):
    if bra_ops.flex_attention is None:
        pytest.skip("torch without flex_attention")
    monkeypatch.setattr(bra_ops, "CPU_KERNELS", False)
    m = make(**kwargs)
    torch.manual_seed(6)
    x = torch.randn(shape)
    with torch.no_grad():
        monkeypatch.setattr(bra_ops, "USE_FLEX", False)
        expected = m(x)
        monkeypatch.setattr(bra_ops, "USE_FLEX", True)
        calls = []
        real = bra_ops._flex
        monkeypatch.setattr(bra_ops, "_flex", lambda *a: calls.append(1) or real(*a))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # eager flex_attention warns that it is not compiled
            got = m(x)
    assert calls, "the flex path did not run"
    assert_matches(got, expected, "flex vs gather+SDPA")
    assert_matches(got, reference_bra(m, x).detach(), "flex vs reference")


def test_routing_block_mask_blocks_are_the_routed_regions():
    if bra_ops.flex_attention is None:
        pytest.skip("torch without flex_attention")
    index = torch.tensor([[[2, 0], [1, 3], [3, 2], [0, 1]]])  # 1 image, 4 regions, topk 2
    mask = bra_ops.routing_block_mask(index, tokens=5)
    assert mask.BLOCK_SIZE == (5, 5) and mask.shape[-2:] == (20, 20)
    dense = mask.to_dense()[0, 0].bool()  # (query blocks, key blocks)
    expected = torch.zeros(4, 4, dtype=torch.bool).scatter_(1, index[0], True)
    assert torch.equal(dense, expected)
    q, kv = torch.tensor([7]), torch.tensor([16])  # token 7 is in region 1, token 16 in region 3 (routed)
    assert bool(mask.mask_mod(torch.tensor(0), torch.tensor(0), q, kv))
    assert not bool(mask.mask_mod(torch.tensor(0), torch.tensor(0), q, torch.tensor(0)))


def test_cpu_default_uses_no_flex_and_no_flex_with_grad(monkeypatch):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    x = torch.randn(1, 16, 9, 9)
    assert not bra_ops._use_flex(m, x)  # 'auto' means CUDA only
    monkeypatch.setattr(bra_ops, "USE_FLEX", True)
    with torch.enable_grad():
        assert not bra_ops._use_flex(m, x)  # flex has no CPU backward
    with torch.no_grad():
        assert bra_ops._use_flex(m, x)
        assert not bra_ops._use_flex(make(dim=16, n_win=3, num_heads=2, topk=2, soft_routing=True), x)


# ---------------------------------------------------------------------------------------------
# n_win versus input size: one warning when padding exceeds a quarter of the tokens
# ---------------------------------------------------------------------------------------------


def test_padding_warning_once_per_size(monkeypatch):
    from ultralytics.nn.modules import block

    monkeypatch.setattr(block, "_PADDING_WARNED", set())
    messages = []
    monkeypatch.setattr(block.LOGGER, "warning", lambda msg, *a, **k: messages.append(msg))
    m = BiLevelRoutingAttention(32, n_win=7, num_heads=4)
    m(torch.randn(1, 32, 10, 10))  # 10 → 14: 49 % padding
    m(torch.randn(1, 32, 10, 10))
    assert len(messages) == 1 and "10×10 input is padded to 14×14, 49%" in messages[0] and "n_win" in messages[0]
    m(torch.randn(1, 32, 12, 12))  # 12 → 14: 27 % padding
    assert len(messages) == 2 and "27%" in messages[1]
    m(torch.randn(1, 32, 13, 13))  # 13 → 14: 14 % padding, no warning
    m(torch.randn(1, 32, 14, 14))
    with block.quiet_padding_warnings():
        m(torch.randn(1, 32, 5, 5))
    assert len(messages) == 2

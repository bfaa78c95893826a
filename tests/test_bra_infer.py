"""BRA's CPU inference path (`bra_infer.bra_cpu_infer`): exact against the article-style reference in both of its
call schedules, with and without the output projection; only real queries attended; scratch buffers never leak
into outputs (later calls, other threads, inference_mode then no_grad); autograd still takes the training path.
Also the fuse-time Upsample → Concat → BRA layer (`bra_fused.py`): exact, its fallbacks, the model rewrite."""

from __future__ import annotations

import copy
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ultralytics.nn.modules.bra_fused as bra_fused  # noqa: E402
import ultralytics.nn.modules.bra_infer as bra_infer  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from bra_reference import reference_bra  # noqa: E402
from test_bra import CASES, assert_matches, make  # noqa: E402

# the cases the inference path takes (identity key/value down-sampling, equal q/k and v head sizes)
INFER_CASES = [c for c, (kw, _) in CASES.items() if kw.get("kv_downsample_mode", "identity") == "identity"
               and "qk_dim" not in kw]


@pytest.fixture(params=["per-row", "one-call"])
def schedule(request, monkeypatch):
    """Both call schedules: two kernel calls per region row (real queries only), or one call for everything."""
    monkeypatch.setattr(bra_infer, "ROW_CALLS_MIN_TOKENS", 0 if request.param == "per-row" else 10 ** 9)
    return request.param


def spy_attend(monkeypatch) -> list[tuple[int, int]]:
    """Record (regions, query tokens) of every kernel call of the inference path."""
    calls, real = [], bra_infer._attend
    monkeypatch.setattr(bra_infer, "_attend", lambda q, *a: calls.append(tuple(q.shape[:2])) or real(q, *a))
    return calls


@pytest.mark.parametrize("wo", ["linear", "folded"])
@pytest.mark.parametrize("case", INFER_CASES)
def test_inference_path_matches_reference(case, wo, schedule, monkeypatch):
    kwargs, shape = CASES[case]
    m = make(**kwargs).eval()
    if wo == "folded":
        m.wo = torch.nn.Identity()  # what fold_bra_output_projections leaves behind
    torch.manual_seed(1)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = reference_bra(m, x)
    calls = spy_attend(monkeypatch)
    with torch.inference_mode():
        a = m(x)
    with torch.no_grad():
        b = m(x.contiguous(memory_format=torch.channels_last))
    assert calls, "the inference path did not run"
    assert a.shape == b.shape == ref.shape
    assert_matches(a, ref, f"{case} / {schedule} / wo {wo} (inference_mode)")
    assert_matches(b, ref, f"{case} / {schedule} / wo {wo} (no_grad, channels_last input)")


@pytest.mark.parametrize("shape", [(2, 32, 80 // 4, 80 // 4 - 3), (1, 32, 14, 14), (1, 32, 5, 9)])
def test_only_real_queries_are_attended(shape, monkeypatch):
    """Per-row schedule: the kernel sees each real token once as a query, no padded one (padded keys still count)."""
    monkeypatch.setattr(bra_infer, "ROW_CALLS_MIN_TOKENS", 0)
    m = make(dim=32, n_win=7, num_heads=4).eval()
    calls = spy_attend(monkeypatch)
    x = torch.randn(shape)
    with torch.no_grad():
        out, ref = m(x), reference_bra(m, x)
    assert sum(r * t for r, t in calls) == shape[0] * shape[2] * shape[3]
    assert_matches(out, ref, f"{shape}")


def test_autograd_takes_the_training_path(monkeypatch):
    m = make(dim=16, n_win=3, num_heads=2, topk=2)
    calls = spy_attend(monkeypatch)
    x = torch.randn(1, 16, 10, 11, requires_grad=True)
    m(x).sum().backward()
    assert not calls and x.grad is not None
    m(x, ret_attn_mask=True)  # the article's extra outputs come from the training path too
    assert not calls


@pytest.mark.parametrize("wo", ["linear", "folded"])
def test_scratch_never_leaks_into_outputs(wo):
    """Outputs stay intact after later calls, across threads, and after switching inference_mode → no_grad."""
    m = make(dim=32, n_win=7, num_heads=4).eval()
    if wo == "folded":
        m.wo = torch.nn.Identity()
    xs = [torch.randn(1, 32, 15, 17) for _ in range(4)]
    with torch.inference_mode():
        first = m(xs[0])
        kept = first.clone()
        expected = [m(x).clone() for x in xs]
    assert torch.equal(first, kept)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return m(x)

    with ThreadPoolExecutor(2) as pool:
        got = list(pool.map(run, xs * 3))
    for y, e in zip(got, expected * 3):
        torch.testing.assert_close(y, e, atol=0, rtol=0)


def test_scratch_budget_and_release(monkeypatch):
    """Beyond SCRATCH_BYTES the path takes fresh memory (same results); release_scratch frees what it kept."""
    m = make(dim=32, n_win=7, num_heads=4).eval()
    x = torch.randn(2, 32, 15, 17)
    with torch.no_grad():
        ref = reference_bra(m, x)
        bra_infer.release_scratch()
        monkeypatch.setattr(bra_infer, "SCRATCH_BYTES", 0)
        assert_matches(m(x), ref, "no scratch")
        assert not bra_infer._LOCAL.__dict__.get("store")
        monkeypatch.setattr(bra_infer, "SCRATCH_BYTES", 64 << 20)
        assert_matches(m(x), ref, "with scratch")
        assert bra_infer._LOCAL.store
    bra_infer.release_scratch()
    assert "store" not in bra_infer._LOCAL.__dict__


# ---- bra_fused: nearest Upsample → Concat → BRA as one layer, q/k/v of the upsampled input at low resolution ----

def spy_fused(monkeypatch) -> list[int]:
    """Count the fused projections (the fused path taken, not the plain upsample → concat → BRA)."""
    calls, real = [], bra_fused.project_upsampled
    monkeypatch.setattr(bra_fused, "project_upsampled", lambda *a: calls.append(1) or real(*a))
    return calls


@pytest.mark.parametrize("up_index, scale, low_hw, c_low, bias, wo", [
    (0, 2, (7, 7), 20, True, "linear"),  # 14×14, divisible by n_win
    (0, 2, (5, 9), 24, True, "folded"),  # 10×18: padded regions, a partial last column
    (1, 3, (3, 4), 8, False, "folded"),  # the upsampled input second, ×3, no qkv bias
])
def test_upsample_concat_bra_matches_reference(up_index, scale, low_hw, c_low, bias, wo, monkeypatch):
    bra = make(dim=32, n_win=4, num_heads=4, topk=3, soft_routing=not bias).eval()
    if not bias:
        bra.qkv.qkv.bias = None
    if wo == "folded":
        bra.wo = torch.nn.Identity()
    up = torch.nn.Upsample(None, scale, "nearest")
    layer = bra_fused.UpsampleConcatBRA(bra, up, up_index)
    torch.manual_seed(2)
    low = torch.randn(2, c_low, *low_hw)
    full = torch.randn(2, 32 - c_low, low_hw[0] * scale, low_hw[1] * scale)
    cat = torch.cat([up(low), full] if up_index == 0 else [full, up(low)], 1)
    with torch.no_grad():
        ref = reference_bra(bra, cat)
    calls = spy_fused(monkeypatch)
    with torch.inference_mode():
        a = layer([low, full] if up_index == 0 else [full, low])
    with torch.no_grad():
        b = layer(bra_fused.LayerInputs([low, full] if up_index == 0 else [full, low]))
    assert len(calls) == 2, "the fused path did not run"
    assert_matches(a, ref, "fused (inference_mode)")
    assert_matches(b, ref, "fused (no_grad)")


def test_upsample_concat_bra_falls_back(monkeypatch):
    """Autograd, hooks on the inner BRA and FLOP counting get the plain computation, and gradients flow."""
    bra = make(dim=16, n_win=2, num_heads=2, topk=2).eval()
    layer = bra_fused.UpsampleConcatBRA(bra, torch.nn.Upsample(scale_factor=2), 0)
    low, full = torch.randn(1, 8, 3, 3, requires_grad=True), torch.randn(1, 8, 6, 6)
    calls = spy_fused(monkeypatch)
    out = layer([low, full])
    out.sum().backward()
    assert low.grad is not None and low.grad.abs().sum() > 0
    seen = []
    h = bra.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape))
    with torch.no_grad():
        layer([low, full])
    h.remove()
    assert seen == [(1, 16, 6, 6)]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        layer([low, full])
    assert counter.get_total_flops() > 0 and calls == []
    assert_matches(out.detach(), reference_bra(bra, torch.cat([layer.up(low), full], 1)).detach(), "autograd")


@pytest.fixture(scope="module")
def biformer() -> DetectionModel:
    torch.manual_seed(0)
    m = DetectionModel("yolov8n_BiFormer.yaml", verbose=False).eval()
    with torch.no_grad():  # BatchNorm statistics that make the fusion do something
        for bn in (b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)):
            bn.running_mean.uniform_(-0.2, 0.2), bn.running_var.uniform_(0.5, 1.5)
    return m


def test_fused_model_matches_unfused(biformer, monkeypatch):
    """DetectionModel.fuse() rewrites the P3 Upsample → Concat → BRA run only, and the outputs stay within 1e-5 at
    640 (P3 80×80, not divisible by n_win 7), 480×640 and 448 (P3 56×56, divisible)."""
    plain = copy.deepcopy(biformer)
    with monkeypatch.context() as mp:
        mp.setattr(tasks, "fuse_upsample_concat_bra", lambda layers: 0)
        plain.fuse(verbose=False)
    fused = copy.deepcopy(biformer).fuse(verbose=False)
    assert [type(layer).__name__ for layer in fused.model[13:16]] == ["PassThrough", "PassThrough", "UpsampleConcatBRA"]
    assert [type(fused.model[i]).__name__ for i in (19, 23)] == ["BiLevelRoutingAttention"] * 2
    calls, p3 = spy_fused(monkeypatch), []
    for model in (fused, plain):  # the P3 attention output itself (the head's box outputs are ~100× larger)
        model.model[15].register_forward_hook(lambda mod, args, out: p3.append(out))
    for shape in ((640, 640), (480, 640), (448, 448)):
        x = torch.rand(1, 3, *shape)
        with torch.inference_mode():
            a, b = fused(x)[0], plain(x)[0]
        assert_matches(a, b, f"fused model at {shape}", tol=1e-5)
        assert_matches(p3[-2], p3[-1], f"P3 BRA output at {shape}", tol=1e-5)
    assert len(calls) == 3


def test_rewrite_needs_private_intermediates(biformer):
    """An upsampled image that another layer also reads is left alone (and so are the runs without upsampling)."""
    layers = copy.deepcopy(biformer.model)
    layers[18].f = [-1, 13]  # a second reader of layer 13 (shapes do not matter: nothing runs)
    assert bra_fused.fuse_upsample_concat_bra(layers) == 0
    assert bra_fused.fuse_upsample_concat_bra(copy.deepcopy(biformer.model)) == 1


def test_fused_model_visualize_draws_routing(biformer, tmp_path):
    fused = copy.deepcopy(biformer).fuse(verbose=False)
    with torch.no_grad():
        fused.predict(torch.rand(1, 3, 224, 224), visualize=tmp_path)
    routing = sorted(p.name for p in tmp_path.glob("*_routing.png"))
    assert routing == ["stage15_BiLevelRoutingAttention_routing.png", "stage19_BiLevelRoutingAttention_routing.png",
                       "stage23_BiLevelRoutingAttention_routing.png"]  # visualize runs the layers as built

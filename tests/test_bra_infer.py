"""BRA's CPU inference path (`bra_infer.bra_cpu_infer`): exact against the article-style reference in both of its
call schedules, with and without the output projection; only real queries attended; scratch buffers never leak
into outputs (later calls, other threads, inference_mode then no_grad); autograd still takes the training path."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ultralytics.nn.modules.bra_infer as bra_infer  # noqa: E402
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

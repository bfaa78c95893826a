"""Bi-Level Routing Attention leaves PyTorch: ONNX export (opset 17, checked with onnxruntime) and
torch.jit.trace. Under tracing/export the module runs its plain-ops path (topk → TopK, the routed
key/value gather → Gather, F.scaled_dot_product_attention → MatMul/Softmax)."""

from __future__ import annotations

import io
import warnings

import pytest
import torch

from ultralytics.nn.modules.block import BiLevelRoutingAttention


def _module(**kwargs) -> BiLevelRoutingAttention:
    torch.manual_seed(0)
    m = BiLevelRoutingAttention(32, n_win=7, num_heads=4, **kwargs).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.25)
    return m


@pytest.mark.parametrize(("kwargs", "size"), [
    (dict(), (15, 17)),  # not divisible by n_win: padding and crop are exported too
    # (the legacy exporter needs adaptive pooling to divide the region size: 26×27 → 28×28, 4×4 regions → 2×2)
    (dict(soft_routing=True, kv_downsample_mode="ada_avgpool", kv_per_win=2), (26, 27)),
], ids=["default", "soft-pooled"])
def test_onnx_export_matches_onnxruntime(kwargs, size):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    m = _module(**kwargs)
    x = torch.randn(2, 32, *size)
    with torch.no_grad():
        expected = m(x).numpy()
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape-dependent Python branches
        # The TorchScript-based exporter writes opset 17 directly; the dynamo exporter (torch 2.14's
        # default) builds opset 18 and cannot down-convert its Pad nodes to 17.
        torch.onnx.export(m, (x,), f, opset_version=17, dynamo=False, input_names=["x"], output_names=["y"])
    model = onnx.load_from_string(f.getvalue())
    onnx.checker.check_model(model)
    assert model.opset_import[0].version == 17
    ops = {node.op_type for node in model.graph.node}
    assert {"TopK", "Gather"} <= ops
    session = ort.InferenceSession(f.getvalue(), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x.numpy()})[0]
    assert got.shape == expected.shape
    assert abs(got - expected).max() < 1e-4


def test_jit_trace_matches_eager():
    m = _module()
    x = torch.randn(2, 32, 15, 17)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(m, x)
    with torch.no_grad():
        for inp in (x, torch.randn(2, 32, 15, 17)):  # the trace replays on new data of the traced size
            torch.testing.assert_close(traced(inp), m(inp), atol=1e-5, rtol=1e-5)

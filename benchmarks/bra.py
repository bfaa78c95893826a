"""Benchmark Bi-Level Routing Attention: the fast path (`BiLevelRoutingAttention`) vs the article-style
`reference_bra` of tests/bra_reference.py, side by side in one process, same weights and inputs.

For the three neck positions of yolov8_BiFormer-n at 640 it prints forward+backward time, forward-only
time (no_grad) and peak memory of both, and the ratios.

    python benchmarks/bra.py                      # CPU, batch 8, 5 timed repeats
    python benchmarks/bra.py --device 0           # CUDA, adds fp16-autocast rows
    python benchmarks/bra.py --batch 2 --repeats 3

Times are the median (and min) of `--repeats` runs after one warm-up; the reference and the fast path
take turns within each repeat. Peak memory is the largest number
of bytes held by tensors allocated during the call, above what was allocated before it (inputs and
weights excluded, gradients included): on CPU from the allocation events of `torch.profiler`
(profile_memory=True), replayed in order; on CUDA from `torch.cuda.max_memory_allocated`.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import ultralytics.nn.modules.bra_ops as bra_ops  # noqa: E402
from ultralytics.nn.modules.block import BiLevelRoutingAttention  # noqa: E402
from _machine import cpu_name  # noqa: E402  (benchmarks/ is the script's folder)

POSITIONS = {"P3": (192, 80, 80), "P4": (192, 40, 40), "P5": (384, 20, 20)}  # (C, H, W) at 640, yolov8_BiFormer-n


def load_reference() -> Callable:
    """`reference_bra` from tests/bra_reference.py, imported by path."""
    spec = importlib.util.spec_from_file_location("bra_reference", ROOT / "tests" / "bra_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.reference_bra


def machine(device: torch.device) -> str:
    """One line describing the CPU, the thread count, torch and the device."""
    cpu = cpu_name()
    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    return (f"CPU: {cpu}, {os.cpu_count()} logical cores, torch threads {torch.get_num_threads()} | "
            f"torch {torch.__version__} | device: {dev}")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], None], device: torch.device, repeats: int, warmup: bool = True) -> tuple[float, float]:
    """(median, min) wall time in ms of fn over `repeats` runs (after one warm-up run if `warmup`)."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t) * 1e3)
    return (statistics.median(times), min(times)) if times else (float("nan"), float("nan"))


def cpu_peak_bytes(fn: Callable[[], None]) -> int:
    """Peak of tensor bytes allocated during fn (above the start), from the profiler's allocation events."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        events = json.loads(Path(path).read_text())["traceEvents"]
    finally:
        os.remove(path)
    allocs = sorted((e["args"]["Ev Idx"], e["args"]["Bytes"]) for e in events
                    if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type", 0) == 0)
    current = peak = 0
    for _, nbytes in allocs:
        current += nbytes
        peak = max(peak, current)
    return peak


def peak_bytes(fn: Callable[[], None], device: torch.device) -> int:
    """Peak bytes allocated by fn above what was allocated before it."""
    if device.type != "cuda":
        return cpu_peak_bytes(fn)
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    fn()
    sync(device)
    return torch.cuda.max_memory_allocated(device) - start


def measure(impls: dict[str, Callable], m: torch.nn.Module, x: torch.Tensor, grad: torch.Tensor,
            device: torch.device, repeats: int, autocast: torch.dtype | None) -> dict[str, dict[str, float]]:
    """Times and peak memory of every f(m, x) in `impls`: forward+backward and forward-only.

    The implementations take turns within each repeat (order alternating), so that drifting load on a
    shared machine hits them alike.
    """
    amp = (lambda: torch.autocast(device.type, dtype=autocast)) if autocast else contextlib.nullcontext

    def reset() -> None:
        x.grad = None
        m.zero_grad(set_to_none=True)

    def fwd_bwd(f: Callable) -> Callable[[], None]:
        def run() -> None:
            reset()
            with amp():
                y = f(m, x)
            y.backward(grad.to(y.dtype))
        return run

    def fwd(f: Callable) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad(), amp():
                f(m, x)
        return run

    res: dict[str, dict[str, float]] = {name: {} for name in impls}
    for kind, wrap in (("fb", fwd_bwd), ("f", fwd)):
        times: dict[str, list[float]] = {name: [] for name in impls}
        order = list(impls)
        for name in order:  # warm-up
            timed(wrap(impls[name]), device, 0)
        for i in range(repeats):
            for name in order if i % 2 == 0 else order[::-1]:
                times[name].append(timed(wrap(impls[name]), device, 1, warmup=False)[1])
        for name in impls:
            res[name][f"{kind}_med"], res[name][f"{kind}_min"] = statistics.median(times[name]), min(times[name])
    for name, f in impls.items():
        reset()
        res[name]["fb_mem"] = peak_bytes(fwd_bwd(f), device) / 2**20
        reset()
        res[name]["f_mem"] = peak_bytes(fwd(f), device) / 2**20
    reset()
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (after one warm-up)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--positions", default="P3,P4,P5", help="comma-separated subset of P3,P4,P5")
    parser.add_argument("--flex", choices=("auto", "on", "off"), default="auto",
                        help="flex_attention for the plain-ops path: auto = on CUDA (then also an 'sdpa' row), on, off")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}".replace("cuda:cuda", "cuda"))
    reference_bra = load_reference()
    print(machine(device))
    print(f"BRA defaults (n_win 7, 8 heads, topk 4, LePE 3×3); batch {args.batch}; fp32 unless stated; "
          f"times median (min) of {args.repeats} runs; peak = tensor memory allocated during the call")
    header = (f"{'position (N,C,H,W)':<20} {'dtype':<6} {'impl':<5} {'fwd+bwd ms':>20} {'fwd ms':>18} "
              f"{'peak fwd+bwd MiB':>17} {'peak fwd MiB':>13}")
    print(header)
    print("-" * len(header))
    modes = [None] + ([torch.float16, torch.bfloat16] if device.type == "cuda" else [])
    bra_ops.USE_FLEX = {"auto": "auto", "on": True, "off": False}[args.flex]

    def gather_sdpa(mod: torch.nn.Module, inp: torch.Tensor) -> torch.Tensor:
        """The plain-ops path with the gathered keys/values and SDPA (no flex_attention)."""
        flex, bra_ops.USE_FLEX = bra_ops.USE_FLEX, False
        try:
            return mod(inp)
        finally:
            bra_ops.USE_FLEX = flex

    for c, hh, ww in (POSITIONS[p.strip()] for p in args.positions.split(",")):
        for autocast in modes:
            torch.manual_seed(0)
            m = BiLevelRoutingAttention(c).to(device)
            x = torch.randn(args.batch, c, hh, ww, device=device, requires_grad=True)
            grad = torch.randn(args.batch, c, hh, ww, device=device)
            impls = {"ref": reference_bra, "fast": lambda mod, inp: mod(inp)}
            if device.type == "cuda" and bra_ops.USE_FLEX is not False:  # 'fast' is flex_attention there
                impls["sdpa"] = gather_sdpa
            rows = measure(impls, m, x, grad, device, args.repeats, autocast)
            pos = f"({args.batch},{c},{hh},{ww})"
            dt = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(autocast, "fp32")
            for name, r in rows.items():
                print(f"{pos:<20} {dt:<6} {name:<5} {r['fb_med']:>11.1f} ({r['fb_min']:>6.1f}) "
                      f"{r['f_med']:>9.1f} ({r['f_min']:>6.1f}) {r['fb_mem']:>17.0f} {r['f_mem']:>13.0f}")
            ref, fast = rows["ref"], rows["fast"]
            print(f"{pos:<20} {dt:<6} {'ratio':<5} {'ref/fast ' + format(ref['fb_med'] / fast['fb_med'], '.2f') + '×':>20} "
                  f"{'ref/fast ' + format(ref['f_med'] / fast['f_med'], '.2f') + '×':>18} "
                  f"{'fast/ref ' + format(fast['fb_mem'] / ref['fb_mem'], '.3f'):>17} "
                  f"{'fast/ref ' + format(fast['f_mem'] / ref['f_mem'], '.3f'):>13}")
            del m, x, grad
            if device.type == "cuda":
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()

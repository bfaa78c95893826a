"""Benchmark whole models: yolov8n vs yolov8_BiFormer-n (fast BRA) vs yolov8_BiFormer-n with the article-style
`reference_bra` swapped into its three BRA modules, on the same inputs.

    python benchmarks/model.py                         # CPU: inference 640 at batch 1 and 8; train step batch 2 at 320
    python benchmarks/model.py --device 0 --amp bf16    # CUDA: train step batch 16 at 640 by default
    python benchmarks/model.py --imgsz 640 --batch 8 --repeats 3   # the train step's size
    python benchmarks/model.py --infer-batches 1 --no-train --repeats 15 --threads 1 \
        --models yolov8n,biformer,biformer-noinfer,yolov8n-cl,biformer-cl   # issue 17's latency ratio

Models: yolov8n; biformer (ours: BRA's CPU inference path under inference_mode); biformer-noinfer (inference
through the training path, `bra_infer.INFER_KERNELS = False`); biformer-nofold (`wo` kept); biformer-ref
(`reference_bra`); biformer-noup (no Upsample → Concat → BRA fusion); yolov8n-cl / biformer-cl (fed a channels_last input, for a like-for-like layout comparison).

Inference: eval mode, Conv+BN fused (`--no-fuse` to keep BN) and, in our BiFormer model, each BRA's output Linear
folded into the next layer's 1×1 conv (`fold_bra_output_projections`; `--no-fold` keeps it), the P3 Upsample → Concat → BRA run fused into one layer
(`fuse_upsample_concat_bra`; `--no-upfuse` or model biformer-noup keeps the three layers), torch.inference_mode, median (min) of
`--repeats` runs after one warm-up, the models taking turns within each repeat. Training step: train mode, forward + backward of a proxy loss (sum of
squares of the three raw head maps; the detection loss costs the same for every model), gradients zeroed
between steps.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import types
from unittest import mock
from pathlib import Path
from typing import Callable

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bra import load_reference, machine, timed  # noqa: E402

from ultralytics.nn.modules import bra_infer  # noqa: E402
from ultralytics.nn.modules.block import BiLevelRoutingAttention, fold_bra_output_projections  # noqa: E402
from ultralytics.nn.modules.bra_fused import fuse_upsample_concat_bra  # noqa: E402
from ultralytics.nn import tasks  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402


class TrainingPathInference(torch.nn.Module):
    """Runs the wrapped model with BRA's inference path off (`bra_infer.INFER_KERNELS = False`)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        bra_infer.INFER_KERNELS = False
        try:
            return self.model(x)
        finally:
            bra_infer.INFER_KERNELS = True


class ChannelsLastInput(torch.nn.Module):
    """Feeds the wrapped model a channels_last copy of its input (so its convolutions run NHWC)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor):
        return self.model(x.contiguous(memory_format=torch.channels_last))


def build(name: str, device: torch.device) -> torch.nn.Module:
    """'yolov8n', 'biformer' / 'biformer-nofold' / 'biformer-noinfer' (ours) or 'biformer-ref' (reference_bra)."""
    torch.manual_seed(0)
    with contextlib.redirect_stdout(None):
        model = DetectionModel("yolov8n.yaml" if name.startswith("yolov8n") else "yolov8n_BiFormer.yaml", verbose=False)
    if name == "biformer-ref":
        reference_bra = load_reference()
        for m in model.modules():
            if isinstance(m, BiLevelRoutingAttention):
                m.forward = types.MethodType(lambda self, x: reference_bra(self, x), m)
    wrapper = {"biformer-noinfer": TrainingPathInference, "yolov8n-cl": ChannelsLastInput,
               "biformer-cl": ChannelsLastInput}
    return (wrapper[name](model) if name in wrapper else model).to(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, or a CUDA index such as 0")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--infer-batches", default="1,8", help="comma-separated inference batch sizes (at 640)")
    parser.add_argument("--imgsz", type=int, default=0, help="train-step image size (default 640 CUDA, 320 CPU)")
    parser.add_argument("--batch", type=int, default=0, help="train-step batch (default 16 CUDA, 2 CPU)")
    parser.add_argument("--no-fuse", action="store_true", help="keep BatchNorm layers at inference")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    parser.add_argument("--no-fold", action="store_true", help="keep BRA's wo Linear at inference")
    parser.add_argument("--no-upfuse", action="store_true",
                        help="keep Upsample → Concat → BRA as three layers at inference (bra_fused.py)")
    parser.add_argument("--no-train", action="store_true", help="skip the train-step measurement")
    parser.add_argument("--compile", action="store_true", help="torch.compile every model for inference (optional)")
    parser.add_argument("--amp", choices=("fp32", "fp16", "bf16"), default="fp32", help="autocast dtype (CUDA)")
    parser.add_argument("--models", default="yolov8n,biformer,biformer-ref",
                        help="comma-separated: yolov8n, biformer, biformer-ref, biformer-nofold, biformer-noinfer, biformer-noup, "
                        "yolov8n-cl, biformer-cl (channels_last input)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}".replace("cuda:cuda", "cuda"))
    cuda = device.type == "cuda"
    imgsz, batch = args.imgsz or (640 if cuda else 320), args.batch or (16 if cuda else 2)
    names = tuple(args.models.split(","))
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.amp)
    amp = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    labels = {"yolov8n": "yolov8n", "biformer": "yolov8_BiFormer-n (fast BRA)", "biformer-ref": "yolov8_BiFormer-n (reference_bra)",
              "biformer-nofold": "yolov8_BiFormer-n (fast, wo kept)",
              "biformer-noup": "yolov8_BiFormer-n (fast, no up-fuse)",
              "biformer-noinfer": "yolov8_BiFormer-n (training path)", "yolov8n-cl": "yolov8n (channels_last input)",
              "biformer-cl": "yolov8_BiFormer-n (channels_last input)"}
    print(machine(device))
    print(f"times: median (min) of {args.repeats} runs, ms; inference {'un' if args.no_fuse else ''}fused"
          f"{'' if args.no_fold or args.no_fuse else ' (BRA wo folded)'}{', compiled' if args.compile else ''}, {args.amp}")

    def compare(what: str, models: dict[str, torch.nn.Module], fn: Callable[[torch.nn.Module], None]) -> None:
        """Time fn(model) for every model, the models taking turns (alternating order) in each repeat."""
        for model in models.values():  # warm-up
            fn(model)
        times: dict[str, list[float]] = {name: [] for name in models}
        order = list(models)
        for i in range(args.repeats):
            for name in order if i % 2 == 0 else order[::-1]:
                times[name].append(timed(lambda: fn(models[name]), device, 1, warmup=False)[1])
        rows.extend((what, name, statistics.median(t), min(t)) for name, t in times.items())

    rows: list[tuple[str, str, float, float]] = []
    for b in (int(v) for v in args.infer_batches.split(",")):
        x = torch.randn(b, 3, 640, 640, device=device)
        models = {name: build(name, device).eval() for name in names}
        if not args.no_fuse:
            for name, model in models.items():
                inner = model.model if isinstance(model, (TrainingPathInference, ChannelsLastInput)) else model
                keep_wo = args.no_fold or name == "biformer-nofold"  # DetectionModel.fuse() folds wo by default
                with contextlib.redirect_stdout(None), mock.patch.object(tasks, "fold_bra_output_projections",
                                                                         lambda layers: 0), \
                        mock.patch.object(tasks, "fuse_upsample_concat_bra", lambda layers: 0):
                    inner.fuse(verbose=False)
                if not keep_wo:
                    fold_bra_output_projections(inner.model)
                if not args.no_upfuse and name != "biformer-noup":  # as DetectionModel.fuse(), after the wo fold
                    fuse_upsample_concat_bra(inner.model)
        if args.compile:
            models = {name: torch.compile(model) for name, model in models.items()}

        def infer(model: torch.nn.Module, x: torch.Tensor = x) -> None:
            with torch.inference_mode(), amp():
                model(x)

        compare(f"inference 640 batch {b}", models, infer)
        del models
    x = torch.randn(batch, 3, imgsz, imgsz, device=device)

    def step(model: torch.nn.Module) -> None:
        model.zero_grad(set_to_none=True)
        with amp():
            loss = sum(o.float().square().mean() for o in model(x))
        loss.backward()

    if not args.no_train:
        compare(f"train step {imgsz} batch {batch}", {name: build(name, device).train() for name in names}, step)

    print(f"{'measurement':<24} {'model':<34} {'ms':>20} {'vs yolov8n':>11} {'ref/fast':>9}")
    print("-" * 102)
    by_key = {(r[0], r[1]): r for r in rows}
    for what, name, med, mn in rows:
        base = by_key.get((what, "yolov8n"), (0, 0, float("nan")))[2]
        fast = by_key.get((what, "biformer"), (0, 0, float("nan")))[2]
        ratio = f"{med / fast:.2f}×" if name == "biformer-ref" else ""
        print(f"{what:<24} {labels[name]:<34} {med:>11.1f} ({mn:>6.1f}) {med / base:>10.2f}× {ratio:>9}")
    if ("inference 640 batch 1", "biformer") in by_key and ("inference 640 batch 1", "yolov8n") in by_key:
        r = by_key[("inference 640 batch 1", "biformer")][2] / by_key[("inference 640 batch 1", "yolov8n")][2]
        print(f"fused latency ratio at 640, batch 1: yolov8_BiFormer-n / yolov8n = {r:.2f}× (goal ≤ 1.8×)")


if __name__ == "__main__":
    main()

"""DetectionValidator: letterboxed rect batches → model → NMS → matching in the input space → DetMetrics.

One contract, used the same way by the trainer and standalone:

    validator.run(model, dataloader, device, names, compute_loss=False) -> DetMetrics

`validator(model=...)` (as `YOLO.val` calls it) first builds what `run` needs from the validated config: the
device, the dataset and its rect dataloader, the run folder. The steps are separate methods (preprocess,
postprocess, update_metrics, finalize, print_results). With `plots=True` and a run folder, a standalone
validation also fills a confusion matrix and draws val_batch{0,1,2}_labels/_pred.jpg, the PR/F1/P/R curves and the
confusion matrices (in the plot thread it was given, or its own). `save_json=True` writes predictions.json (COCO
format) and scores it with pycocotools / faster-coco-eval (see save_coco_json).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ultralytics.cfg import DEFAULT_CFG_PATH, IterableSimpleNamespace, get_cfg, mode_default
from ultralytics.checkpoints import load_checkpoint, model_from_checkpoint
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
from ultralytics.engine.callbacks import CallbackHost, get_default_callbacks
from ultralytics.engine.run_files import LOSS_NAMES, get_save_dir
from ultralytics.errors import ConfigError, DatasetError
from ultralytics.evaluation import coco as coco_eval
from ultralytics.evaluation import plots as metric_plots
from ultralytics.nn.autobackend import AutoBackend
from ultralytics.evaluation.metrics import (ConfusionMatrix, DetMetrics, box_iou, labels_in_input_space,
                                            match_predictions)
from ultralytics.utils import DEFAULT_CFG, LOGGER
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.ops import non_max_suppression, scale_boxes, xyxy2xywh
from ultralytics.utils.plotting import PlotWorker, plot_images
from ultralytics.utils.torch_utils import select_device

PLOTTED_BATCHES = 3  # val_batch0..2 images
TABLE_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"


def training_progress(loader: Any, device: torch.device, show: bool = True) -> Any:
    """enumerate(loader); with `show`, after the header of the training table and under a tqdm bar."""
    if not show:
        return enumerate(loader)
    mem = "GPU_mem" if device.type == "cuda" else "CPU_mem"
    LOGGER.info(("\n" + "%11s" * 7) % ("Epoch", mem, "box_loss", "cls_loss", "dfl_loss", "Instances", "Size"))
    return tqdm(enumerate(loader), total=len(loader), bar_format=BAR_FORMAT)


class DetectionValidator(CallbackHost):
    """Computes P, R, mAP50, mAP50-95 and fitness of a detection model on a dataset split.

    `args` is the run's validated config (a yaml/dict is merged into one with mode=val); `dataloader` and
    `save_dir` are optional (built from `args` by a standalone call); `plotter` is the plot thread to draw in
    (the trainer passes its own; a standalone validator starts one). `_callbacks` ({event: [fn]}, used as given:
    the trainer lends its own) are called with this validator at on_val_start, on_val_batch_start,
    on_val_batch_end and on_val_end.
    """

    def __init__(self, args: Any = None, dataloader: Any = None, save_dir: str | Path | None = None,
                 plotter: PlotWorker | None = None, _callbacks: dict | None = None):
        if not isinstance(args, IterableSimpleNamespace):
            args = get_cfg(DEFAULT_CFG_PATH if args is None or args is DEFAULT_CFG else args, {"mode": "val"})
        self.callbacks = _callbacks if _callbacks is not None else get_default_callbacks()
        self.args = args
        self.dataloader = dataloader
        self.save_dir = Path(save_dir) if save_dir else None
        self.plotter = plotter or PlotWorker()
        self.iouv = torch.linspace(0.5, 0.95, 10)
        self.metrics = DetMetrics()
        self.names: dict[int, str] = {}
        self.device = torch.device("cpu")
        conf = args.conf if args.conf is not None else mode_default("val", "conf")
        self.conf = float(conf)
        self.stats: dict[str, list] = {}
        self.seen = 0
        self.nt_per_class = np.zeros(0, dtype=int)
        self.nt_per_image = np.zeros(0, dtype=int)
        self.loss: torch.Tensor | None = None
        self.speed: dict[str, float] = {}
        self.plots = False  # set per run: standalone validations with args.plots and a run folder draw
        self.confusion_matrix: ConfusionMatrix | None = None
        self.jdict: list[dict] = []  # COCO-format predictions when save_json
        self.coco_class_map: tuple[int, ...] | None = None
        self.data: dict = {}  # the dataset dict of a standalone validation

    # ------------------------------------------------------------------------------------------------ entry points
    def __call__(self, model: nn.Module | str | Path | None = None) -> DetMetrics:
        """Standalone validation of `model` (a DetectionModel or a *.pt path) on `args.data` / `args.split`."""
        if isinstance(model, (str, Path)):
            exported = Path(model).suffix.lower() in (".onnx", ".torchscript")
            model = AutoBackend(model) if exported else model_from_checkpoint(load_checkpoint(model))
        model, loader, device, names = self._setup_standalone(model)
        return self.run(model, loader, device, names, plots=bool(self.args.plots), data=self.data)

    def run(self, model: nn.Module, dataloader: Any, device: torch.device, names: dict[int, str], *,
            compute_loss: bool = False, plots: bool = False, data: dict | None = None) -> DetMetrics:
        """Validate `model` on `dataloader`; the DetMetrics carry `speed` and, with `compute_loss`, the mean
        validation losses in `losses` (the model must have `.loss(batch, preds)`). `data` (the dataset dict) lets
        save_json find the dataset's own COCO annotations."""
        self.dataloader, self.device = dataloader, device
        self.data = data if data is not None else self.data
        model.eval()
        self.plots = plots and self.save_dir is not None
        self.init_metrics(names)
        self.run_callbacks("on_val_start")
        self.plotter.wait()  # earlier plots finish before this loader forks its workers
        dt = [0.0, 0.0, 0.0, 0.0]
        desc = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")
        bar = tqdm(dataloader, desc=desc, total=len(dataloader), bar_format=BAR_FORMAT,
                   disable=not self.args.verbose and not compute_loss)
        with torch.no_grad():
            for batch_i, batch in enumerate(bar):
                self.run_callbacks("on_val_batch_start")
                t0 = time.perf_counter()
                batch = self.preprocess(batch)
                t1 = time.perf_counter()
                preds = model(batch["img"])
                t2 = time.perf_counter()
                if compute_loss:
                    items = model.loss(batch, preds)[1]
                    self.loss = items if self.loss is None else self.loss + items
                t3 = time.perf_counter()
                dets = self.postprocess(preds)
                self.update_metrics(dets, batch)
                dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2, dt[3] + time.perf_counter() - t3]
                if self.plots and batch_i < PLOTTED_BATCHES:
                    self.plot_val_samples(batch, dets, batch_i)
                self.run_callbacks("on_val_batch_end")
        self.finalize()
        n = max(self.seen, 1)
        self.speed = dict(zip(("preprocess", "inference", "loss", "postprocess"), (1e3 * t / n for t in dt)))
        self.metrics.speed = self.speed
        if compute_loss:
            losses = (self.loss.cpu() / max(len(dataloader), 1)) if self.loss is not None else torch.zeros(3)
            self.metrics.losses = {f"val/{k}": float(v) for k, v in zip(LOSS_NAMES, losses)}
        self.print_results(per_class=not compute_loss and self.args.verbose)
        if not compute_loss:
            LOGGER.info("Speed: %.1fms preprocess, %.1fms inference, %.1fms loss, %.1fms postprocess per image" %
                        tuple(self.speed.values()))
        if self.plots:
            self.plot_metrics()
        if self.args.save_json and self.save_dir is not None:
            self.save_coco_json()
        self.plotter.wait()
        if self.save_dir is not None and (self.plots or self.args.save_json):
            LOGGER.info(f"Results saved to {self.save_dir}")
        self.run_callbacks("on_val_end")
        return self.metrics

    def _setup_standalone(self, model: nn.Module | None) -> tuple[nn.Module, Any, torch.device, dict[int, str]]:
        """Device, dataset, rect dataloader and run folder for a validation outside training."""
        if model is None:
            raise ConfigError("validation needs a model: pass model=..., e.g. model=runs/detect/train/weights/best.pt")
        if self.args.data in (None, ""):
            raise ConfigError("validation needs a dataset: pass data=..., e.g. data=coco128.yaml")
        batch = self.args.batch if self.args.batch > 0 else 16
        device = select_device(self.args.device, batch)
        data = check_det_dataset(self.args.data)
        split = self.args.split
        if not data.get(split):
            raise DatasetError(f"dataset {self.args.data} has no '{split}' split; use split=val (or add '{split}:')")
        exported = isinstance(model, AutoBackend) and model.backend != "pt"  # an ONNX / TorchScript file
        if isinstance(model, AutoBackend):
            nc_model = len(model.names) if model.names else data["nc"]
        else:
            nc_model = int(model.model[-1].nc) if hasattr(model, "model") else data["nc"]
        names = {0: "item"} if self.args.single_cls else data["names"]
        if nc_model != len(names):
            raise DatasetError(f"the model predicts {nc_model} classes but dataset {self.args.data} has "
                               f"{len(names)}; validate on the dataset the model was trained on")
        model = model.to(device).float()
        stride = int(model.stride) if isinstance(model, AutoBackend) else (
            max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32)
        imgsz = check_imgsz(self.args.imgsz, stride, square=True)
        fixed = exported and not model.dynamic and model.imgsz  # a file traced at one input size
        if fixed:
            if model.imgsz[0] != model.imgsz[1]:
                raise ConfigError(f"{Path(model.path).name} was exported at {model.imgsz[0]}x{model.imgsz[1]}; "
                                  "validation needs a square export (imgsz=N) or dynamic=True")
            imgsz = int(model.imgsz[0])
        loader = self.dataloader
        if loader is None:
            dataset = build_yolo_dataset(self.args, data[split], batch, data, mode="val", rect=not fixed,
                                         stride=stride, imgsz=imgsz)
            loader = build_dataloader(dataset, batch, self.args.workers, shuffle=False, rank=-1)
        if self.save_dir is None and (self.args.plots or self.args.save_json):
            self.save_dir = get_save_dir(self.args.project, self.args.name or "val", self.args.exist_ok)
        self.data = data
        LOGGER.info(f"Validating on {data[split]} ({split} split, imgsz={imgsz}, conf={self.conf}, "
                    f"iou={self.args.iou})")
        return model, loader, device, names

    # ------------------------------------------------------------------------------------------------ steps
    def preprocess(self, batch: dict) -> dict:
        """Images to float [0, 1] on the device; labels moved along."""
        batch = dict(batch)
        batch["img"] = batch["img"].to(self.device, non_blocking=True).float() / 255
        for k in ("cls", "bboxes", "batch_idx"):
            batch[k] = batch[k].to(self.device)
        return batch

    def postprocess(self, preds: Any) -> list[torch.Tensor]:
        """NMS over the eval output (multi-label, conf 0.001 by default, iou, max_det)."""
        return non_max_suppression(preds, self.conf, self.args.iou, classes=self.args.classes,
                                   multi_label=True, agnostic=bool(self.args.single_cls or self.args.agnostic_nms),
                                   max_det=self.args.max_det)

    def init_metrics(self, names: dict[int, str]) -> None:
        self.names = dict(names)
        self.metrics = DetMetrics(names=self.names)
        self.stats = {"tp": [], "conf": [], "pred_cls": [], "target_cls": []}
        self.seen = 0
        self.nt_per_image = np.zeros(len(self.names), dtype=int)
        self.loss = None
        self.confusion_matrix = ConfusionMatrix(len(self.names)) if self.plots else None
        self.jdict = []
        # 80 COCO classes scored against the official annotations use the official 91 category ids
        coco80 = self.args.save_json and len(self.names) == 80 and self._coco_annotations()
        self.coco_class_map = coco_eval.COCO80_TO_91 if coco80 else None

    def update_metrics(self, dets: list[torch.Tensor], batch: dict) -> None:
        """Match each image's detections to its labels at 10 IoU thresholds, in the letterboxed input space (SPEC §6:
        labels = normalised xywh × input size, detections as NMS returns them, neither scaled back nor clipped).
        The confusion matrix and COCO records use the boxes mapped back to original-image pixels."""
        h, w = batch["img"].shape[2:]
        for si, pred in enumerate(dets):
            self.seen += 1
            idx = batch["batch_idx"] == si
            cls = batch["cls"][idx].view(-1)
            if len(cls):
                self.nt_per_image[np.unique(cls.long().cpu().numpy())] += 1
            if self.args.single_cls:
                pred = pred.clone()
                pred[:, 5] = 0
            labels = labels_in_input_space(batch["bboxes"][idx], (h, w))
            tp = self._match_in_input_space(pred, labels, cls)
            if self.confusion_matrix is not None or self.args.save_json:
                predn, tbox = self._to_original_pixels(pred, labels, (h, w), batch["ori_shape"][si],
                                                       batch["ratio_pad"][si])
                if self.confusion_matrix is not None:
                    self.confusion_matrix.process_batch(predn, tbox, cls)
                if self.args.save_json:
                    self.jdict += self.coco_records(predn, batch["im_file"][si])
            self.stats["tp"].append(tp.cpu())
            self.stats["conf"].append(pred[:, 4].cpu())
            self.stats["pred_cls"].append(pred[:, 5].cpu())
            self.stats["target_cls"].append(cls.cpu())

    def _match_in_input_space(self, pred: torch.Tensor, labels: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Correct-matrix (N, 10) of one image, labels as xyxy in the input space; detections are visited in NMS
        order (decreasing confidence)."""
        if not len(cls) or not len(pred):
            return torch.zeros(len(pred), len(self.iouv), dtype=torch.bool, device=pred.device)
        return match_predictions(pred[:, 5], cls, box_iou(labels, pred[:, :4]), self.iouv.to(pred.device))

    @staticmethod
    def _to_original_pixels(pred: torch.Tensor, labels: torch.Tensor, input_hw: tuple[int, int], ori_shape: Any,
                            ratio_pad: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Copies of the detections and of the input-space xyxy labels, scaled back to the original image and
        clipped to it."""
        predn = pred.clone()
        scale_boxes(input_hw, predn[:, :4], ori_shape, ratio_pad)
        tbox = scale_boxes(input_hw, labels.clone(), ori_shape, ratio_pad)
        return predn, tbox

    def finalize(self) -> None:
        """Stack the statistics of the split and compute the metrics."""
        stats = {k: torch.cat(v, 0).numpy() if v else np.zeros(0) for k, v in self.stats.items()}
        target_cls = stats["target_cls"].astype(int)
        self.nt_per_class = np.bincount(target_cls, minlength=len(self.names))
        tp = stats["tp"].reshape(-1, len(self.iouv))
        if len(target_cls):
            self.metrics.process(tp, stats["conf"], stats["pred_cls"], target_cls)

    def print_results(self, per_class: bool = False) -> None:
        """The 'all' row and, when per_class, one row per class with labels."""
        LOGGER.info(TABLE_FORMAT % ("all", self.seen, int(self.nt_per_class.sum()), *self.metrics.mean_results()))
        if self.nt_per_class.sum() == 0:
            LOGGER.warning("WARNING ⚠️ no labels found in the validation set, metrics are 0")
        if per_class and len(self.names) > 1:
            for i, c in enumerate(self.metrics.ap_class_index):
                LOGGER.info(TABLE_FORMAT % (self.names[int(c)], self.nt_per_image[c], self.nt_per_class[c],
                                            *self.metrics.class_result(i)))

    # ------------------------------------------------------------------------------------------------ COCO json
    def coco_records(self, predn: torch.Tensor, im_file: str) -> list[dict]:
        """COCO records of one image's detections (original pixels); image id = the file stem (int if numeric)."""
        image_id = coco_eval.image_id_from_path(im_file)
        return coco_eval.predictions_to_coco(predn[:, :4], predn[:, 4], predn[:, 5], image_id, self.coco_class_map)

    def _coco_annotations(self) -> Path | None:
        """The dataset's own COCO file, {path}/annotations/instances_{split folder}.json, when it exists."""
        split_path = self.data.get(self.args.split)
        if not self.data.get("path") or not isinstance(split_path, (str, Path)):
            return None
        anno = Path(self.data["path"]) / "annotations" / f"instances_{Path(split_path).stem}.json"
        return anno if anno.is_file() else None

    def save_coco_json(self) -> dict[str, Any] | None:
        """Write predictions.json and score it with pycocotools / faster-coco-eval against the dataset's COCO
        annotations, or against labels_coco.json built from the YOLO labels when the dataset has none."""
        pred_json = coco_eval.save_json(self.jdict, self.save_dir / "predictions.json")
        LOGGER.info(f"Saved {len(self.jdict)} COCO-format predictions to {pred_json}")
        anno = self._coco_annotations()
        try:
            if anno is None:
                labels = getattr(self.dataloader.dataset, "labels", [])
                images = [(coco_eval.image_id_from_path(lb["im_file"]), *lb["shape"], Path(lb["im_file"]).name)
                          for lb in labels]
                gt = coco_eval.labels_to_coco(images, [(lb["cls"], lb["bboxes"]) for lb in labels], self.names)
                anno = coco_eval.save_json(gt, self.save_dir / "labels_coco.json")
            LOGGER.info(f"Scoring {pred_json.name} against {anno} (COCO evaluation)...")
            self.metrics.coco = coco_eval.evaluate_coco(anno, pred_json)
        except (ImportError, ValueError) as e:
            LOGGER.warning(f"WARNING ⚠️ COCO scoring skipped: {e}")
            return None
        return self.metrics.coco

    # ------------------------------------------------------------------------------------------------ plots
    def plot_val_samples(self, batch: dict, dets: list[torch.Tensor], batch_i: int, max_images: int = 16,
                         max_boxes: int = 15) -> None:
        """Queue val_batch{i}_labels.jpg and val_batch{i}_pred.jpg (letterboxed images, up to 15 boxes an image)."""
        h, w = batch["img"].shape[2:]
        imgs = (batch["img"][:max_images] * 255).round().to(torch.uint8).cpu().numpy()
        files = list(batch["im_file"][:max_images])
        labels = {"img": imgs, "im_file": files, "cls": batch["cls"].cpu().numpy(),
                  "bboxes": batch["bboxes"].cpu().numpy(), "batch_idx": batch["batch_idx"].cpu().numpy()}
        kept = [d[:max_boxes] for d in dets[:max_images]]
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        preds = {"img": imgs, "im_file": files,
                 "cls": torch.cat([d[:, 5] for d in kept]).cpu().numpy() if kept else np.zeros(0),
                 "conf": torch.cat([d[:, 4] for d in kept]).cpu().numpy() if kept else np.zeros(0),
                 "bboxes": (torch.cat([xyxy2xywh(d[:, :4].float().cpu()) for d in kept]) / scale).numpy()
                 if kept else np.zeros((0, 4)),
                 "batch_idx": np.concatenate([np.full(len(d), i) for i, d in enumerate(kept)]) if kept else np.zeros(0)}
        self.plotter.submit(plot_images, labels, self.save_dir / f"val_batch{batch_i}_labels.jpg", names=dict(self.names))
        self.plotter.submit(plot_images, preds, self.save_dir / f"val_batch{batch_i}_pred.jpg", names=dict(self.names))

    def plot_metrics(self) -> None:
        """Queue BoxPR/F1/P/R_curve.png and confusion_matrix(_normalized).png."""
        box = self.metrics.box
        names = {i: self.names.get(int(c), str(int(c))) for i, c in enumerate(self.metrics.ap_class_index)}
        self.plotter.submit(metric_plots.plot_pr_curve, box.px, box.prec_values.copy(), box.all_ap.copy(),
                     self.save_dir / "BoxPR_curve.png", names)
        for fname, (px, curve, xlabel, ylabel) in zip(("BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png"),
                                                       box.curves_results[1:]):
            self.plotter.submit(metric_plots.plot_mc_curve, px, curve.copy(), self.save_dir / fname, names, xlabel, ylabel)
        if self.confusion_matrix is not None:
            for normalize in (False, True):
                fname = f"confusion_matrix{'_normalized' if normalize else ''}.png"
                self.plotter.submit(metric_plots.plot_confusion_matrix, self.confusion_matrix.matrix.copy(), dict(self.names),
                             self.save_dir / fname, normalize)

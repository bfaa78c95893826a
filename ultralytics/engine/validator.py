"""DetectionValidator: letterboxed rect batches → model → NMS → boxes in original pixels → matching → DetMetrics.

Used two ways:
  * during training, `validator(trainer)` runs the trainer's EMA model on the trainer's val loader and returns a
    dict of the results.csv metric columns, `fitness` and the val losses;
  * standalone (`YOLO.val`), `validator(model=model)` builds its own loader from `args.data` / `args.split`,
    prints the table (per class when verbose) and returns the DetMetrics.
The steps are separate methods (preprocess, postprocess, update_metrics, finalize, print_results). With
`plots=True` a standalone validation also fills a confusion matrix and draws val_batch{0,1,2}_labels/_pred.jpg, the
PR/F1/P/R curves and the confusion matrices into its folder; the drawing runs in the PLOTS thread. `save_json=True`
writes predictions.json (COCO format) and scores it with pycocotools / faster-coco-eval (see save_coco_json).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ultralytics.utils import LOGGER
from ultralytics.evaluation.coco import COCO80_TO_91
from ultralytics.evaluation.metrics import ConfusionMatrix, DetMetrics, box_iou, match_predictions
from ultralytics.utils.ops import non_max_suppression, scale_boxes, xywh2xyxy, xyxy2xywh
from ultralytics.utils.plotting import PLOTS

VAL_CONF = 0.001  # confidence threshold of validation when conf is not set
PLOTTED_BATCHES = 3  # val_batch0..2 images
TABLE_FORMAT = "%22s" + "%11i" * 2 + "%11.3g" * 4
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"


class DetectionValidator:
    """Computes P, R, mAP50, mAP50-95 and fitness of a detection model on a dataset split."""

    def __init__(self, args: Any, dataloader: Any = None, save_dir: str | Path | None = None):
        self.args = args
        self.dataloader = dataloader
        self.save_dir = Path(save_dir) if save_dir else None
        self.iouv = torch.linspace(0.5, 0.95, 10)
        self.metrics = DetMetrics()
        self.names: dict[int, str] = {}
        self.training = False
        self.device = torch.device("cpu")
        self.conf = VAL_CONF if getattr(args, "conf", None) is None else float(args.conf)
        self.stats: dict[str, list] = {}
        self.seen = 0
        self.nt_per_class = np.zeros(0, dtype=int)
        self.nt_per_image = np.zeros(0, dtype=int)
        self.loss: torch.Tensor | None = None
        self.speed: dict[str, float] = {}
        self.plots = False  # set per call: standalone validations with args.plots draw
        self.confusion_matrix: ConfusionMatrix | None = None
        self.jdict: list[dict] = []  # COCO-format predictions when save_json
        self.coco_class_map: tuple[int, ...] | None = None
        self.data: dict = {}  # the dataset dict of a standalone validation

    # ------------------------------------------------------------------------------------------------ entry point
    def __call__(self, trainer: Any = None, model: nn.Module | None = None) -> dict[str, float] | DetMetrics:
        self.training = trainer is not None
        if self.training:
            self.device = trainer.device
            model = trainer.ema.ema if trainer.ema is not None else trainer.model
            names = trainer.data["names"]
        else:
            model, names = self._setup_standalone(model)
        model.eval()
        self.plots = bool(getattr(self.args, "plots", False)) and not self.training and self.save_dir is not None
        self.init_metrics(names)
        PLOTS.wait()  # earlier plots finish before this loader forks its workers
        dt = [0.0, 0.0, 0.0, 0.0]
        desc = ("%22s" + "%11s" * 6) % ("Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)")
        bar = tqdm(self.dataloader, desc=desc, total=len(self.dataloader), bar_format=BAR_FORMAT,
                   disable=not getattr(self.args, "verbose", True) and not self.training)
        with torch.no_grad():
            for batch_i, batch in enumerate(bar):
                t0 = time.perf_counter()
                batch = self.preprocess(batch)
                t1 = time.perf_counter()
                preds = model(batch["img"])
                t2 = time.perf_counter()
                if self.training:
                    items = model.loss(batch, preds)[1]
                    self.loss = items if self.loss is None else self.loss + items
                t3 = time.perf_counter()
                dets = self.postprocess(preds)
                self.update_metrics(dets, batch)
                dt = [dt[0] + t1 - t0, dt[1] + t2 - t1, dt[2] + t3 - t2, dt[3] + time.perf_counter() - t3]
                if self.plots and batch_i < PLOTTED_BATCHES:
                    self.plot_val_samples(batch, dets, batch_i)
        self.finalize()
        n = max(self.seen, 1)
        self.speed = dict(zip(("preprocess", "inference", "loss", "postprocess"), (1e3 * t / n for t in dt)))
        self.metrics.speed = self.speed
        self.print_results(per_class=not self.training and getattr(self.args, "verbose", True))
        if self.training:
            results = dict(self.metrics.results_dict)
            losses = (self.loss.cpu() / max(len(self.dataloader), 1)) if self.loss is not None else torch.zeros(3)
            results.update({f"val/{k}": float(v) for k, v in zip(("box_loss", "cls_loss", "dfl_loss"), losses)})
            return results
        LOGGER.info("Speed: %.1fms preprocess, %.1fms inference, %.1fms loss, %.1fms postprocess per image" %
                    tuple(self.speed.values()))
        if self.plots:
            self.plot_metrics()
        if getattr(self.args, "save_json", False) and self.save_dir is not None:
            self.save_coco_json()
        PLOTS.wait()
        if self.save_dir is not None and (self.plots or getattr(self.args, "save_json", False)):
            LOGGER.info(f"Results saved to {self.save_dir}")
        return self.metrics

    def _setup_standalone(self, model: nn.Module | None) -> tuple[nn.Module, dict[int, str]]:
        """Device, dataset and rect dataloader for a validation outside training."""
        from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
        from ultralytics.utils.torch_utils import select_device

        if model is None:
            raise ValueError("validation needs a model")
        if getattr(self.args, "data", None) in (None, ""):
            raise ValueError("validation needs a dataset: pass data=..., e.g. data=coco128.yaml")
        batch = self.args.batch if self.args.batch > 0 else 16
        self.device = select_device(self.args.device, batch)
        data = check_det_dataset(self.args.data)
        split = self.args.split
        if not data.get(split):
            raise ValueError(f"dataset {self.args.data} has no '{split}' split; use split=val (or add '{split}:')")
        nc_model = int(model.model[-1].nc) if hasattr(model, "model") else data["nc"]
        names = {0: "item"} if self.args.single_cls else data["names"]
        if nc_model != len(names):
            raise ValueError(f"the model predicts {nc_model} classes but dataset {self.args.data} has {len(names)}; "
                             "validate on the dataset the model was trained on")
        model = model.to(self.device).float()
        stride = max(int(model.stride.max()), 32) if hasattr(model, "stride") else 32
        imgsz = self.args.imgsz if isinstance(self.args.imgsz, int) else max(self.args.imgsz)
        if imgsz % stride:
            imgsz = (imgsz // stride + 1) * stride
            LOGGER.warning(f"WARNING ⚠️ imgsz must be a multiple of the stride {stride}; using imgsz={imgsz}")
        if self.dataloader is None:
            cfg = ConfigView(self.args, imgsz=imgsz)
            dataset = build_yolo_dataset(cfg, data[split], batch, data, mode="val", rect=True, stride=stride)
            self.dataloader = build_dataloader(dataset, batch, self.args.workers, shuffle=False, rank=-1)
        if self.save_dir is None and (getattr(self.args, "plots", False) or getattr(self.args, "save_json", False)):
            from ultralytics.engine.run_files import get_save_dir

            self.save_dir = get_save_dir(self.args.project, self.args.name or "val", self.args.exist_ok)
        self.data = data
        LOGGER.info(f"Validating on {data[split]} ({split} split, imgsz={imgsz}, conf={self.conf}, "
                    f"iou={self.args.iou})")
        return model, names

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
        return non_max_suppression(preds, self.conf, self.args.iou, classes=getattr(self.args, "classes", None),
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
        coco80 = getattr(self.args, "save_json", False) and len(self.names) == 80 and self._coco_annotations()
        self.coco_class_map = COCO80_TO_91 if coco80 else None

    def update_metrics(self, dets: list[torch.Tensor], batch: dict) -> None:
        """Match each image's detections to its labels (both in original-image pixels) at 10 IoU thresholds."""
        img_hw = batch["img"].shape[2:]
        for si, pred in enumerate(dets):
            self.seen += 1
            idx = batch["batch_idx"] == si
            cls = batch["cls"][idx].view(-1)
            ori_shape, ratio_pad = batch["ori_shape"][si], batch["ratio_pad"][si]
            if len(cls):
                self.nt_per_image[np.unique(cls.long().cpu().numpy())] += 1
            if self.args.single_cls:
                pred = pred.clone()
                pred[:, 5] = 0
            predn = pred.clone()
            scale_boxes(img_hw, predn[:, :4], ori_shape, ratio_pad)
            h, w = img_hw
            tbox = xywh2xyxy(batch["bboxes"][idx]) * torch.tensor([w, h, w, h], device=predn.device)
            scale_boxes(img_hw, tbox, ori_shape, ratio_pad)
            tp = torch.zeros(len(predn), len(self.iouv), dtype=torch.bool, device=predn.device)
            if len(cls) and len(predn):
                tp = match_predictions(predn[:, 5], cls, box_iou(tbox, predn[:, :4]), self.iouv.to(predn.device),
                                       conf=predn[:, 4])
            if self.confusion_matrix is not None:
                self.confusion_matrix.process_batch(predn, tbox, cls)
            if getattr(self.args, "save_json", False):
                self.jdict += self.coco_records(predn, batch["im_file"][si])
            self.stats["tp"].append(tp.cpu())
            self.stats["conf"].append(predn[:, 4].cpu())
            self.stats["pred_cls"].append(predn[:, 5].cpu())
            self.stats["target_cls"].append(cls.cpu())

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
        from ultralytics.evaluation.coco import image_id_from_path, predictions_to_coco

        return predictions_to_coco(predn[:, :4], predn[:, 4], predn[:, 5], image_id_from_path(im_file),
                                   self.coco_class_map)

    def _coco_annotations(self) -> Path | None:
        """The dataset's own COCO file, {path}/annotations/instances_{split folder}.json, when it exists."""
        split_path = self.data.get(getattr(self.args, "split", "val"))
        if not self.data.get("path") or not isinstance(split_path, (str, Path)):
            return None
        anno = Path(self.data["path"]) / "annotations" / f"instances_{Path(split_path).stem}.json"
        return anno if anno.is_file() else None

    def save_coco_json(self) -> dict[str, Any] | None:
        """Write predictions.json and score it with pycocotools / faster-coco-eval against the dataset's COCO
        annotations, or against labels_coco.json built from the YOLO labels when the dataset has none."""
        from ultralytics.evaluation import coco as coco_eval

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
        from ultralytics.utils.plotting import plot_images

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
        PLOTS.submit(plot_images, labels, self.save_dir / f"val_batch{batch_i}_labels.jpg", names=dict(self.names))
        PLOTS.submit(plot_images, preds, self.save_dir / f"val_batch{batch_i}_pred.jpg", names=dict(self.names))

    def plot_metrics(self) -> None:
        """Queue BoxPR/F1/P/R_curve.png and confusion_matrix(_normalized).png."""
        from ultralytics.evaluation import plots as pm

        box = self.metrics.box
        names = {i: self.names.get(int(c), str(int(c))) for i, c in enumerate(self.metrics.ap_class_index)}
        PLOTS.submit(pm.plot_pr_curve, box.px, box.prec_values.copy(), box.all_ap.copy(),
                     self.save_dir / "BoxPR_curve.png", names)
        for fname, (px, curve, xlabel, ylabel) in zip(("BoxF1_curve.png", "BoxP_curve.png", "BoxR_curve.png"),
                                                       box.curves_results[1:]):
            PLOTS.submit(pm.plot_mc_curve, px, curve.copy(), self.save_dir / fname, names, xlabel, ylabel)
        if self.confusion_matrix is not None:
            for normalize in (False, True):
                fname = f"confusion_matrix{'_normalized' if normalize else ''}.png"
                PLOTS.submit(pm.plot_confusion_matrix, self.confusion_matrix.matrix.copy(), dict(self.names),
                             self.save_dir / fname, normalize)


class ConfigView:
    """A read-only view of a config namespace with a few keys replaced."""

    def __init__(self, base: Any, **changes: Any):
        self._base, self._changes = base, changes

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        return self._changes[key] if key in self._changes else getattr(self._base, key)

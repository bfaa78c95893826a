"""DetectionTrainer: one training run from its validated config to a run folder with best.pt.

Flow: __init__ (config, resume, device, seeds, dataset, run folder) → train() → _setup_train (model, freeze, AMP,
loaders, EMA, optimizer, resume state) → epochs (warm-up, accumulate, clip, EMA, NaN guard) → validate → save
→ final validation of best.pt → TrainResult. Printing, plotting and writing run on rank 0 only (`self.main`);
under torchrun every rank runs this flow with DDP and waits for rank 0's decisions (docs/distributed.md).
"""

from __future__ import annotations

import inspect
import math
import random
import time
from contextlib import nullcontext
from copy import deepcopy
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn as nn

from ultralytics.cfg import IterableSimpleNamespace
from ultralytics.checkpoints import (atomic_save, load_checkpoint, make_checkpoint, model_from_checkpoint,
                                     strip_optimizer, transfer_weights, weights_of)
from ultralytics.data import build_dataloader, build_yolo_dataset, check_det_dataset
from ultralytics.detection.loss import DetectionLoss, distributed_normaliser
from ultralytics.engine import callbacks as cb
from ultralytics.engine import faults, optim
from ultralytics.engine.amp import check_amp
from ultralytics.engine.resume import ResumePoint, build_train_config
from ultralytics.engine.run_files import ResultsCSV, TrainResult, get_save_dir, loss_dict, progress_text
from ultralytics.engine.step_guard import StepGuard
from ultralytics.engine.validator import DetectionValidator, training_progress
from ultralytics.errors import ConfigError
from ultralytics.evaluation.plots import plot_results
from ultralytics.nn.tasks import DetectionModel
from ultralytics.utils import DEFAULT_CFG, DEFAULT_CFG_PATH, LOGGER, RANK, dist, yaml_save
from ultralytics.utils.autobatch import check_train_batch_size
from ultralytics.utils.checks import check_imgsz
from ultralytics.utils.plotting import PlotWorker, plot_images, plot_labels
from ultralytics.utils.torch_utils import ModelEMA, cuda_device_ids, de_parallel, init_seeds, select_device

MAX_BAD_STEPS = 10  # consecutive non-finite losses/gradients before training stops (docs/reliability.md)
CLIP_NORM = 10.0
EVENTS = cb.EVENTS


class DetectionTrainer(cb.CallbackHost):
    """Trains a DetectionModel. `model` is a yaml name/path/dict (architecture); `weights` optional initial weights
    (a module, state_dict, checkpoint dict or *.pt path) transferred by name and shape. `add_callback(event, fn)`
    calls fn(trainer) at an event (engine/callbacks.py); only rank 0 runs callbacks under DDP."""

    def __init__(self, cfg: Any = DEFAULT_CFG_PATH, overrides: dict | None = None, model: Any = None,
                 weights: Any = None, callbacks: dict[str, list[Callable]] | None = None,
                 resume: ResumePoint | None = None, _callbacks: dict[str, list[Callable]] | None = None):
        """`cfg` is the run's validated config (from the YOLO facade or a DDP launch, with the `resume` point it
        continues), or a yaml/dict merged with `overrides` into one when the trainer is used on its own.
        `callbacks` / `_callbacks` (the published keyword): {event: [fn(trainer)]} (engine/callbacks.py)."""
        cfg = DEFAULT_CFG_PATH if cfg is DEFAULT_CFG else cfg
        if isinstance(cfg, IterableSimpleNamespace) and not overrides:
            self.args, point = cfg, resume
        else:
            self.args, point = build_train_config(cfg, overrides)
        self.main = RANK in (-1, 0)
        self.callbacks = cb.copy_callbacks(callbacks, _callbacks, integrations=self.main)
        self.resume_ckpt: dict | None = None
        if point is not None:
            self.resume_ckpt, self.resume_path, resume_dir = point.ckpt, point.path, point.save_dir
            LOGGER.info(f"Resuming training from {point.path} at epoch {point.ckpt['epoch'] + 2} of {self.args.epochs}")
        self.model_cfg, self.weights = model, weights
        env = dist.dist_env()
        if not env.launched and len(cuda_device_ids(self.args.device)) > 1:
            raise ConfigError(f"device={self.args.device} trains with one process per GPU (DDP): start it with "
                             "YOLO(...).train(...), `yolo train` or torchrun; DetectionTrainer runs one process")
        self.world_size = env.world_size
        self.rank = RANK if env.distributed else -1  # the dataloader's rank: -1 = no DistributedSampler
        self.device = select_device(self.args.device, self.args.batch, local_rank=env.local_rank)
        if self.args.batch % self.world_size:  # batch=-1 too: automatic batch sizes are for one process
            raise ConfigError(f"batch={self.args.batch} is the global batch and must be a multiple of the "
                             f"{self.world_size} DDP processes, e.g. batch={self.world_size * 8}")
        self._owns_pg = dist.init_process_group(self.device, env) if env.distributed else False
        try:
            # rank r seeds with seed + r: rank 0 augments exactly like a single-process run with the same seed
            init_seeds(self.args.seed + max(RANK, 0), deterministic=self.args.deterministic)
            with dist.rank_zero_first(self.rank):
                self.data = self._get_dataset()
            if self.resume_ckpt is not None:
                self.save_dir = resume_dir
            else:  # rank 0 picks the folder (train, train2, ...) and tells the others
                save_dir = get_save_dir(self.args.project, self.args.name, self.args.exist_ok) if self.main else None
                self.save_dir = Path(dist.broadcast_object(str(save_dir) if save_dir else None))
        except BaseException:
            self._shutdown()
            raise
        self.args.save_dir = str(self.save_dir)
        self.wdir = self.save_dir / "weights"
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"
        if self.main:
            self.wdir.mkdir(parents=True, exist_ok=True)
        self.epochs, self.start_epoch, self.epoch = self.args.epochs, 0, 0
        self.batch_size = self.args.batch
        self.csv = ResultsCSV(self.save_dir / "results.csv")
        self.plotter = PlotWorker()  # this run's plot thread, lent to its validator
        # set up by train(): model, EMA, optimizer, the epochs' validator, losses, metrics, fitness, learning rates
        self.model = self.ema = self.optimizer = self.validator = self.tloss = None
        self.final_metrics = self.fitness = self.best_fitness = None
        self.metrics: dict[str, float] = {}
        self.lr: dict[str, float] = {}
        self.best_epoch, self.is_best, self.saved_epoch = 0, False, -1  # saved_epoch: the epoch last.pt ends
        self.amp = self.stop = False
        self.guard = StepGuard(MAX_BAD_STEPS, advice=f"Usual causes: a too high lr0 (now {self.args.lr0}), AMP (try "
                               "amp=False) or bad labels")
        self.signals = faults.StopSignals(enabled=self.world_size == 1)  # Ctrl-C/SIGTERM stop at a batch boundary

    def _get_dataset(self) -> dict:
        data = check_det_dataset(self.args.data)
        if self.args.single_cls:
            data = {**data, "names": {0: "item"}, "nc": 1}
        return data

    def model_source(self) -> tuple[Any, Any]:
        """(architecture, initial weights): the resumed checkpoint's yaml, else `model`/args.model with `weights`."""
        if self.resume_ckpt is not None:
            return self.resume_ckpt["model_yaml"], None
        cfg, weights = (self.model_cfg if self.model_cfg is not None else self.args.model), self.weights
        if isinstance(cfg, (str, Path)) and str(cfg).endswith(".pt"):
            ckpt = load_checkpoint(cfg)
            cfg, weights = ckpt["model_yaml"], weights if weights is not None else ckpt
        return cfg, weights

    def get_model(self, cfg: str | dict | None = None, weights: Any = None, verbose: bool = True) -> nn.Module:
        """A DetectionModel of `cfg` (yaml name/path/dict; None: model_source()) with the dataset's nc and
        `weights` (module, state_dict, checkpoint or *.pt) transferred where names and shapes fit."""
        if cfg is None:
            cfg, own = self.model_source()
            weights = own if weights is None else weights
        model = DetectionModel(deepcopy(cfg) if isinstance(cfg, dict) else cfg, nc=self.data["nc"],
                               verbose=verbose and self.main)
        if weights is not None:
            transfer_weights(model, weights_of(weights), verbose=self.main)
        return model

    def _build_model(self) -> nn.Module:
        """get_model(cfg, weights, verbose) (or an override's get_model()), then resume state/pretrained=, names."""
        cfg, weights = self.model_source()
        if inspect.signature(self.get_model).parameters:
            model = self.get_model(cfg=cfg, weights=weights, verbose=bool(self.args.verbose))
        else:
            model = self.get_model()
        if self.resume_ckpt is not None:
            model.load_state_dict(self.resume_ckpt["model"])
        elif isinstance(self.args.pretrained, str):
            transfer_weights(model, weights_of(self.args.pretrained), verbose=self.main)
        model.names = dict(self.data["names"])
        model.args = self.args
        return model

    def get_validator(self) -> DetectionValidator:
        """The validator of the epochs (it draws in this run's plot thread)."""
        return DetectionValidator(self.args, save_dir=self.save_dir, plotter=self.plotter, _callbacks=self.callbacks)

    def freeze_layers(self, model: nn.Module) -> list[str]:
        """Freeze `freeze` (first N layers, or listed indices) by the name prefix model.{i}.; DFL always."""
        return optim.freeze_layers(model, self.args.freeze, verbose=self.main)

    def wrap_model(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel (and SyncBatchNorm with sync_bn=True on CUDA) under DDP; else the model."""
        return dist.wrap_ddp(model, self.device, sync_bn=bool(self.args.sync_bn)) if self.world_size > 1 else model

    def build_dataset(self, img_path: Any, mode: str = "train", batch: int | None = None) -> Any:
        """The dataset of a split: augmented for train, rect letterboxed batches for val (and for train with
        rect=True in one process; DDP ranks take interleaved images, so they train with square batches)."""
        rect = mode == "val" or (self.args.rect and self.rank == -1)
        if mode == "train" and self.args.rect and self.rank != -1 and self.main:
            LOGGER.warning("WARNING ⚠️ rect=True is not used for DDP training (each rank's images would need "
                           "different rect shapes); training with square batches, validation stays rect")
        return build_yolo_dataset(self.args, img_path, batch or self.batch_size, self.data, mode=mode, rect=rect,
                                  stride=self.stride, imgsz=self.imgsz)

    def get_dataloader(self, dataset_path: Any, batch_size: int = 16, rank: int = -1, mode: str = "train") -> Any:
        """A seeded loader over `build_dataset(dataset_path, mode, batch_size)`, shuffled for square training
        batches; rank -1 has no DistributedSampler. (The earlier order `(path, batch, mode, rank)` is accepted.)"""
        if isinstance(rank, str):
            rank, mode = (mode if isinstance(mode, int) else -1), rank
        dataset = self.build_dataset(dataset_path, mode, batch_size)
        shuffle = mode == "train" and not dataset.rect
        return build_dataloader(dataset, batch_size, self.args.workers, shuffle=shuffle, rank=rank,
                                seed=self.args.seed)

    def _setup_train(self) -> None:
        self.run_callbacks("on_pretrain_routine_start")
        self.model = self._build_model().to(self.device)
        self.freeze_layers(self.model)
        self.amp = check_amp(self.model, self.device, self.args.amp) if self.main else self.args.amp
        self.amp = bool(dist.broadcast_object(self.amp))  # rank 0's check decides for all ranks
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.stride = max(int(self.model.stride.max()), 32)
        self.imgsz = check_imgsz(self.args.imgsz, self.stride, square=True)
        if self.batch_size == -1:  # DDP refused it in __init__
            self.args.batch = self.batch_size = check_train_batch_size(self.model, self.imgsz, self.amp)
        self.model = self.wrap_model(self.model)
        rank_batch = self.batch_size // self.world_size
        with dist.rank_zero_first(self.rank):  # rank 0 writes the label cache, the others then read it
            self.train_loader = self.get_dataloader(self.data["train"], rank_batch, rank=self.rank, mode="train")
        if self.main:
            val_path = self.data.get("val") or self.data.get("test")
            self.val_loader = self.get_dataloader(val_path, rank_batch * 2, rank=-1, mode="val")
            self.validator = self.get_validator()
            self.ema = ModelEMA(self.model)
            if self.args.plots and self.resume_ckpt is None:
                self.plotter.hold()  # drawn after the first epoch's batch loop, not during it
                self.plot_labels()
        if self.world_size > 1:  # after the EMA copy: the EMA model's criterion (rank-0 validation) must not reduce
            m = de_parallel(self.model)
            m.criterion = DetectionLoss.from_model(m, normaliser=distributed_normaliser)
        self.accumulate = optim.accumulate_steps(self.batch_size, self.args.nbs)
        decay = optim.scaled_weight_decay(self.args.weight_decay, self.batch_size, self.accumulate, self.args.nbs)
        iterations = optim.optimizer_iterations(len(self.train_loader.dataset), self.batch_size, self.args.nbs,
                                                self.epochs)
        self.optimizer, name = optim.build_optimizer(self.model, self.args.optimizer, self.args.lr0,
                                                     self.args.momentum, decay, iterations, self.data["nc"],
                                                     verbose=self.main)
        if self.args.optimizer == "auto":
            self.args.warmup_bias_lr = 0.0
        self.momentum = self.optimizer.param_groups[0].get("momentum", self.args.momentum)
        for g in self.optimizer.param_groups:
            g["initial_lr"] = g["lr"]
        self.lf = optim.lr_lambda(self.epochs, self.args.lrf, self.args.cos_lr)
        if self.resume_ckpt is not None:
            self._restore_state(self.resume_ckpt)
        elif self.main:
            self.csv.load(keep_epochs=0)
        if self.main:
            yaml_save(self.save_dir / "args.yaml", vars(self.args))
        self.run_callbacks("on_pretrain_routine_end")

    def _restore_state(self, ckpt: dict) -> None:
        """Optimizer, EMA (+ updates), best fitness, epoch and results.csv of the resumed checkpoint."""
        self.optimizer.load_state_dict(ckpt["optimizer"])
        if self.ema is not None and ckpt.get("ema"):
            self.ema.ema.load_state_dict(ckpt["ema"])
            self.ema.updates = int(ckpt.get("updates", 0))
        self.best_fitness = ckpt.get("best_fitness")
        self.best_epoch = int(ckpt.get("best_epoch", ckpt["epoch"]))
        self.start_epoch, self.saved_epoch = int(ckpt["epoch"]) + 1, int(ckpt["epoch"])
        self.metrics = {k: v for k, v in (ckpt.get("train_metrics") or {}).items() if k != "fitness"}
        if self.main:
            self.csv.load(keep_epochs=self.start_epoch)
        if self.start_epoch >= self.epochs:
            raise ConfigError(f"{self.resume_path} completed all {self.epochs} epochs; nothing to resume")

    def train(self) -> TrainResult:
        """Run the training; returns the run folder, the metrics of the final validation of best.pt (None on
        ranks > 0), the training size, the config and the final EMA model."""
        try:
            with self.signals:
                self._setup_train()
                self._train_epochs()
            if self.main:
                self.final_eval()
                self.run_callbacks("on_fit_epoch_end")  # as published: once more, after the final validation
            dist.barrier()  # the other ranks wait for best.pt
            self.run_callbacks("on_train_end")
        except BaseException as e:
            if self.world_size > 1:  # rank > 0 logs warnings and errors only
                LOGGER.error(f"DDP rank {RANK}: training stopped by {type(e).__name__}: {e}")
            failure = faults.on_error(self, e)  # one line: what happened, what was kept, how to resume
            if failure is e:
                raise
            raise failure from e
        finally:
            if self.main:
                self.plot_results()
            self._close_loaders()
            self._shutdown()
            self.run_callbacks("teardown")
        return self.result()

    def result(self) -> TrainResult:
        """What this run hands back so far (the facade and the DDP launcher read this, not the trainer)."""
        return TrainResult(self.save_dir, self.final_metrics, getattr(self, "imgsz", None), dict(vars(self.args)),
                           self.ema.ema if self.ema is not None else None)

    def _shutdown(self) -> None:
        """Destroy the process group this trainer created (on success, error and Ctrl-C alike)."""
        if getattr(self, "_owns_pg", False):
            self._owns_pg = False
            dist.destroy_process_group()

    def _train_epochs(self) -> None:
        nb = len(self.train_loader)
        nw = optim.warmup_iterations(self.args.warmup_epochs, nb)
        last_opt_step = self.start_epoch * nb - 1
        t_start = time.time()
        time_base = self.csv.last_time
        if self.main:
            LOGGER.info(f"Image sizes {self.imgsz} train, {self.imgsz} val\nUsing {self.train_loader.num_workers} "
                        f"dataloader workers\nLogging results to {self.save_dir}\n"
                        f"Starting training for {self.epochs} epochs...")
        self.run_callbacks("on_train_start")
        self.optimizer.zero_grad()
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            self.run_callbacks("on_train_epoch_start")
            self.model.train()
            if self.args.close_mosaic and epoch >= self.epochs - self.args.close_mosaic:
                self._close_mosaic()
            sampler = getattr(self.train_loader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            for g in self.optimizer.param_groups:
                g["lr"] = g["initial_lr"] * self.lf(epoch)
            self.tloss = None
            bar = training_progress(self.train_loader, self.device, show=self.main)
            self.plotter.hold()  # plots queued by this loop are drawn after it (ultralytics/utils/plotting.py)
            for i, batch in bar:
                self.run_callbacks("on_train_batch_start")
                ni = i + nb * epoch
                if ni <= nw:
                    self.accumulate = optim.warmup_accumulate(ni, nw, self.args.nbs, self.batch_size)
                    optim.apply_warmup(self.optimizer, ni, nw, self.lf(epoch), self.args.warmup_bias_lr,
                                       self.args.warmup_momentum, self.momentum)
                step = ni - last_opt_step >= self.accumulate
                # DDP: accumulate locally and all_reduce the gradients only in the batch that steps
                sync = self.model.no_sync() if self.world_size > 1 and not step else nullcontext()
                with sync:
                    with torch.autocast(device_type=self.device.type, enabled=self.amp):
                        loss, items = self.model(self.preprocess_batch(batch))
                    items, finite = dist.reduce_loss_items(loss, items)  # mean over ranks; all skip or none
                    where = f"epoch {epoch + 1} batch {i + 1}" + (" on some DDP rank" if self.world_size > 1 else "")
                    if not self.guard.check_loss(loss, finite, where):
                        continue
                    # x world_size: DDP averages the rank gradients (see ultralytics.detection.loss.distributed_normaliser)
                    self.scaler.scale(loss * self.world_size).backward()
                self.tloss = items if self.tloss is None else (self.tloss * i + items) / (i + 1)
                if step:
                    self.optimizer_step()
                    last_opt_step = ni
                if self.main:
                    bar.set_description(progress_text(self.epoch, self.epochs, self.device, self.tloss, batch))
                    if self.args.plots and ni < 3:
                        self.plot_training_samples(batch, ni)
                self.run_callbacks("on_train_batch_end")
                faults.check_stop(self.signals)
            self.plotter.release()
            self.lr = {f"lr/pg{j}": float(g["lr"]) for j, g in enumerate(self.optimizer.param_groups)}
            dist.broadcast_buffers(de_parallel(self.model))  # rank 0's BN statistics (the checkpoint's) on all ranks
            self.run_callbacks("on_train_epoch_end")
            elapsed = time.time() - t_start
            time_up = bool(self.args.time) and elapsed > self.args.time * 3600
            final = epoch + 1 >= self.epochs or time_up
            if self.main:
                self._validate(final)
                self.stop = final or self._patience_exceeded(epoch)
                self.csv.add({"epoch": epoch + 1, "time": time_base + elapsed, **loss_dict(self.tloss, "train"),
                              **self.metrics, **self.lr})
                if self.args.save or self.stop:  # save=False still leaves last.pt/best.pt at the end
                    self.save_model(finished=self.stop)
            self.stop = bool(dist.broadcast_object(self.stop))  # the other ranks wait here while rank 0 validates
            self.run_callbacks("on_fit_epoch_end")
            if not self.stop:  # a finished run just ends
                faults.check_stop(self.signals)
            if time_up and self.main:
                LOGGER.info(f"Time limit of {self.args.time} hours reached after epoch {epoch + 1}; stopping")
            if self.stop:
                break
        if self.main:
            LOGGER.info(f"\n{epoch + 1 - self.start_epoch} epochs completed in {(time.time() - t_start) / 3600:.3f} "
                        f"hours (run now at epoch {epoch + 1}/{self.epochs}).")

    def preprocess_batch(self, batch: dict) -> dict:
        """Images to float [0, 1] on the device; multi_scale resizes the batch to 0.5–1.5 × imgsz."""
        batch = dict(batch)
        img = batch["img"].to(self.device, non_blocking=True).float() / 255
        if self.args.multi_scale:
            sz = int(random.uniform(self.imgsz * 0.5, self.imgsz * 1.5 + self.stride)) // self.stride * self.stride
            factor = sz / max(img.shape[2:])
            if factor != 1:
                shape = [math.ceil(x * factor / self.stride) * self.stride for x in img.shape[2:]]
                img = nn.functional.interpolate(img, size=shape, mode="bilinear", align_corners=False)
        batch["img"] = img
        return batch

    @property
    def bad_steps(self) -> int:
        """Consecutive non-finite steps so far."""
        return self.guard.bad_steps

    def optimizer_step(self) -> None:
        """Unscale, clip the gradient norm at 10, step (skipped when the gradients are not finite), EMA update."""
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm=CLIP_NORM)
        if not self.amp and not torch.isfinite(norm):
            self.optimizer.zero_grad()
            self.guard.bad(f"non-finite gradient norm at epoch {self.epoch + 1}")
            return
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()
        if self.ema is not None:
            self.ema.update(self.model)

    def _close_mosaic(self) -> None:
        if getattr(self, "_mosaic_closed", False):
            return
        self._mosaic_closed = True
        if self.main:
            LOGGER.info("Closing dataloader mosaic")
        self.train_loader.dataset.close_mosaic(hyp=self.args)
        if hasattr(self.train_loader, "reset"):
            self.train_loader.reset()

    def _validate(self, final: bool) -> None:
        """Validate the EMA model (every epoch when val=True, else only at the end) and track the best fitness."""
        if self.ema is not None:
            self.ema.copy_attributes(de_parallel(self.model), ("yaml", "nc", "args", "names", "stride"))
        if self.args.val or final:
            model = self.ema.ema if self.ema is not None else de_parallel(self.model)
            metrics = self.validator.run(model, self.val_loader, self.device, self.data["names"], compute_loss=True)
            self.fitness = float(metrics.fitness)
            self.metrics = {**{k: v for k, v in metrics.results_dict.items() if k != "fitness"}, **metrics.losses}
        else:
            self.fitness = -float(self.tloss.sum()) if self.tloss is not None else None
            self.metrics = {**{k: v for k, v in self.metrics.items() if k.startswith("metrics/")},
                            **loss_dict(None, "val")}
        self.is_best = self.fitness is not None and (self.best_fitness is None or self.fitness >= self.best_fitness)
        if self.is_best:
            self.best_fitness, self.best_epoch = self.fitness, self.epoch

    def _patience_exceeded(self, epoch: int) -> bool:
        stop = bool(self.args.patience) and epoch - self.best_epoch >= self.args.patience
        if stop:
            LOGGER.info(f"Stopping training early: no improvement in the last {self.args.patience} epochs; best "
                        f"results were at epoch {self.best_epoch + 1} (patience={self.args.patience})")
        return stop

    def checkpoint(self, epoch: int, finished: bool = False) -> dict:
        """The training state as a checkpoint dict whose `epoch` (0-based) is the last one counted as done."""
        ckpt = make_checkpoint(de_parallel(self.model), self.ema.ema if self.ema else None, epoch=epoch,
                               best_fitness=self.best_fitness, updates=self.ema.updates if self.ema else 0,
                               optimizer=None if finished else self.optimizer.state_dict(), train_args=vars(self.args),
                               train_metrics={**self.metrics, "fitness": self.fitness}, finished=finished)
        ckpt["best_epoch"] = self.best_epoch
        return ckpt

    def save_model(self, finished: bool = False) -> None:
        """last.pt (atomically), best.pt when fitness improved (or at the end if none), epoch{N}.pt by save_period."""
        ckpt = self.checkpoint(self.epoch, finished)
        atomic_save(ckpt, self.last)
        self.saved_epoch = self.epoch
        if self.is_best or (finished and not self.best.exists()):
            atomic_save(ckpt, self.best)
        if self.args.save_period > 0 and (self.epoch + 1) % self.args.save_period == 0:
            atomic_save(ckpt, self.wdir / f"epoch{self.epoch + 1}.pt")
        self.run_callbacks("on_model_save")

    def final_eval(self) -> None:
        """Mark best.pt finished (optimizer stripped) and validate it; summary of where the results are."""
        model = None
        if self.best.exists():
            model = model_from_checkpoint(strip_optimizer(self.best))
            LOGGER.info(f"\nValidating {self.best}...")
        elif self.ema is not None:
            model = deepcopy(self.ema.ema)
            LOGGER.info("\nValidating the final EMA model (no best.pt was saved)...")
        if model is not None:
            self.final_metrics = self.get_validator().run(model.to(self.device).float(), self.val_loader, self.device,
                                               self.data["names"], plots=self.args.plots, data=self.data)
        LOGGER.info(f"Results saved to {self.save_dir}\nWeights: {self.last} (last), {self.best} (best)")

    def plot_training_samples(self, batch: dict, ni: int) -> None:
        """Queue train_batch{ni}.jpg (drawn by the plot thread from copies of the batch)."""
        sample = {k: (v.cpu().numpy() if isinstance(v, torch.Tensor) else list(v)) for k, v in batch.items()
                  if k in ("img", "cls", "bboxes", "batch_idx", "im_file")}
        self.plotter.submit(plot_images, sample, self.save_dir / f"train_batch{ni}.jpg", names=dict(self.data["names"]))

    def plot_labels(self) -> None:
        """Queue labels.jpg, the overview of the training labels."""
        cls, boxes = self.train_loader.dataset.label_arrays()
        self.plotter.submit(plot_labels, boxes, cls, dict(self.data["names"]), self.save_dir)

    def plot_results(self) -> None:
        """Queue results.png from results.csv and wait for every queued plot of the run."""
        if self.args.plots and self.csv.file.is_file():
            self.plotter.submit(plot_results, self.csv.file)
        self.plotter.wait()

    def _close_loaders(self) -> None:
        for loader in (getattr(self, "train_loader", None), getattr(self, "val_loader", None)):
            if hasattr(loader, "reset"):
                loader.reset()


__all__ = ["DetectionTrainer"]

"""Callbacks: functions called with the trainer, validator, predictor or exporter at named events.

A callbacks dict maps every event name to a list of functions, run in the order they were added. The facade
(`YOLO.add_callback`) hands its dict to each component it builds; the trainer lends its dict to its validator,
so the validation events of a training reach the same functions. During DDP training only rank 0 runs them.
The built-in TensorBoard logger joins a trainer's dict when `torch.utils.tensorboard` imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ultralytics.utils import LOGGER

TRAIN_EVENTS = ("on_pretrain_routine_start", "on_pretrain_routine_end", "on_train_start", "on_train_epoch_start",
                "on_train_batch_start", "optimizer_step", "on_before_zero_grad", "on_train_batch_end",
                "on_train_epoch_end", "on_fit_epoch_end", "on_model_save", "on_train_end", "on_params_update",
                "teardown")
VAL_EVENTS = ("on_val_start", "on_val_batch_start", "on_val_batch_end", "on_val_end")
PREDICT_EVENTS = ("on_predict_start", "on_predict_batch_start", "on_predict_postprocess_end",
                  "on_predict_batch_end", "on_predict_end")
EXPORT_EVENTS = ("on_export_start", "on_export_end")
EVENTS = TRAIN_EVENTS + VAL_EVENTS + PREDICT_EVENTS + EXPORT_EVENTS

Callbacks = dict[str, list[Callable]]


def get_default_callbacks() -> Callbacks:
    """A new dict with an empty list for every event."""
    return {event: [] for event in EVENTS}


def copy_callbacks(*given: dict[str, list[Callable]] | None, integrations: bool = False) -> Callbacks:
    """A new default dict holding the functions of each dict in `given` (lists copied, not shared), plus the
    built-in loggers that are installed when `integrations`."""
    out = get_default_callbacks()
    for callbacks in given:
        for event, fns in (callbacks or {}).items():
            check_event(event)
            out[event].extend(fns)
    if integrations:
        add_integration_callbacks(out)
    return out


def check_event(event: str) -> None:
    """KeyError naming the known events when `event` is not one of them."""
    if event not in EVENTS:
        raise KeyError(f"unknown callback event {event!r}; events are {', '.join(EVENTS)}")


def add_callback(callbacks: Callbacks, event: str, fn: Callable) -> None:
    """Append `fn` to the functions of `event`."""
    check_event(event)
    if not callable(fn):
        raise TypeError(f"callback for {event!r} must be callable, got {type(fn).__name__}")
    callbacks.setdefault(event, []).append(fn)


def run_callbacks(callbacks: Callbacks, event: str, component: Any) -> None:
    """Call every function of `event` with `component` (the object firing it)."""
    for fn in callbacks.get(event, []):
        fn(component)


class CallbackHost:
    """Mixin of the components that fire events: `callbacks` dict, `add_callback`, `run_callbacks`.

    A host whose `main` attribute is False (a DDP rank other than 0) runs no callbacks."""

    callbacks: Callbacks
    main: bool = True

    def add_callback(self, event: str, fn: Callable) -> None:
        """Call fn(self) at `event` (one of EVENTS)."""
        add_callback(self.callbacks, event, fn)

    def run_callbacks(self, event: str) -> None:
        """Call the functions of `event` with this object."""
        if self.main:
            run_callbacks(self.callbacks, event, self)


# ---------------------------------------------------------------------------------------------------- TensorBoard
def tensorboard_writer_class() -> type | None:
    """torch's SummaryWriter when tensorboard is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter


class TensorBoardLogger:
    """Writes the scalars of every results.csv row (losses, metrics, learning rates) to the run folder."""

    def __init__(self, writer_class: type):
        self.writer_class = writer_class
        self.writer: Any = None

    def start(self, trainer: Any) -> None:
        self.writer = self.writer_class(str(Path(trainer.save_dir)))
        LOGGER.info(f"TensorBoard: view with 'tensorboard --logdir {trainer.save_dir}'")

    def log_epoch(self, trainer: Any) -> None:
        row = trainer.csv.rows[-1] if self.writer is not None and trainer.csv.rows else None
        if row is None:
            return
        step = int(row["epoch"])
        for key, value in row.items():
            if key != "epoch":
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()

    def close(self, trainer: Any) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def add_integration_callbacks(callbacks: Callbacks) -> None:
    """Add the built-in loggers whose packages are installed (TensorBoard) to a trainer's callbacks."""
    writer_class = tensorboard_writer_class()
    if writer_class is None:
        return
    logger = TensorBoardLogger(writer_class)
    add_callback(callbacks, "on_pretrain_routine_start", logger.start)
    add_callback(callbacks, "on_fit_epoch_end", logger.log_epoch)
    add_callback(callbacks, "teardown", logger.close)


__all__ = ["EVENTS", "CallbackHost", "add_callback", "add_integration_callbacks", "check_event", "copy_callbacks",
           "get_default_callbacks", "run_callbacks"]

"""How a training run meets a fault: Ctrl-C/SIGTERM, a file that cannot be written, NaN/inf, GPU out of memory.

Each fault ends as one exception whose message is one line: what happened, where (epoch/batch, file), what was kept
(`last.pt`, written atomically, never partial) and the command that resumes the run. docs/reliability.md lists the
guarantees and the tests that prove them.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from ultralytics.checkpoints import atomic_save
from ultralytics.errors import DeviceMemoryError, FileWriteError, NonFiniteLossError, TrainingInterrupted
from ultralytics.utils import LOGGER

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + signal number, as a shell reports them


def resume_command(last: str | Path) -> str:
    """The command that continues a run from its last.pt."""
    return f"yolo train resume model={last}"


class StopSignals:
    """While active, the first SIGINT/SIGTERM only records the signal (`signum`): the training loop checks it
    between batches and stops cleanly there. A second signal raises KeyboardInterrupt at once (nothing is written
    then; the last epoch's last.pt stays). Handlers are installed only in the main thread (Python's rule) and only
    when `enabled` (off under DDP, where the ranks would stop at different batches); else signals act as usual."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled, self.signum = enabled, None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        self.signum = None
        if self.enabled and threading.current_thread() is threading.main_thread():
            for s in EXIT_CODES:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice: stopped at once")
        self.signum = signum
        LOGGER.warning(f"\nWARNING ⚠️ {signal.Signals(signum).name} received: stopping after this batch and saving "
                       "last.pt (send it again to stop at once)")

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130)


def finite_state(model: torch.nn.Module) -> bool:
    """Whether every parameter and buffer of `model` is finite (what a last.pt written after NaN steps must hold)."""
    return all(bool(torch.isfinite(t).all()) for t in (*model.parameters(), *model.buffers())
               if t.is_floating_point())


def save_partial(trainer: Any) -> str:
    """Write last.pt for a run stopped inside epoch `trainer.epoch` (unless the end of that epoch is saved already)
    and say what it holds. The partial epoch counts as not done: resume repeats it from its first batch, starting
    from these weights, optimizer and EMA state."""
    if trainer.saved_epoch == trainer.epoch:
        return f"{trainer.last} holds epoch {trainer.epoch + 1}"
    models = [m for m in (trainer.model, trainer.ema.ema if trainer.ema is not None else None) if m is not None]
    if not models or not all(finite_state(m) for m in models):
        return f"last.pt not written (no finite weights to save); {_previous(trainer)}"
    try:
        atomic_save(trainer.checkpoint(epoch=trainer.epoch - 1), trainer.last)
    except FileWriteError as w:
        return f"{w}; {_previous(trainer)}"
    return f"{trainer.last} holds the weights reached in epoch {trainer.epoch + 1}, which a resume repeats"


def _previous(trainer: Any) -> str:
    if not trainer.last.exists():
        return "no last.pt was written yet"
    epoch = f" (epoch {trainer.saved_epoch + 1})" if trainer.saved_epoch >= 0 else ""
    return f"{trainer.last}{epoch} is intact"


def on_error(trainer: Any, e: BaseException) -> BaseException:
    """The exception a failed or stopped training ends with (rank 0 writes last.pt first where it helps)."""
    signals = trainer.signals
    if signals.signum is not None and not isinstance(e, KeyboardInterrupt) or isinstance(e, _StopRequested):
        e = _StopRequested()  # a loader worker hit by the same Ctrl-C fails afterwards: still the user's stop
    where = f"epoch {trainer.epoch + 1}/{trainer.epochs}"
    if isinstance(e, _StopRequested):
        kept = save_partial(trainer) if trainer.main else "rank 0 writes last.pt"
        name = signal.Signals(signals.signum).name if signals.signum else "a signal"
        return TrainingInterrupted(f"training interrupted by {name} in {where}; {kept}. Resume with: "
                                   f"{resume_command(trainer.last)}", exit_code=signals.exit_code)
    if isinstance(e, NonFiniteLossError) and trainer.main:
        return NonFiniteLossError(f"{e}; {save_partial(trainer)}")
    if isinstance(e, torch.OutOfMemoryError):
        torch.cuda.empty_cache()
        return DeviceMemoryError(
            f"{trainer.device.type.upper()} out of memory in {where} at batch={trainer.batch_size}, "
            f"imgsz={trainer.args.imgsz}: lower batch or imgsz, or use batch=-1 (the largest batch that fits "
            f"~60% of the GPU memory); {_kept(trainer)}")
    if isinstance(e, FileWriteError) and trainer.main:
        return FileWriteError(f"{e}. Training stopped in {where}; {_kept(trainer)}", errno=e.errno,
                              filename=e.filename)
    return e


def _kept(trainer: Any) -> str:
    if trainer.last.exists():
        return f"{_previous(trainer)}. Resume with: {resume_command(trainer.last)}"
    return "no last.pt was written yet, so start the run again"


class _StopRequested(Exception):
    """Raised by `check_stop` at a batch boundary after a SIGINT/SIGTERM; turned into TrainingInterrupted."""


def check_stop(signals: StopSignals) -> None:
    """Stop here (a batch or epoch boundary) when a signal asked for it."""
    if signals.signum is not None:
        raise _StopRequested


__all__ = ["StopSignals", "check_stop", "finite_state", "on_error", "resume_command", "save_partial"]

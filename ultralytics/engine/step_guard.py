"""The NaN/inf guard of the training loop: skip a bad step with a warning, stop after too many in a row.

A non-finite loss is caught at the batch where it appears, before its backward: that batch changes no weight (and,
under AMP, the GradScaler skips steps whose gradients are not finite, as it always does). So the weights stay the
last finite ones, and `last.pt` written when the guard stops the run holds them (engine/faults.py).
"""

from __future__ import annotations

import torch

from ultralytics.errors import NonFiniteLossError
from ultralytics.utils import LOGGER


class StepGuard:
    """Counts consecutive non-finite steps; `bad()` warns, and raises NonFiniteLossError at the `limit`-th in a row.

    `advice` is appended to the final error (the usual causes and what to try).
    """

    def __init__(self, limit: int = 10, advice: str = "") -> None:
        self.limit, self.advice = limit, advice
        self.bad_steps = 0

    def ok(self) -> None:
        """A finite step: the count starts again."""
        self.bad_steps = 0

    def check_loss(self, loss: torch.Tensor, finite: bool | None, where: str) -> bool:
        """Whether the step may go on: False (after `bad()`) for a NaN/inf loss. `finite` is the verdict over all
        DDP ranks when given (so that every rank skips the same batches), else `loss` is checked here."""
        if bool(torch.isfinite(loss).all()) if finite is None else finite:
            self.ok()
            return True
        self.bad(f"non-finite loss ({float(loss.detach().sum())}) at {where}")
        return False

    def bad(self, what: str) -> None:
        """Record a non-finite step described by `what` (e.g. 'non-finite loss (nan) at epoch 2 batch 5')."""
        self.bad_steps += 1
        LOGGER.warning(f"WARNING ⚠️ {what}; skipping this optimizer step ({self.bad_steps}/{self.limit})")
        if self.bad_steps >= self.limit:
            raise NonFiniteLossError(f"training stopped: loss or gradients were NaN/inf for {self.limit} consecutive "
                                     f"batches, the last one {what}. {self.advice}".rstrip())

"""The NaN/inf guard of the training loop: skip a bad step with a warning, stop after too many in a row."""

from __future__ import annotations

from ultralytics.errors import NonFiniteLossError
from ultralytics.utils import LOGGER


class StepGuard:
    """Counts consecutive non-finite steps; `bad()` warns, and raises NonFiniteLossError at the `limit`-th in a row.

    `advice` is appended to the final error (what to try, where the last good weights are).
    """

    def __init__(self, limit: int = 10) -> None:
        self.limit = limit
        self.bad_steps = 0

    def ok(self) -> None:
        """A finite step: the count starts again."""
        self.bad_steps = 0

    def bad(self, what: str, advice: str = "") -> None:
        """Record a non-finite step described by `what`."""
        self.bad_steps += 1
        LOGGER.warning(f"WARNING ⚠️ {what}; skipping this optimizer step ({self.bad_steps}/{self.limit})")
        if self.bad_steps >= self.limit:
            raise NonFiniteLossError(f"training stopped: loss or gradients were NaN/inf for {self.limit} consecutive "
                                     f"batches. {advice}".rstrip())

"""Checkpoints: this project's plain-data format, the allowlisted reader of published files, weight transfer.

`records` writes our format, `unpickler` is the restricted unpickler, `published` reads published files into our
format, `loading` turns any of them into a model. Errors are `ultralytics.errors.CheckpointError` and
`UnsafeCheckpointError`.
"""

from ultralytics.checkpoints.loading import (build_model_from_published, load_checkpoint, model_from_checkpoint,
                                             strip_optimizer, transfer_weights, weights_of)
from ultralytics.checkpoints.published import is_published_checkpoint, read_published_checkpoint
from ultralytics.checkpoints.records import FORMAT, atomic_save, make_checkpoint, plain, state_dict_of
from ultralytics.errors import CheckpointError, UnsafeCheckpointError

__all__ = ["FORMAT", "CheckpointError", "UnsafeCheckpointError", "atomic_save", "build_model_from_published",
           "is_published_checkpoint", "load_checkpoint", "make_checkpoint", "model_from_checkpoint", "plain",
           "read_published_checkpoint", "state_dict_of", "strip_optimizer", "transfer_weights", "weights_of"]

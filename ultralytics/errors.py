"""Errors a user can cause: the `UserError` family.

The `yolo` command prints any `UserError` as one line and exits with status 2; every other exception is a bug
and keeps its traceback. Each class also derives from the built-in type that the published package raises in the
same situation (ValueError, FileNotFoundError, ...), so `except ValueError` in user code keeps working.
This module imports nothing from the package: every layer may raise these.
"""

from __future__ import annotations


class UserError(Exception):
    """Something the user gave (a key, a value, a file, a device) is not usable; the message says how to fix it."""


class ConfigError(UserError, ValueError):
    """A configuration key or value is not valid."""


class ConfigTypeError(ConfigError, TypeError):
    """A configuration value has the wrong type (the published package raises TypeError here)."""


class UnknownKeyError(ConfigError, SyntaxError):
    """A configuration key that does not exist (the published package raises SyntaxError here)."""

    def __init__(self, message: str) -> None:
        # ValueError precedes SyntaxError in the MRO; its __init__ would leave .msg (and so str()) unset.
        SyntaxError.__init__(self, message)


class ModelConfigError(UserError, ValueError):
    """A model yaml (or a module's arguments in it) is not valid."""


class DatasetError(UserError, ValueError):
    """A dataset yaml, its folders or its labels are not usable."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class CheckpointError(UserError, ValueError):
    """A checkpoint file cannot be read or does not fit the model."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint names a class or function outside the allowlist; nothing in it was run."""


class SourceError(UserError, ValueError):
    """A prediction source cannot be opened or read."""


class ExportError(UserError, ValueError):
    """An export format or export option is not available."""


class UnsupportedError(UserError, NotImplementedError):
    """A published feature this project does not implement (the message names the alternative)."""


class DDPError(UserError, RuntimeError):
    """A DDP worker failed; the message names the rank, its log and the run folder to resume from."""


class NonFiniteLossError(UserError, FloatingPointError):
    """Training stopped because the loss or the gradients were NaN/inf for too many consecutive steps."""


class UnreadableSourceError(SourceError, OSError):
    """A prediction source named directly (not found in a folder, glob or list) is not a readable image or video."""


class FileWriteError(UserError, OSError):
    """A file could not be written (disk full, read-only folder); the message names the file, the free space and
    what was kept. `errno` and `filename` are those of the underlying OSError."""

    def __init__(self, message: str, errno: int | None = None, filename: str | None = None) -> None:
        OSError.__init__(self, message)
        self.errno, self.filename = errno, filename

    def __str__(self) -> str:  # OSError would format "[Errno n] ...: 'file'" once errno/filename are set
        return str(self.args[0])


class DeviceMemoryError(UserError, RuntimeError):
    """The GPU ran out of memory; the message names the batch size and imgsz to lower (or batch=-1)."""


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C (SIGINT) or SIGTERM after writing a resumable last.pt.

    A KeyboardInterrupt, not a UserError: code that stops on Ctrl-C keeps doing so. `exit_code` is the status a
    command should exit with (130 for SIGINT, 143 for SIGTERM, as a shell reports a process ended by the signal).
    """

    def __init__(self, message: str = "", exit_code: int = 130) -> None:
        super().__init__(message)
        self.exit_code = exit_code


__all__ = ["UserError", "ConfigError", "ConfigTypeError", "UnknownKeyError",
           "ModelConfigError", "DatasetError", "MissingFileError", "CheckpointError",
           "UnsafeCheckpointError", "SourceError", "ExportError", "UnsupportedError", "DDPError",
           "NonFiniteLossError", "UnreadableSourceError", "FileWriteError", "DeviceMemoryError",
           "TrainingInterrupted"]

"""User-facing errors: the CLI prints the message as one sentence and exits non-zero."""


class MicromixError(Exception):
    """A mistake the user can fix (bad input, missing data, infeasible budget).

    The message must be one clear sentence; the CLI prints it without a traceback.
    """


class UnsupportedOpError(MicromixError):
    """The traced model uses an operation micromix cannot quantize or export."""


class InfeasibleBudgetError(MicromixError):
    """Even 2 bits everywhere do not fit the budget."""


class DatasetNotFoundError(MicromixError):
    """The dataset files are missing or unreadable."""


class PolicyError(MicromixError):
    """A policy file is malformed or does not match the model."""


class CheckpointError(MicromixError):
    """A checkpoint is missing, corrupt, or from another model."""


class OverflowError32(MicromixError):
    """An integer intermediate left the int32 range in the integer reference."""


class RunDirError(MicromixError):
    """A run directory cannot be used: not empty, made by another command or other settings,
    or locked by another process."""


class StorageError(MicromixError):
    """Reading or writing a file failed (disk full, read-only, permissions): path and cause."""

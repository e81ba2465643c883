"""One error family whose messages are written to be read in ComfyUI's error dialog.

Every message names the node (or function) that raised it, what was wrong, with the
actual values, and what the user can do about it:

    MaskLowerFace: no face found in frames 12-40 (of 75). Give a face box, or lower min_confidence.
"""

from __future__ import annotations


class LipSyncError(Exception):
    """Base class of every error the pack raises on purpose."""


class InputError(LipSyncError, ValueError):
    """An input has the wrong shape, type, range or value."""


class PathError(LipSyncError, PermissionError):
    """A file name escapes the folder it must stay in, or does not exist."""


class MediaError(LipSyncError):
    """A media file is empty, corrupt, or lacks the stream we need."""


class SilentAudioError(MediaError):
    """The audio holds no signal above the noise floor."""


class LengthMismatchError(InputError):
    """Two inputs that must cover the same frames do not."""


class NoFaceError(LipSyncError):
    """No face was found where one is needed."""


class CheckpointError(LipSyncError):
    """A model checkpoint is unknown, corrupt, unsafe or does not match the architecture."""


class DependencyError(LipSyncError, ImportError):
    """An optional package needed by the chosen option is not installed."""

"""Typed errors of the model package, each with a stable ``code`` and a one-line message.

The gateway maps ``code`` to an API error; ``str(error)`` is safe to show to users: it says what is
wrong and why, without dumping decoder internals.
"""

from __future__ import annotations


class TempoError(Exception):
    """Base class. ``code`` is a stable machine-readable string."""

    code: str = "tempo_error"

    def __init__(self, message: str) -> None:
        # Keep messages to one line whatever the underlying library said.
        self.message = " ".join(str(message).split())
        super().__init__(self.message)


class CheckpointError(TempoError):
    """A checkpoint directory is missing, incomplete or not the expected layout."""

    code = "bad_checkpoint"


class InputError(TempoError):
    """The request's inputs cannot be processed (bad frames, question too long, bad options)."""

    code = "bad_input"


class VideoError(TempoError):
    """The uploaded video cannot be used."""

    code = "video_error"


class NotAVideoError(VideoError):
    """The file is not a media container at all (e.g. a text file named ``.mp4``)."""

    code = "not_a_video"


class NoVideoStreamError(VideoError):
    """The file is a media file but has no video stream (e.g. audio only)."""

    code = "no_video_stream"


class CorruptVideoError(VideoError):
    """The file looks like a video but cannot be decoded (truncated, damaged, unsupported codec)."""

    code = "corrupt_video"


class VideoTooLongError(VideoError):
    """The video is longer than the configured ``max_duration_s``."""

    code = "video_too_long"


class VideoTooLargeError(VideoError):
    """The file is bigger than the configured ``max_bytes``."""

    code = "video_too_large"

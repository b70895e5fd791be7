"""Errors a user can act on: the message says what went wrong and what to do."""


class DepthError(Exception):
    """Base class: shown to the user as is, without a traceback."""


class VideoError(DepthError):
    """The input video is missing, not a video, or cannot be decoded."""


class WeightsError(DepthError):
    """A checkpoint is missing, cannot be downloaded, or is not a valid checkpoint."""


class OutputError(DepthError):
    """The output folder cannot be created or written."""


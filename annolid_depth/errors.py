"""Errors a user can act on: the message says what went wrong and what to do."""


class DepthError(Exception):
    """Base class: shown to the user as is, without a traceback."""


class VideoError(DepthError):
    """The input video is missing, not a video, or cannot be decoded."""


class WeightsError(DepthError):
    """A checkpoint is missing, cannot be downloaded, or is not a valid checkpoint."""


class NonFiniteDepthError(DepthError):
    """The network gave NaN or infinite depth that a recomputation in FP32 could not avoid."""


class OutputError(DepthError):
    """The output folder cannot be created or written."""



def require_opencv() -> None:
    """OpenCV is needed but not a declared requirement: any OpenCV distribution provides `cv2`
    (Annolid brings opencv-contrib-python), and pip would install one over another. Where none
    is installed, say which to get instead of failing on the first `import cv2`."""
    import importlib.util

    if importlib.util.find_spec("cv2") is None:
        raise ImportError(
            "annolid-depth needs OpenCV and none is installed: pip install opencv-python-headless "
            "(or pip install 'annolid-depth[opencv]'); any OpenCV package provides it, opencv-contrib-python too",
            name="cv2",
        )

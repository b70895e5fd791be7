"""Per-frame depth for videos with the Video Depth Anything model family.

The names Annolid's code takes from its own depth package are here with Annolid's meaning, so
Annolid can prefer this engine with one import (docs/annolid-opt-in.patch):
`run_video_depth_anything` (Annolid's parameters, in its order), `download_weights` (the
downloader's command line: `download_weights(["--list"])`) and
`ensure_checkpoints(models, *, dest=None)`. They are imported on first use, so light entry
points (the weight downloader, the GUI's start-up) do not pay for loading torch.
"""
__version__ = "0.1.0"
__all__ = ["download_weights", "ensure_checkpoints", "run_video_depth_anything"]
_HOMES = {"run_video_depth_anything": "runner", "ensure_checkpoints": "weights", "download_weights": None}


def __getattr__(name):
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    from .errors import require_opencv

    if name == "run_video_depth_anything":
        require_opencv()
    if _HOMES[name] is None:  # a module that is also Annolid's callable of that name
        return importlib.import_module(f".{name}", __name__)
    return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)

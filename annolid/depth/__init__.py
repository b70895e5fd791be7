"""Per-frame depth for videos with the Video Depth Anything model family.

`run_video_depth_anything` is imported on first use, so light entry points (the weight
downloader, the GUI's start-up) do not pay for loading torch.
"""
__version__ = "0.1.0"
__all__ = ["run_video_depth_anything"]


def __getattr__(name):
    if name == "run_video_depth_anything":
        from .runner import run_video_depth_anything

        return run_video_depth_anything
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

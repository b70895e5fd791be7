"""Run by .venv-annolid's Python: what Annolid's environment looks like from inside, as one
JSON object on stdout (tests/test_beside_annolid.py reads it)."""
import importlib
import importlib.metadata as metadata
import json
import sys
import types

# Annolid's modules that import from its depth package, and its `annolid` command's launcher
ANNOLID_MODULES = ["annolid.gui.launcher", "annolid.gui.app", "annolid.gui.widgets.depth_manager", "annolid.depth.run",
                   "annolid.depth.video_depth_anything.util.blocks"]


def failure(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def where(name: str) -> dict:
    """Where `from annolid.depth import <name>` comes from."""
    try:
        value = getattr(importlib.import_module("annolid.depth"), name)
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        return {"error": failure(exc)}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__, "name": None, "file": value.__file__}
    return {"module": value.__module__, "name": value.__name__, "file": getattr(sys.modules.get(value.__module__), "__file__", None)}


seen = {"imports": {}}
try:  # first of all: whose OpenCV this is
    import cv2

    seen["cv2"] = {"version": cv2.__version__, "file": cv2.__file__}
except Exception as exc:  # noqa: BLE001
    seen["cv2"] = {"error": failure(exc)}
for name in ANNOLID_MODULES:
    try:
        importlib.import_module(name)
        seen["imports"][name] = "ok"
    except Exception as exc:  # noqa: BLE001
        seen["imports"][name] = failure(exc)
seen["download_weights"] = where("download_weights")
seen["run_video_depth_anything"] = where("run_video_depth_anything")
seen["console_scripts"] = {ep.name: [ep.value, ep.dist.name] for ep in metadata.entry_points(group="console_scripts")
                           if ep.name.startswith("annolid")}
seen["depth_engines"] = {ep.name: [ep.value, ep.dist.name] for ep in metadata.entry_points(group="annolid.depth_engines")}
print(json.dumps(seen))

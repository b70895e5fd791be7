"""Annolid's opt-in, `annolid_depth.for_annolid.prefer(own)`: this engine where it takes the
parameters of Annolid's own function, Annolid's otherwise, with one logged line and no
traceback. (Beside the real Annolid, with the patch applied: test_beside_annolid.py.)"""
import inspect
import logging
import sys
import types
from pathlib import Path

import pytest
import tomllib
from helpers import ANNOLID_ORDER

from annolid_depth import for_annolid
from annolid_depth.runner import run_video_depth_anything as ours

POSITIONAL = inspect.Parameter.POSITIONAL_OR_KEYWORD


def annolid_engine(names=ANNOLID_ORDER, keyword_only=()):
    """A function with the given signature, as another Annolid version's engine would have."""
    def own(*args, **kwargs):
        return "Annolid's own engine"

    parameters = [inspect.Parameter(names[0], POSITIONAL), inspect.Parameter(names[1], POSITIONAL)]
    parameters += [inspect.Parameter(name, POSITIONAL, default=None) for name in names[2:]]
    parameters += [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in keyword_only]
    own.__signature__ = inspect.Signature(parameters)
    return own


def warnings_of(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "annolid_depth.for_annolid"]


def test_annolids_signature_gets_this_engine_and_no_message(caplog):
    caplog.set_level(logging.DEBUG)
    assert for_annolid.prefer(annolid_engine()) is ours
    assert warnings_of(caplog) == []


def test_a_shorter_annolid_signature_is_served_too(caplog):
    """An older Annolid with fewer parameters: each is this engine's, at its place."""
    assert for_annolid.prefer(annolid_engine(ANNOLID_ORDER[:15])) is ours
    assert warnings_of(caplog) == []


@pytest.mark.parametrize("names, keyword_only, why", [
    (ANNOLID_ORDER[:4] + ["crop_box"] + ANNOLID_ORDER[4:], (),
     "parameter 5 is 'crop_box' in Annolid's engine and 'max_res' in this one"),
    ([*ANNOLID_ORDER, "fps_override"], (), "Annolid's parameter 23, 'fps_override', is not one of this engine's"),
    (ANNOLID_ORDER, ("tile_size",), "Annolid's keyword-only parameter 'tile_size' is not one of this engine's"),
])
def test_another_annolid_api_keeps_its_own_engine_with_one_line(caplog, names, keyword_only, why):
    own = annolid_engine(names, keyword_only)
    assert for_annolid.prefer(own) is own
    assert warnings_of(caplog) == [f"annolid-depth: Annolid's own depth engine stays in use: {why}"]
    assert caplog.records[-1].levelno == logging.WARNING


def test_an_engine_that_does_not_load_keeps_annolids_with_one_line(caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # no OpenCV: this engine refuses to load
    own = annolid_engine()
    assert for_annolid.prefer(own) is own
    (message,) = warnings_of(caplog)
    assert message.startswith("annolid-depth: Annolid's own depth engine stays in use: this engine did not load (ImportError: ")
    assert "pip install opencv-python-headless" in message and "\n" not in message


class BrokenModule(types.ModuleType):
    def __getattr__(self, name):
        raise OSError("libtorch_cpu.so: cannot open shared object file\n  (a broken torch)")


def test_a_many_line_error_is_told_in_one_line(caplog, monkeypatch):
    monkeypatch.setitem(sys.modules, "annolid_depth.runner", BrokenModule("annolid_depth.runner"))
    own = annolid_engine()
    assert for_annolid.prefer(own) is own
    assert warnings_of(caplog) == ["annolid-depth: Annolid's own depth engine stays in use: this engine did not load "
                                   "(OSError: libtorch_cpu.so: cannot open shared object file (a broken torch))"]


def test_a_function_without_a_signature_keeps_annolids(caplog):
    assert for_annolid.prefer(min) is min  # a builtin without a signature inspect can read
    (message,) = warnings_of(caplog)
    assert message.endswith("the parameters of Annolid's engine cannot be read "
                            "(ValueError: no signature found for builtin <built-in function min>)")


def test_the_entry_point_annolid_can_look_up_is_prefer():
    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["annolid.depth_engines"] == {"annolid-depth": "annolid_depth.for_annolid:prefer"}
    assert "annolid" not in project["scripts"]  # Annolid's command stays Annolid's

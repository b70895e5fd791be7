"""Annolid's opt-in: its depth feature runs this engine where the engine fits Annolid's call.

Annolid's `annolid/depth/__init__.py` keeps its own imports and adds (docs/annolid-opt-in.patch):

    try:
        from annolid_depth.for_annolid import prefer
    except ImportError:
        pass
    else:
        run_video_depth_anything = prefer(run_video_depth_anything)

`prefer` is also the entry point `annolid-depth` of the group `annolid.depth_engines`, for an
Annolid that looks engines up by group instead of by this package's name. Either way, Annolid's
own engine stays in use, with one logged warning and no traceback at Annolid's start, when this
engine does not import (a broken torch, no OpenCV) or does not take Annolid's parameters.
"""
from __future__ import annotations

import inspect
import logging
from typing import Callable

log = logging.getLogger(__name__)

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def prefer(own: Callable) -> Callable:
    """This package's `run_video_depth_anything` where it takes every parameter of `own`
    (Annolid's), its positional ones by name and in order; else `own`, and one logged line why."""
    try:
        from annolid_depth import run_video_depth_anything as ours

        our_signature = inspect.signature(ours)
    except Exception as exc:  # noqa: BLE001 - whatever breaks here must not stop Annolid's start
        _keep_own(f"this engine did not load ({type(exc).__name__}: {exc})")
        return own
    try:
        own_signature = inspect.signature(own)
    except (TypeError, ValueError) as exc:
        _keep_own(f"the parameters of Annolid's engine cannot be read ({type(exc).__name__}: {exc})")
        return own
    mismatch = _mismatch(own_signature, our_signature)
    if mismatch:
        _keep_own(mismatch)
        return own
    return ours


def _mismatch(own: inspect.Signature, ours: inspect.Signature) -> str | None:
    """Why `ours` cannot stand in for `own` in every call `own` accepts, or None."""
    own_positional = [p.name for p in own.parameters.values() if p.kind in _POSITIONAL]
    our_positional = [p.name for p in ours.parameters.values() if p.kind in _POSITIONAL]
    for position, name in enumerate(own_positional, 1):
        if position > len(our_positional):
            return f"Annolid's parameter {position}, {name!r}, is not one of this engine's"
        if our_positional[position - 1] != name:
            return f"parameter {position} is {name!r} in Annolid's engine and {our_positional[position - 1]!r} in this one"
    by_keyword = {p.name for p in ours.parameters.values() if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    for parameter in own.parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and parameter.name not in by_keyword:
            return f"Annolid's keyword-only parameter {parameter.name!r} is not one of this engine's"
    return None


def _keep_own(reason: str) -> None:
    log.warning("annolid-depth: Annolid's own depth engine stays in use: %s", " ".join(reason.split()))

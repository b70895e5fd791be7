"""Files and folders of a run's outputs: the temporary names they are written under, putting
them in place, and checking that a final name can take them.

Everything is written under `<final name>.partial` and renamed into place only once complete,
so a failed or killed run never leaves a half-written file under a final name.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..errors import OutputError

log = logging.getLogger(__name__)


def partial(path: Path) -> Path:
    """The temporary name a file or folder is written under until it is complete."""
    return path.with_name(path.name + ".partial")


def publish(tmp: Path, final: Path) -> None:
    """Put a finished file or folder in place of the previous one (a symbolic link there is
    replaced, never followed)."""
    if final.is_symlink():
        log.warning("%s is a symbolic link; replacing the link (not what it points to) with this run's output", final)
        final.unlink()
    if final.is_dir():  # a folder cannot be replaced in one step
        old = final.with_name(final.name + ".old")
        remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old)
    else:
        os.replace(tmp, final)


def remove(path: Path) -> None:
    """Delete a file or a folder; a symbolic link is removed itself, never followed."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def cannot_write(path: Path, exc: OSError) -> OutputError:
    existing = next((folder for folder in path.parents if folder.exists()), None)
    if existing is not None and not existing.is_dir():
        return OutputError(f"{existing} is a file, not a folder; choose another output_dir")
    return OutputError(f"cannot write {path} ({exc.strerror or exc}); choose another output_dir")


def claim_file(final: Path, keep: bool = False) -> Path:
    """Check that `final` can become this output file and that its folder takes files;
    returns the temporary name, cleared of an earlier run's leftovers unless `keep`."""
    if final.is_dir():
        raise OutputError(f"{final} is a folder, but this output is a file; move it or choose another output_dir")
    tmp = own_partial(final, keep)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        if not keep:
            remove(tmp)
        with open(tmp, "ab"):
            pass
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


def claim_folder(final: Path, keep: bool = False) -> Path:
    """Check that `final` can become this output folder; returns the temporary folder,
    emptied unless `keep`."""
    if final.exists() and not final.is_dir():
        raise OutputError(f"{final} is a file, but this output is a folder; move the file or choose another output_dir")
    tmp = own_partial(final, keep)
    try:
        if not keep:
            remove(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise cannot_write(tmp, exc) from None
    return tmp


def own_partial(final: Path, keep: bool) -> Path:
    """The temporary name of `final`, as a name of this folder's own: a symbolic link there
    (to anything) is removed with a warning, never written through; when `keep` (resuming
    from it) that is a ValueError, which starts the run over."""
    tmp = partial(final)
    if tmp.is_symlink():
        log.warning("%s is a symbolic link, not this run's own output; removing the link (not what it points to)", tmp)
        tmp.unlink()
        if keep:
            raise ValueError(f"{tmp} was a symbolic link")
    return tmp

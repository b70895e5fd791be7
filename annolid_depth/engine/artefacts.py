"""The files an export leaves in its folder, and the checks that let it write nothing but its
own names there and use nothing that changed since it was written.

An export folder holds `export.json`, the four graphs and `openvino/` (the compiled graphs
OpenVINO caches there, one folder per precision). An export is made whole in a hidden staging
folder inside its folder and moved into place file by file, `export.json` last: no other file
of the folder is ever touched. `export.json` records each graph's size and SHA-256, checked
before the graphs are used; `verified.json`, written last beside OpenVINO's compiled blobs,
records theirs and the graphs they were compiled from.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import DepthError
from ..weights import file_sha256

GRAPHS = ("encoder", "temporal", "step", "per_image")
SPEC = "export.json"
RUNTIME_CACHE = "openvino"  # the subfolder a runtime compiles the graphs into
STAGING = ".annolid-export-"  # prefix of the hidden folder an export is made in
OWN_FILES = (SPEC, *(f"{name}.onnx" for name in GRAPHS))
SIDECAR = "verified.json"
SIDECAR_STAGING = f".{SIDECAR}."  # the temporary name `write_json_whole` writes it under


class ExportError(DepthError):
    """An export is missing, damaged, was made from another checkpoint or by another version,
    or cannot be written where it was asked for."""


# --------------------------------------------------------------------------- where an export may go


def _missing_folders(out_dir: Path) -> list[Path]:
    """The folders from `out_dir` up that do not exist yet, deepest first; a file where a folder
    must be is refused."""
    missing = []
    for path in (out_dir, *out_dir.parents):
        if path.is_dir():
            return missing
        if path.exists() or path.is_symlink():
            where = "" if path == out_dir else f"{out_dir}: "
            raise ExportError(f"{where}{path} is a file; choose a folder for the graphs")
        missing.append(path)
    return missing


def _foreign(out_dir: Path) -> tuple[list[str], bool]:
    """Names in `out_dir` that an export does not write, and whether an export is there."""
    foreign, own = [], False
    with os.scandir(out_dir) as entries:
        for entry in entries:
            folder = entry.is_dir(follow_symlinks=False)
            if entry.name in OWN_FILES and not folder:
                own = True
            elif not ((entry.name == RUNTIME_CACHE or entry.name.startswith(STAGING)) and folder):
                foreign.append(entry.name)
    return sorted(foreign), own


def check_target(out_dir: str | Path, overwrite: bool = False) -> list[Path]:
    """Make sure an export may be written to `out_dir`: a folder (created, parents too, when
    missing) that we can write in, holding nothing but an earlier export's own files, and no
    export at all unless `overwrite`. Returns the folders it created, deepest first; an
    ExportError says what is wrong and what to do."""
    out_dir = Path(out_dir)
    missing = _missing_folders(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"cannot create {out_dir} ({exc.strerror or exc}); choose a folder you can write to") from None
    try:
        os.rmdir(tempfile.mkdtemp(prefix=STAGING, dir=out_dir))
    except OSError as exc:
        remove_created(missing)
        raise ExportError(f"cannot write in {out_dir} ({exc.strerror or exc}); choose a folder you can write to") from None
    foreign, own = _foreign(out_dir)
    if foreign:
        listed = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
        raise ExportError(f"{out_dir} holds other files ({listed}); choose an empty or new folder")
    if own and not overwrite:
        raise ExportError(f"{out_dir} holds an export already; pass --overwrite to replace its graphs")
    return missing


def remove_created(folders: list[Path]) -> None:
    """Remove the folders `check_target` created, deepest first, where they are still empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def staging_folder(out_dir: Path) -> Path:
    return Path(tempfile.mkdtemp(prefix=STAGING, dir=out_dir))


def place(staging: Path, out_dir: Path) -> None:
    """Move an export made whole in `staging` into `out_dir`: the old `export.json` goes first
    (a half-replaced set is never described as whole), the graphs next, the new one last."""
    (out_dir / SPEC).unlink(missing_ok=True)
    for name in (*OWN_FILES[1:], SPEC):
        os.replace(staging / name, out_dir / name)
    shutil.rmtree(staging)


# --------------------------------------------------------------------------- the graphs' checksums


def file_facts(path: Path) -> dict:
    """What `export.json` records of a graph's file."""
    return {"bytes": path.stat().st_size, "sha256": file_sha256(path)}


def recorded(spec, name: str) -> dict | None:
    """What `export.json` (read as `spec`) records of a graph's file, when it records a hash."""
    graphs = spec.get("graphs") if isinstance(spec, dict) else None
    facts = graphs.get(name) if isinstance(graphs, dict) else None
    return facts if isinstance(facts, dict) and isinstance(facts.get("sha256"), str) else None


def verify_graphs(folder: Path, spec: dict, redo: str) -> None:
    """Each graph's file has the size and SHA-256 `export.json` records for it, else an
    ExportError naming the file (`redo` says how to export again)."""
    for name in GRAPHS:
        path = Path(folder) / f"{name}.onnx"
        facts = recorded(spec, name)
        if facts is None:
            raise ExportError(f"{path} has no checksum in {SPEC} (exported by an earlier version); {redo}")
        try:
            same = path.stat().st_size == facts.get("bytes") and file_sha256(path) == facts["sha256"].lower()
        except FileNotFoundError:
            raise ExportError(f"{path} is missing; {redo}") from None
        except OSError as exc:
            raise ExportError(f"{path} cannot be read ({exc.strerror or exc}); {redo}") from None
        if not same:
            raise ExportError(f"{path} does not match its checksum in {SPEC} (damaged or changed); {redo}")


def graph_digests(folder: Path) -> dict[str, str]:
    """Each graph's SHA-256: as `export.json` records it (checked when the graphs were
    loaded), else read from the file."""
    try:
        spec = json.loads((Path(folder) / SPEC).read_text())
    except (OSError, ValueError):
        spec = None
    return {name: facts["sha256"].lower() if (facts := recorded(spec, name)) else file_sha256(Path(folder) / f"{name}.onnx")
            for name in GRAPHS}


# --------------------------------------------------------------------------- a runtime's compiled files


class CompiledFiles:
    """A runtime's cache folder of compiled graphs, trusted only while `verified.json` vouches
    for every file in it and for the graphs they were compiled from. `usable()` before the
    runtime compiles: an unverified folder loses its `*.blob` files (regular files only; no
    other name is deleted, no link followed), so the runtime compiles afresh. `seal()` after:
    the files as they are now, recorded."""

    def __init__(self, folder: Path, graphs: dict[str, str]):
        self.folder, self.graphs = Path(folder), graphs
        self.verified: dict | None = None

    def _files(self) -> dict[str, os.DirEntry]:
        with os.scandir(self.folder) as entries:
            return {e.name: e for e in entries if e.is_file(follow_symlinks=False)
                    and e.name != SIDECAR and not e.name.startswith(SIDECAR_STAGING)}

    def _state(self) -> dict[str, tuple[int, int]]:
        return {name: (e.stat().st_size, e.stat().st_mtime_ns) for name, e in self._files().items()}

    def _recorded(self) -> dict | None:
        try:
            record = json.loads((self.folder / SIDECAR).read_text())
        except (OSError, ValueError):
            return None
        files = record.get("files") if isinstance(record, dict) else None
        return files if isinstance(files, dict) and record.get("graphs") == self.graphs else None

    def usable(self) -> bool:
        """Whether the runtime may cache in this folder (not when it, its parent or a blob in it
        is a link, or it cannot be made); unverified blobs are deleted first."""
        if self.folder.is_symlink() or self.folder.parent.is_symlink():
            return False
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if any(name.endswith(".blob") and os.path.islink(self.folder / name) for name in os.listdir(self.folder)):
                return False
            recorded, files = self._recorded(), self._files()
            if recorded is not None and set(recorded) == set(files) and all(
                    file_sha256(e.path) == recorded[name] for name, e in files.items()):
                self.verified = self._state()
                return True
            for name, entry in files.items():
                if name.endswith(".blob"):
                    os.unlink(entry.path)
        except OSError:
            return False
        return True

    def seal(self) -> None:
        """Record the folder's files (unless they are the verified ones, unchanged), written last."""
        if self.verified is not None and self._state() == self.verified:
            return
        record = {"graphs": self.graphs, "files": {name: file_sha256(e.path) for name, e in sorted(self._files().items())}}
        write_json_whole(self.folder / SIDECAR, record)


def write_json_whole(path: Path, document: dict) -> None:
    """`path` replaced whole: written under a temporary name beside it (`.<name>.*.tmp`), then
    renamed, so a reader never sees part of it."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(document, stream, indent=2)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise

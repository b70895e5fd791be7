"""The published checkpoints: which exist, where they live on disk, how they get there and load.

Downloads go through `huggingface_hub` into a hidden staging folder beside the final file and
are renamed into place only once complete, so an interrupted download never passes for a
checkpoint. Loading never runs code from a file: `.pth` files are read with
`torch.load(weights_only=True)`, `.safetensors` files hold nothing but tensors.
"""
from __future__ import annotations

import functools
import hashlib
import logging
import os
import pickle
import re
import shlex
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import constants as hub_constants
from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url
from safetensors.torch import load_file as load_safetensors

from .errors import WeightsError
from .model import ENCODERS, encoder_config
from .settings import user_cache

log = logging.getLogger(__name__)

HUB_URL = "https://huggingface.co"
FOLDER_ENV = "ANNOLID_DEPTH_CHECKPOINTS"
PACKAGE_CHECKPOINTS = Path(__file__).resolve().parent / "checkpoints"
DOWNLOAD_COMMAND = "python -m annolid_depth.download_weights"

# Each encoder's size as the Hub names it, and its checkpoint's size in MB (float32 parameters:
# 29 M, 115 M, 385 M), by encoder name: the registry below has a row for each of the model's.
_PUBLISHED = {"vits": ("Small", 116), "vitb": ("Base", 458), "vitl": ("Large", 1538)}
_ENCODER_BY_WIDTH = {cfg.embed_dim: name for name, cfg in ENCODERS.items()}
_TRUE_VALUES = {"1", "on", "yes", "true"}  # as huggingface_hub reads boolean variables
_SHA256 = re.compile(r"[0-9a-f]{64}")  # the Hub's etag of a file kept in Git LFS is its SHA-256


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint on the Hugging Face Hub."""

    key: str
    repo_id: str
    filename: str
    encoder: str
    metric: bool
    size_mb: int  # approximate; tells the user what a download costs before it starts

    @property
    def depth_kind(self) -> str:
        """Metric models give metres; relative ones give disparity without a unit."""
        return "metric" if self.metric else "relative"

    def url(self, endpoint: str = HUB_URL) -> str:
        return f"{endpoint}/{self.repo_id}/resolve/main/{self.filename}"


def checkpoint_key(encoder: str, metric: bool = False) -> str:
    """Registry key of the checkpoint for this encoder and depth kind."""
    encoder_config(encoder)  # an unknown name gets the model's error, which lists the known ones
    return f"{'metric_' if metric else ''}video_depth_anything_{encoder}"


def _registry_entry(encoder: str, metric: bool) -> Checkpoint:
    key = checkpoint_key(encoder, metric)
    hub_size, size_mb = _PUBLISHED[encoder]
    repo_id = f"depth-anything/{'Metric-' if metric else ''}Video-Depth-Anything-{hub_size}"
    return Checkpoint(key, repo_id, f"{key}.pth", encoder, metric, size_mb)


CHECKPOINTS: dict[str, Checkpoint] = {
    entry.key: entry for entry in (_registry_entry(e, m) for m in (False, True) for e in ENCODERS)
}


def get_checkpoint(name: str) -> Checkpoint:
    """Registry entry by key; case-insensitive, and a trailing `.pth` is accepted."""
    key = name.strip().lower().removesuffix(".pth")
    try:
        return CHECKPOINTS[key]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(CHECKPOINTS)}") from None


# --------------------------------------------------------------------------- folders


def user_checkpoint_dir() -> Path:
    """Per-user folder, for installs whose package folder is read-only."""
    return user_cache("checkpoints")


def checkpoint_dir(root: str | Path | None = None) -> Path:
    """Folder downloads go to: `root`, else $ANNOLID_DEPTH_CHECKPOINTS, else the package's own
    folder when writable (a source checkout), else the per-user folder (a system install)."""
    if root:
        return Path(root).expanduser()
    if os.environ.get(FOLDER_ENV):
        return Path(os.environ[FOLDER_ENV]).expanduser()
    return PACKAGE_CHECKPOINTS if _writable(PACKAGE_CHECKPOINTS) else user_checkpoint_dir()


def checkpoint_path(key: str, root: str | Path | None = None) -> Path:
    """Where a checkpoint is, or will be once downloaded. With no folder chosen, a file already
    in the package folder or the per-user folder counts wherever it is."""
    filename = get_checkpoint(key).filename
    if not root and not os.environ.get(FOLDER_ENV):
        for folder in (PACKAGE_CHECKPOINTS, user_checkpoint_dir()):
            if (folder / filename).is_file():
                return folder / filename
    return checkpoint_dir(root) / filename


def _writable(folder: Path) -> bool:
    """True when `folder` is writable, or could be created where it is missing."""
    existing = folder
    while not existing.exists():
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


# --------------------------------------------------------------------------- downloads


def hub_endpoint() -> str:
    """huggingface_hub reads HF_ENDPOINT once, at import; read it per call so a later change counts."""
    return (os.environ.get("HF_ENDPOINT") or HUB_URL).rstrip("/")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE_VALUES


@contextmanager
def _hub_online():
    """huggingface_hub froze HF_HUB_OFFLINE at import; the caller has checked the variable as it
    is now, so let the library reach the network for this one download."""
    frozen = hub_constants.HF_HUB_OFFLINE
    hub_constants.HF_HUB_OFFLINE = False
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = frozen


def ensure_checkpoint(
    encoder: str, metric: bool = False, root: str | Path | None = None, download: bool = True
) -> Path:
    """The checkpoint file for this model, downloaded on first use."""
    key = checkpoint_key(encoder, metric)
    path = checkpoint_path(key, root)
    if path.is_file():
        return path
    if not download:
        raise WeightsError(f"checkpoint {path.name} is not in {path.parent}.\n{_how_to_get(CHECKPOINTS[key], path.parent, root)}")
    return download_checkpoint(key, root)


def ensure_checkpoints(models: Sequence[str], *, dest: str | Path | None = None) -> None:
    """Annolid's call: download each named checkpoint (registry keys) that is not on disk yet,
    into `dest` (default: the usual folder, see `checkpoint_dir`). An unknown name is a
    ValueError before anything downloads."""
    for entry in [get_checkpoint(name) for name in models]:
        download_checkpoint(entry.key, dest)


def download_checkpoint(key: str, root: str | Path | None = None) -> Path:
    """Fetch one checkpoint from the Hub unless it is already on disk; returns its path."""
    entry = get_checkpoint(key)
    target = checkpoint_path(entry.key, root)
    if target.is_file():
        return target
    if _offline():
        reason = "offline mode is on (HF_HUB_OFFLINE is set)"
        raise WeightsError(f"cannot download {entry.filename}: {reason}.\n{_how_to_get(entry, target.parent, root)}")
    endpoint = hub_endpoint()
    token = os.environ.get("HF_HUB_TOKEN") or None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with _hub_online(), tempfile.TemporaryDirectory(prefix=f".{entry.key}.", suffix=".download", dir=target.parent) as staging:
            # One quick look first: on a dead connection hf_hub_download retries for half a minute.
            url = hf_hub_url(entry.repo_id, entry.filename, endpoint=endpoint)
            published = get_hf_file_metadata(url, token=token, endpoint=endpoint).etag or ""
            staged = Path(hf_hub_download(entry.repo_id, entry.filename, local_dir=staging, endpoint=endpoint, token=token))
            digest = checkpoint_sha256(staged)
            if _SHA256.fullmatch(published) and digest != published:
                raise DamagedDownload(f"the downloaded file's SHA-256 is {digest}, the Hub's is {published}: try again")
            record = sha256_record(staged)
            record.write_text(f"{digest}  {entry.filename}\n", encoding="utf-8")
            os.replace(record, sha256_record(target))
            os.replace(staged, target)
    except Exception as err:
        raise WeightsError(
            f"could not download {entry.filename} from the Hugging Face Hub repo {entry.repo_id} "
            f"({endpoint}): {_why_download_failed(err)}.\n{_how_to_get(entry, target.parent, root)}"
        ) from err
    return target


class DamagedDownload(Exception):
    """The bytes that arrived are not the file the Hub published."""


def _why_download_failed(err: Exception) -> str:
    if isinstance(err, DamagedDownload):
        return str(err)
    status = getattr(getattr(err, "response", None), "status_code", None)
    if status in (401, 403):
        return f"access refused (HTTP {status}); if the repo needs a login, set HF_HUB_TOKEN to a token that can read it"
    if status == 404:
        return "no such file on the server (HTTP 404)"
    if status is not None:
        return f"the server answered HTTP {status}"
    detail = str(err).strip().splitlines()
    return f"{type(err).__name__}: {detail[0]}" if detail else type(err).__name__


def _how_to_get(entry: Checkpoint, folder: Path, root: str | Path | None) -> str:
    command = f"{DOWNLOAD_COMMAND} --model {entry.key}"
    if root:
        command += f" --dest {shlex.quote(str(folder))}"
    return (
        f"To get it by hand, download\n  {entry.url(hub_endpoint())}\n"
        f"and put it in\n  {folder}\n"
        f"or, once the Hub can be reached, run\n  {command}"
    )


# --------------------------------------------------------------------------- loading

_WRAPPER_KEYS = ("model", "state_dict")  # how training scripts commonly nest the weights
_PARALLEL_PREFIX = "module."  # left by torch.nn.DataParallel / DistributedDataParallel


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, read without running any code it may carry."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    verify_checkpoint(path)
    try:
        if path.suffix == ".safetensors":
            content = load_safetensors(path, device="cpu")
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"cannot read checkpoint {path}: {_why_unreadable(path, err)}") from err
    return _as_state_dict(content, path)


def _why_unreadable(path: Path, err: Exception) -> str:
    if path.stat().st_size == 0:
        return "the file is empty"
    if path.suffix == ".safetensors":
        return f"not a valid safetensors file, perhaps truncated ({err})"
    with path.open("rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04" and head[:1] != b"\x80":  # neither a PyTorch zip archive nor the older pickle format
        return "this is not a PyTorch checkpoint"
    if isinstance(err, pickle.UnpicklingError) and "weights only" in str(err).lower():
        return "it holds Python objects besides tensors, and unpickling them could run code; refusing to load it"
    return "the file is truncated or corrupt (an interrupted download?); delete it and fetch it again"


def _as_state_dict(content: object, path: Path) -> dict[str, torch.Tensor]:
    """Unwrap the nestings training scripts add around a plain state dict."""
    while isinstance(content, dict) and not _all_tensors(content):
        inner = next((content[k] for k in _WRAPPER_KEYS if isinstance(content.get(k), dict)), None)
        if inner is None:
            break
        content = inner
    if not isinstance(content, dict) or not content:
        what = "an empty dict" if isinstance(content, dict) else f"a {type(content).__name__}"
        raise WeightsError(f"{path} is not a checkpoint: it holds {what}, not named tensors")
    if not _all_tensors(content):
        others = [str(k) for k, v in content.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
        raise WeightsError(f"{path} is not a plain state dict: {_few(others)} are not named tensors")
    if all(k.startswith(_PARALLEL_PREFIX) for k in content):
        content = {k[len(_PARALLEL_PREFIX):]: v for k, v in content.items()}
    return content


def _all_tensors(content: dict) -> bool:
    return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in content.items())


def load_weights(model: torch.nn.Module, path: str | Path) -> None:
    """Load a checkpoint into `model`, saying plainly what does not fit instead of a raw key diff."""
    path = Path(path)
    state = read_state_dict(path)
    expected = model.state_dict()
    found, wanted = _encoder_of(state), _encoder_of(expected)
    if found and wanted and found != wanted:
        raise WeightsError(
            f"{path} is a {found} checkpoint, but encoder {wanted} was asked for; "
            f"choose encoder {found!r}, or a {wanted} checkpoint"
        )
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(state[k].shape)} instead of {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = [
        f"{len(names)} {label}: {_few(names)}"
        for label, names in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", reshaped))
        if names
    ]
    if problems:
        raise WeightsError(f"{path} does not fit the {wanted or 'requested'} network: {'; '.join(problems)}")
    model.load_state_dict(state, strict=True)
    record_first_hash(path)


def record_first_hash(path: Path) -> None:
    """A checkpoint without a `.sha256` (placed by hand, the offline route): its hash as it
    first loaded is recorded beside it, so that every later load checks it as a download's
    is checked. A folder that cannot be written in gets a warning, and the load goes on."""
    record = sha256_record(path)
    if record.exists():
        return
    staged = record.with_name(f".{record.name}.{os.getpid()}.tmp")
    try:
        staged.write_text(f"{checkpoint_sha256(path)}  {path.name}\n", encoding="utf-8")
        os.replace(staged, record)
    except OSError as exc:
        staged.unlink(missing_ok=True)
        log.warning("cannot record the SHA-256 of %s in %s (%s); it will not be checked on later loads",
                    path.name, record, exc.strerror or exc)


def _encoder_of(state: dict[str, torch.Tensor]) -> str | None:
    """The encoder a state dict belongs to, told by the width of its class token."""
    cls_token = state.get("pretrained.cls_token")
    return None if cls_token is None else _ENCODER_BY_WIDTH.get(cls_token.shape[-1])


def file_sha256(path: str | Path) -> str:
    """The file's SHA-256, read afresh."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        while chunk := stream.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


@functools.lru_cache(maxsize=16)
def _sha256(path: str, size: int, modified_ns: int) -> str:
    return file_sha256(path)


def checkpoint_sha256(path: str | Path) -> str:
    """The file's SHA-256 (the Hub's name for a checkpoint's content), computed once per
    process for a given size and modification time."""
    stat = Path(path).stat()
    return _sha256(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def sha256_record(path: Path) -> Path:
    """Where a download records its checkpoint's SHA-256, in `sha256sum` format."""
    return path.with_name(path.name + ".sha256")


def recorded_sha256(record: Path) -> str:
    """The hash in a `sha256sum`-format file (lower-case; `sha256sum -c` takes either case),
    or a WeightsError saying what is wrong with the file and what to do."""
    fix = (f"delete {record} and download the checkpoint again, or write its hash there with "
           f"`sha256sum {record.with_suffix('').name} > {record.name}`")
    try:
        fields = record.read_bytes().decode("utf-8").split()
    except (UnicodeDecodeError, OSError) as exc:
        reason = "is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else f"cannot be read ({exc.strerror or exc})"
        raise WeightsError(f"checksum file {record} {reason}; {fix}") from None
    if not fields:
        raise WeightsError(f"checksum file {record} is empty; {fix}")
    digest = fields[0].lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise WeightsError(f"checksum file {record} does not start with a SHA-256 (64 hex digits); {fix}")
    return digest


def verify_checkpoint(path: Path) -> None:
    """A checkpoint must still have the SHA-256 recorded at download (or, for one placed by
    hand, at its first load): damaged bytes inside a tensor would load without complaint and
    give meaningless depth."""
    record = sha256_record(path)
    if not record.is_file():
        return
    recorded = recorded_sha256(record)
    digest = checkpoint_sha256(path)
    if digest != recorded:
        try:
            again = f"run\n  {DOWNLOAD_COMMAND} --model {get_checkpoint(path.name).key} --dest {shlex.quote(str(path.parent))}"
        except ValueError:
            again = "download it again"
        raise WeightsError(
            f"checkpoint {path} is damaged: its SHA-256 is {digest}, but was {recorded} when it was downloaded or first loaded "
            f"(recorded in {record.name}). Delete both files and re-download it: {again}\n"
            f"(If you replaced the checkpoint on purpose, delete {record.name}.)"
        )


def _few(names: list[str], shown: int = 3) -> str:
    listed = ", ".join(names[:shown])
    return listed if len(names) <= shown else f"{listed} and {len(names) - shown} more"

"""Where the network runs and in which precision."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import sys

import torch

from ..errors import NonFiniteDepthError

log = logging.getLogger(__name__)

# Precisions each device type runs well. FP32 first: it is the reference's numbers.
SUPPORTED = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16"), "mps": ("fp32", "fp16")}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}
CPU_TOKENS = 4096  # tokens per network call on a CPU: GEMMs run near their peak and activations stay in cache


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else cuda -> mps -> cpu."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ValueError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU; choose the cpu (device='cpu', --device cpu)")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for, but it is not available here; choose the cpu (device='cpu', --device cpu)")
        if device.type not in SUPPORTED:
            raise ValueError(f"device {requested!r} is not supported; use cpu, cuda or mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def per_call(device: torch.device, item_tokens: int) -> int | None:
    """How many items (images, or pixels' frame sequences) of `item_tokens` tokens each the
    network takes in one call on `device`: about CPU_TOKENS tokens' worth on a CPU, since
    larger activations fall out of the caches (bench/bench_model.py); None, all at once, on a GPU."""
    return max(1, CPU_TOKENS // item_tokens) if device.type == "cpu" else None


def cpu_runs_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX); elsewhere torch emulates it,
    about 30x slower than fp32."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in probes)


def pick_precision(device: torch.device, fp32: bool = False, precision: str | None = None) -> str:
    """`precision` wins; else FP32 when asked or on CPU (exact and, there, not slower), else FP16."""
    if precision is None:
        precision = "fp32" if fp32 or device.type == "cpu" else "fp16"
    allowed = SUPPORTED[device.type]
    if precision not in allowed:
        raise ValueError(f"precision {precision!r} is not available on {device.type}; choose one of {', '.join(allowed)}")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise ValueError("this GPU does not run bf16; choose fp16 or fp32")
    if precision == "bf16" and device.type == "cpu" and not cpu_runs_bf16():
        raise ValueError("this CPU has no bf16 arithmetic (AVX512-BF16 or AMX), so bf16 would be far slower; use fp32")
    return precision


def autocast(device: torch.device, precision: str):
    """The reference runs reduced precision through autocast; FP32 runs plain."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])


@contextlib.contextmanager
def weights_in_fp32(model, precision: str):
    """The model's weights in float32 for a while (a weight held in fp16 or bf16 is exact in
    float32, and back again), then held in `precision` again."""
    if precision == "fp32":
        yield
        return
    model.float()
    try:
        yield
    finally:
        model.hold_weights_in(DTYPES[precision])


class FiniteDepth:
    """Runs the network on a window or group of frames and makes sure every depth value is
    finite. Reduced precision can overflow inside the temporal attention and the head (NaN
    or black frames): such a window is recomputed in FP32, with a warning that counts them.
    In FP32 a non-finite value means the weights or the input are broken: the run stops."""

    def __init__(self, model, device: torch.device, precision: str):
        self.model, self.device, self.precision = model, device, precision
        self.recomputed = 0

    def __call__(self, compute, frames: str):
        """`compute()` -> (depth at network size, anything else), run in this run's precision,
        again in FP32 when its depth is not finite; `frames` names them in messages."""
        with torch.no_grad(), autocast(self.device, self.precision):
            result = compute()
        if bool(torch.isfinite(result[0]).all()):
            return result
        if self.precision != "fp32" and not isinstance(self.model, torch.nn.Module):  # a compiled backend
            raise NonFiniteDepthError(
                f"{frames}: the network gave NaN or infinite depth in {self.precision} on a compiled backend, "
                "which cannot recompute it in FP32; run with precision fp32 or backend torch"
            )
        if self.precision != "fp32":
            self.recomputed += 1
            log.warning(
                "%s: NaN or infinite depth in %s, recomputed in FP32 (%d time%s in this run so far)",
                frames, self.precision, self.recomputed, "" if self.recomputed == 1 else "s",
            )
            with torch.no_grad(), weights_in_fp32(self.model, self.precision):
                result = compute()
            if bool(torch.isfinite(result[0]).all()):
                return result
        raise NonFiniteDepthError(
            f"{frames}: the network gave NaN or infinite depth in FP32. The checkpoint is damaged or is "
            "not this model's (delete it and download it again), or the input frames are broken."
        )


# glibc's mallopt parameters, and the most its dynamic thresholds grow to on 64-bit systems
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
DYNAMIC_MMAP_MAX, DYNAMIC_TRIM_MAX = 32 << 20, 64 << 20


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        return libc
    except (OSError, AttributeError):  # not glibc
        return None


@contextlib.contextmanager
def reuse_freed_memory():
    """Keep freed memory in the process while the network runs; give it back afterwards.

    torch takes each CPU tensor straight from malloc, and glibc hands freed blocks of more
    than a few megabytes back to the system, so the next activation of that size starts on
    fresh pages and pays a page fault for every 4 KiB (a tenth of a CPU run and more,
    bench/bench_speed.py). Raising glibc's thresholds keeps those pages for reuse; at the end
    `malloc_trim` returns them and the thresholds go back to where glibc's own adjustment
    would take them. Elsewhere (macOS, Windows, musl) this does nothing. It changes the
    allocator of the whole process, so only the CLI, whose process this is, turns it on; a
    library call (the GUI, a user's script) leaves the host's allocator alone.
    """
    libc = _glibc()
    if libc is not None:
        libc.mallopt(M_MMAP_THRESHOLD, 1 << 30)
        libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        if libc is not None:
            libc.mallopt(M_MMAP_THRESHOLD, DYNAMIC_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DYNAMIC_TRIM_MAX)
            libc.malloc_trim(0)

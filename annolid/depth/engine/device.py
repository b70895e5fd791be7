"""Where the network runs and in which precision."""
from __future__ import annotations

import contextlib

import torch

# Precisions each device type runs well. FP32 first: it is the reference's numbers.
SUPPORTED = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16"), "mps": ("fp32", "fp16")}
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else cuda -> mps -> cpu."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise ValueError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError("device 'cuda' was asked for, but torch sees no CUDA GPU; use device='cpu'")
        if device.type == "mps" and not torch.backends.mps.is_available():
            raise ValueError("device 'mps' was asked for, but it is not available here; use device='cpu'")
        if device.type not in SUPPORTED:
            raise ValueError(f"device {requested!r} is not supported; use cpu, cuda or mps")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


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

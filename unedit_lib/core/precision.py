"""bfloat16 only where the hardware computes it natively, float32 elsewhere.

On a CPU without bf16 matrix instructions (AVX2 only, as most laptops) PyTorch emulates bf16
matmuls, 10-20x slower than float32; with AVX512-BF16 or AMX (recent Xeon / EPYC) they are
faster than float32. So `precision="auto"` (every preset's default) resolves per machine:

* CUDA: bf16 when `torch.cuda.is_bf16_supported()`;
* CPU: bf16 when the CPU reports `avx512_bf16` or `amx_bf16` (Linux /proc/cpuinfo) and PyTorch
  runs its AVX512 kernels (not ATEN_CPU_CAPABILITY=avx2 or default); where the
  flags cannot be read (macOS, Windows), a one-second probe times a bf16 against a float32
  matmul and picks bf16 only if it is not slower.

The decision is cached per process (UNEDIT_PRECISION=float32|bfloat16 overrides "auto"), and
each training log and result records the precision it ran with, since it moves numbers slightly.
bf16 is used as autocast for matmuls only: weights, optimiser state and losses stay float32.
"""
from __future__ import annotations

import os
import time
from functools import lru_cache

import torch

PRECISIONS = ("auto", "float32", "bfloat16")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def _probe_cpu_bf16(seconds: float = 1.0) -> bool:
    a32 = torch.randn(512, 512)
    b32 = torch.randn(512, 512)
    a16, b16 = a32.bfloat16(), b32.bfloat16()

    def rate(a, b):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 2:
            a @ b
            n += 1
        return n / (time.perf_counter() - t0)

    return rate(a16, b16) >= rate(a32, b32)


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    flags = _cpu_flags()
    if flags is not None:
        # PyTorch's own kernels must be the AVX512 ones too: with ATEN_CPU_CAPABILITY=avx2 (or default)
        # on a bf16 CPU, bf16 matmuls are emulated and bf16 SDPA raises ("pack_vnni2 is only supported
        # when avx512 is supported"). (Where flags cannot be read, the probe times the kernels in use.)
        if torch.backends.cpu.get_cpu_capability() in ("DEFAULT", "AVX2"):
            return False
        return any(f in flags for f in _BF16_FLAGS)
    return _probe_cpu_bf16()


def run_device(device: str | torch.device | None = None) -> torch.device:
    """The device models run on: `device`, else the environment variable UNEDIT_DEVICE, else the
    CPU; a clear error when the name is not a device or this machine / PyTorch build has none."""
    src = "device" if device is not None else "UNEDIT_DEVICE"
    name = device if device is not None else (os.environ.get("UNEDIT_DEVICE") or "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ValueError(f"{src}={name!r} is not a torch device; use cpu, cuda, cuda:N or mps") from None
    unset = " (unset UNEDIT_DEVICE to run on the CPU)" if src == "UNEDIT_DEVICE" else ""
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
            raise RuntimeError(f"{src}={name!r}, but PyTorch {torch.__version__} ({build}) sees no CUDA GPU here{unset}; "
                               "on a GPU machine, install a CUDA build of torch")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"{src}={name!r}, but this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                               f"(cuda:0 to cuda:{torch.cuda.device_count() - 1}){unset}")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError(f"{src}={name!r}, but PyTorch sees no Apple MPS device here{unset}")
    return dev


def resolve(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """'float32' or 'bfloat16' for this machine."""
    if precision == "auto":
        precision = os.environ.get("UNEDIT_PRECISION", "auto")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r} (UNEDIT_PRECISION?)")
    if precision != "auto":
        return precision
    dev = torch.device(device)
    if dev.type == "cuda":
        return "bfloat16" if torch.cuda.is_bf16_supported() else "float32"
    if dev.type == "cpu":
        return "bfloat16" if cpu_has_native_bf16() else "float32"
    return "float32"


def autocast(precision: str = "auto", device: str | torch.device = "cpu"):
    """A context manager: bf16 autocast where `resolve` says bf16, else a no-op."""
    dev = torch.device(device)
    use = resolve(precision, dev) == "bfloat16"
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use)


def describe(device: str | torch.device = "cpu") -> dict:
    """What a record stores about the arithmetic it ran with."""
    dev = torch.device(device)
    info = {"device": dev.type, "precision": resolve("auto", dev)}
    if dev.type == "cpu":
        info["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        info["cpu_native_bf16"] = cpu_has_native_bf16()
        info.update(cpu_model=_cpu_model(), cpu_flags=sorted((_cpu_flags() or set()) & RECORDED_FLAGS))
    elif dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    info["threads"] = torch.get_num_threads()
    return info


# the CPU flags that decide which kernels run (and so the float rounding over many sequential edits)
RECORDED_FLAGS = frozenset({"avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile"})


def _cpu_model() -> str | None:
    """The CPU's model name (/proc/cpuinfo on Linux), else what platform says."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or None

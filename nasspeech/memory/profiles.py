"""GPU profiles: usable memory capacity per device, with where each number comes from.

Capacities are the bytes ``torch.cuda.get_device_properties(i).total_memory`` reports (what
the caching allocator can ever obtain before the CUDA context is subtracted). Where no
measurement was available in this project, the figure is the vendor's marketed size in GiB
(``source`` says which); the difference to the driver-reported total is a few hundred MiB at
most (ECC/driver reservations), and is recorded in ``docs/memory.md`` once calibrated.
"""

from __future__ import annotations

from dataclasses import dataclass

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class GpuProfile:
    """One GPU model: total device memory in bytes and the source of that figure."""

    name: str
    capacity_bytes: int
    description: str
    source: str
    hopper: bool = False  # cuBLAS workspace defaults differ on sm_90+ (see overheads.py)


def _p(name: str, total: int, desc: str, source: str, hopper: bool = False) -> GpuProfile:
    return GpuProfile(name, total, desc, source, hopper)


_VENDOR = "vendor datasheet (marketed size, GiB)"
_REPORTED = "torch.cuda.get_device_properties().total_memory as publicly reported"

PROFILES: dict[str, GpuProfile] = {
    p.name: p
    for p in [
        # 42,505,273,344 B is the total_memory PyTorch reports for an A100-SXM4-40GB
        _p("a100-40gb", 42_505_273_344, "NVIDIA A100 40GB (SXM4/PCIe)", _REPORTED),
        _p("a100-80gb", 85_097_971_712, "NVIDIA A100 80GB (SXM4/PCIe)", _REPORTED),
        _p("h100-80gb", 85_044_887_552, "NVIDIA H100 80GB (SXM5/PCIe)", _REPORTED, True),
        _p("h200", 150_754_820_096, "NVIDIA H200 141GB", _REPORTED, True),
        _p("l4", 23_580_639_232, "NVIDIA L4 24GB", _REPORTED),
        _p("v100-16gb", 16 * GiB, "NVIDIA V100 16GB", _VENDOR),
        _p("v100-32gb", 32 * GiB, "NVIDIA V100 32GB", _VENDOR),
        _p("rtx4090", 25_393_692_672, "NVIDIA GeForce RTX 4090 24GB", _REPORTED),
        _p("t4", 15_835_660_288, "NVIDIA T4 16GB", _REPORTED),
    ]
}


class UnknownGpuError(KeyError):
    """A GPU name that is not in :data:`PROFILES`."""

    def __str__(self) -> str:
        return str(self.args[0])


def get_profile(gpu: str | GpuProfile | int) -> GpuProfile:
    """A profile by name (case-insensitive), a custom capacity in bytes, or a profile itself.

    A string such as ``"24GiB"``/``"24GB"``/``"25000000000"`` gives a custom device.
    """
    if isinstance(gpu, GpuProfile):
        return gpu
    if isinstance(gpu, int):
        return custom_profile(gpu)
    key = gpu.strip().lower()
    if key in PROFILES:
        return PROFILES[key]
    capacity = parse_capacity(key)
    if capacity is not None:
        return custom_profile(capacity)
    known = ", ".join(PROFILES)
    raise UnknownGpuError(
        f"unknown GPU {gpu!r}; known GPUs: {known} (or give a capacity such as '24GiB')"
    )


def custom_profile(capacity_bytes: int, name: str | None = None) -> GpuProfile:
    if capacity_bytes <= 0:
        raise ValueError(f"GPU capacity must be positive, got {capacity_bytes} bytes")
    return GpuProfile(
        name or f"custom-{capacity_bytes / MiB:.0f}MiB", capacity_bytes,
        "user-given capacity", "user",
    )


def parse_capacity(text: str) -> int | None:
    """Bytes from ``"40GiB"``, ``"40gb"`` (decimal), ``"512MiB"`` or a plain integer; else None."""
    units = {"gib": GiB, "mib": MiB, "gb": 10**9, "mb": 10**6, "b": 1, "": 1}
    text = text.strip().lower().replace(" ", "")
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            number = text[: len(text) - len(unit)] if unit else text
            try:
                value = float(number)
            except ValueError:
                continue
            return int(value * units[unit]) if value > 0 else None
    return None

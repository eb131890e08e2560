"""GPU profiles: usable memory capacity per device, with where each number comes from.

Capacities are the bytes ``torch.cuda.get_device_properties(i).total_memory`` reports (what
the caching allocator can ever obtain before the CUDA context is subtracted). Where no
measurement was available in this project, the figure is the vendor's marketed size in GiB
(``source`` says which); the difference to the driver-reported total is a few hundred MiB at
most (ECC/driver reservations), and is recorded in ``docs/memory.md`` once calibrated.
"""

from __future__ import annotations

import math
import re
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
        # H200 SXM, 141 GB HBM3e nominal: nvidia-smi shows 143,771 MiB, torch's total_memory
        # 150,109,880,320 B (615 MiB less), read on this project's H200, 2026-11-29
        _p("h200", 150_109_880_320, "NVIDIA H200 141GB", "torch total_memory measured on an "
           "H200 (torch 2.11, driver 580.159.04), 2026-11-29", True),
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

    A string with a unit, such as ``"24GiB"``/``"24GB"``/``"512MiB"``, gives a custom device;
    a bare number is refused (``"24"`` would be 24 bytes).
    """
    if isinstance(gpu, GpuProfile):
        return gpu
    if isinstance(gpu, int):
        return custom_profile(gpu)
    key = gpu.strip().lower()
    if key in PROFILES:
        return PROFILES[key]
    capacity = parse_capacity(gpu)
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


#: capacity units, binary (GiB) and decimal (GB), as ``--gpu`` accepts them
UNITS = {"tib": 1024**4, "gib": GiB, "mib": MiB, "tb": 10**12, "gb": 10**9, "mb": 10**6,
         "b": 1}
_CAPACITY = re.compile(r"^([0-9.eE+-]+|inf(inity)?|nan)\s*([a-z]*)$")


def parse_capacity(text: str) -> int | None:
    """Bytes from ``"40GiB"``, ``"40gb"`` (decimal), ``"512MiB"``, ``"1.5TB"``, ``"1000B"``;
    None if ``text`` is not a number with a unit. A number without a unit, with an unknown
    unit, or that is not finite and positive raises :class:`ValueError` naming the text."""
    text = text.strip()
    match = _CAPACITY.match(text.lower())
    if match is None:
        return None
    number, unit = match.group(1), match.group(3)
    try:
        value = float(number)
    except ValueError:
        return None
    units = "GiB, GB, MiB, MB, TiB, TB or B"
    if not unit:
        raise ValueError(f"GPU capacity {text!r} has no unit: write e.g. '{number}GiB' or "
                         f"'{number}GB' ({units})")
    if unit not in UNITS:
        raise ValueError(f"GPU capacity {text!r}: unknown unit {unit!r}; use {units}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"GPU capacity {text!r} must be a finite number above 0")
    return int(value * UNITS[unit])


def profile_table() -> str:
    """The known profiles, one per line: name, capacity, model, source of the figure."""
    rows = [f"{'name':<11} {'capacity':>10} {'bytes':>17}  model; source"]
    for p in PROFILES.values():
        rows.append(f"{p.name:<11} {p.capacity_bytes / GiB:>6.2f} GiB {p.capacity_bytes:>17,}"
                    f"  {p.description}; {p.source}")
    rows.append("or any capacity with a unit, e.g. --gpu 24GiB (binary) or --gpu 24GB (decimal)")
    return "\n".join(rows)

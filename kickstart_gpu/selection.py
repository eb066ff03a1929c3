"""Which GPUs belong to the job: ``CUDA_VISIBLE_DEVICES``, else ``NVIDIA_VISIBLE_DEVICES``.

Entries may be integers, ``GPU-<uuid>`` (or a unique prefix of one) or ``MIG-<uuid>``;
empty, ``none``, ``void`` or ``NoDevFiles`` mean no GPU, and so do ``10000`` (what HTCondor
sets for a job that asked for no GPU, ``ENVIRONMENT_VALUE_FOR_UnAssignedGPUs``) and ``-1``
(the usual way to hide every GPU from CUDA): hidden on purpose, not a problem. As CUDA does,
an invalid entry ends the list. Integer CUDA ordinals are mapped to NVML indices, which follow
PCI bus order: exact when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (as HTCondor and Slurm arrange), and
otherwise exact only when the host's GPUs are all alike, because CUDA's default order puts the
fastest GPU first. A MIG instance is monitored through its parent GPU, whose event names the
instance.
"""

from __future__ import annotations

from .nvml import Nvml, Unavailable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Mapping

NO_GPU = {"", "none", "void", "nodevfiles", "10000", "-1"}


class Selection:
    """NVML indices to monitor, the MIG instance per index, and how they were chosen."""

    def __init__(self, indices: list[int], mig: dict[int, str], source: str,
                 problems: list[str]) -> None:
        self.indices = indices
        self.mig = mig
        self.source = source
        self.problems = problems


def select(nvml: Nvml, environ: Mapping[str, str]) -> Selection:
    count = nvml.query("nvmlDeviceGetCount")
    if isinstance(count, Unavailable):
        return Selection([], {}, "nvml", [f"cannot count GPUs: {count.reason}"])
    for variable in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES"):
        if variable in environ:
            value = environ[variable].strip()
            if value.lower() in NO_GPU:
                return Selection([], {}, variable, [])
            if value.lower() == "all":
                return Selection(list(range(count)), {}, variable, [])
            return _resolve(nvml, count, value.split(","), variable)
    return Selection(list(range(count)), {}, "all GPUs NVML sees", [])


def _resolve(nvml: Nvml, count: int, entries: list[str], variable: str) -> Selection:
    indices: list[int] = []
    mig: dict[int, str] = {}
    problems: list[str] = []
    uuids = {i: str(nvml.query("nvmlDeviceGetUUID", nvml.query(
        "nvmlDeviceGetHandleByIndex", i)) or "") for i in range(count)}
    for entry in (e.strip() for e in entries):
        index = _one(nvml, count, uuids, entry, mig)
        if index is None:
            problems.append(f"{variable}: '{entry}' matches no GPU; later entries ignored, "
                            "as CUDA does")
            break
        if index not in indices:
            indices.append(index)
    return Selection(indices, mig, variable, problems)


def _one(nvml: Nvml, count: int, uuids: dict[int, str], entry: str,
         mig: dict[int, str]) -> int | None:
    if entry.isdigit():
        return int(entry) if int(entry) < count else None
    if entry.upper().startswith("MIG-"):
        handle = nvml.query("nvmlDeviceGetHandleByUUID", entry)
        parent = nvml.query("nvmlDeviceGetDeviceHandleFromMigDeviceHandle", handle)
        parent_uuid = nvml.query("nvmlDeviceGetUUID", parent)
        index = next((i for i, u in uuids.items() if u and u == parent_uuid), None)
        if index is not None:
            mig[index] = entry
        return index
    wanted = entry if entry.upper().startswith("GPU-") else f"GPU-{entry}"
    matches = [i for i, u in uuids.items() if u.lower().startswith(wanted.lower())]
    return matches[0] if len(matches) == 1 else None

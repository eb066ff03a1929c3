"""Build the fake ``libnvidia-ml.so.1`` and convert replay traces into the form it reads.

    python tests/fake_nvml/build.py OUTDIR [--old-driver] [--trace TRACE.json]

builds ``OUTDIR/libnvidia-ml.so.1`` from ``fake_nvml.c`` with the system compiler against
NVIDIA's ``nvml.h`` (PyPI ``nvidia-nvml-dev``, in the test extra), and with ``--trace`` writes
``OUTDIR/trace.txt`` for ``FAKE_NVML_TRACE``. Then the real pynvml loads it::

    LD_LIBRARY_PATH=OUTDIR FAKE_NVML_TRACE=OUTDIR/trace.txt \\
        pegasus-kickstart-gpu --backend nvml -- COMMAND

``--old-driver`` leaves out what drivers before 510/535 lack: the ``_v3`` process lists and
``nvmlDeviceGetCurrentClocksEventReasons``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

SOURCE = Path(__file__).resolve().parent / "fake_nvml.c"
NULL_MEMORY = 2 ** 64 - 1  # NVML_VALUE_NOT_AVAILABLE as unsigned long long: pynvml's None
NOT_READ = 2 ** 32 - 1  # fake_nvml.c's NOT_READ: a clock or PCIe counter a reading lacks


class NoCompiler(RuntimeError):
    """No C compiler or no nvml.h here: the caller skips, saying which."""


def nvml_header_directory() -> Path:
    spec = importlib.util.find_spec("nvidia")
    for location in (spec.submodule_search_locations or []) if spec else []:
        for header in sorted(Path(location).glob("cu*/include/nvml.h"), reverse=True):
            return header.parent
    raise NoCompiler("nvml.h not found: pip install nvidia-nvml-dev (in the test extra)")


def build(outdir: Path, old_driver: bool = False) -> Path:
    """``outdir/libnvidia-ml.so.1``, compiled from fake_nvml.c."""
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        raise NoCompiler("no C compiler (cc, gcc or clang) on PATH")
    outdir.mkdir(parents=True, exist_ok=True)
    library = outdir / "libnvidia-ml.so.1"
    command = [compiler, "-shared", "-fPIC", "-O2", "-fvisibility=hidden", "-Wall", "-Wextra",
               "-Werror", "-Wno-deprecated-declarations", f"-I{nvml_header_directory()}",
               "-Wl,-soname,libnvidia-ml.so.1", "-o", str(library), str(SOURCE)]
    if old_driver:
        command.insert(1, "-DFAKE_NVML_OLD_DRIVER")
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"building the fake NVML failed:\n{result.stderr}")
    return library


def error_code(name: str) -> int:
    import pynvml

    return int(getattr(pynvml, f"NVML_ERROR_{name}"))


def convert(trace: dict[str, Any], path: Path, *, init_error: str | None = None,
            count_error: str | None = None, pcie_ms: int = 20) -> Path:
    """Write a replay trace (kickstart_gpu/replay.py's format) as fake_nvml.c reads it.

    :param init_error: an NVML error name nvmlInit returns (``NO_PERMISSION``...)
    :param count_error: an NVML error name nvmlDeviceGetCount returns
    :param pcie_ms: what one nvmlDeviceGetPcieThroughput call takes, milliseconds
    """
    lines = ["fake-nvml-trace 1", f"driver {trace['driver_version']}", f"pcie_ms {pcie_ms}"]
    if "cuda_driver_version" in trace:
        lines.append(f"cuda {int(trace['cuda_driver_version'])}")
    if init_error:
        lines.append(f"init_error {error_code(init_error)}")
    if count_error:
        lines.append(f"count_error {error_code(count_error)}")
    for i, device in enumerate(trace["devices"]):
        major, minor = device["cuda_capability"]
        lines.append(" ".join(str(0 if v is None else v) for v in (  # None: "unsupported"
            "device", i, device["uuid"], device["pci_bus_id"], device.get("compute_mode", 0),
            major, minor, device["power_limit"], device["memory_total"], device["bar1_total"],
            *unread(device["max_clocks"]), device["name"])))
        lines += [f"unsupported {i} {name}" for name in device.get("unsupported", [])]
        lines += [f"mig {i} {uuid}" for uuid in device.get("mig_uuids", [])]
    for sample in trace["samples"]:
        lines.append(f"sample {sample['t']}")
        for i, now in enumerate(sample["devices"]):
            # None elsewhere: the function failed, which "unsupported" or "err" answers
            lines.append(" ".join(str(0 if v is None else v) for v in (
                "d", i, now["temp"], now["power"], now["energy"], now["memory_used"],
                now["bar1_used"], now["gpu_util"], now["mem_util"], *unread(now["clocks"]),
                *unread([now.get("pcie_rx", 0), now.get("pcie_tx", 0)]),
                now.get("throttle", 0))))
            for key, tag in (("compute_procs", "cp"), ("graphics_procs", "gp")):
                lines += [f"{tag} {i} {pid} {NULL_MEMORY if memory is None else memory}"
                          for pid, memory in now.get(key, [])]
            lines += [f"pu {i} {' '.join(map(str, entry))}" for entry in now.get("proc_util", [])]
            lines += [f"err {i} {function} {error_code(name)}"
                      for function, name in now.get("errors", {}).items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def unread(readings: list[int | None]) -> list[int]:
    """Clocks or PCIe counters as fake_nvml.c reads them: a null (the recorder's reading
    that NVML did not support that time, which the replay answers NOT_SUPPORTED) as NOT_READ."""
    return [NOT_READ if value is None else value for value in readings]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--old-driver", action="store_true")
    parser.add_argument("--trace", type=Path, help="a replay trace to convert to OUTDIR/trace.txt")
    args = parser.parse_args()
    try:
        print(build(args.outdir, args.old_driver))
    except NoCompiler as error:
        print(f"build.py: {error}", file=sys.stderr)
        return 1
    if args.trace:
        import json

        print(convert(json.loads(args.trace.read_text()), args.outdir / "trace.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

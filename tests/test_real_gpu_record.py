"""What a real GPU gave, kept: the record and the trace of one job on an NVIDIA H200
(``bench/real_gpu.sh``: the sidecar wrapping the real pegasus-kickstart around a PyTorch job,
``kickstart_gpu.record_trace`` recording NVML's answers meanwhile).

The record is the sidecar's work on the real driver; the tests hold Pegasus' parser, the report
and the replay to it.
"""

from __future__ import annotations

import json
import subprocess
import sys

from kickstart_gpu.block_writer import MARKER
from tests.test_kickstart_gpu import FIXTURES, ROOT, block, sidecar, validate

RECORD = FIXTURES / "h200_gpu_job.out"
EVENTS = FIXTURES / "h200_gpu_job.events.jsonl"  # the same run's --events-file
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "h200-pytorch-job.json"
GIB = 2**30


def test_pegasus_reads_the_record_the_h200_job_wrote(tmp_path):
    from Pegasus.exitcode import check_kickstart_records
    from Pegasus.tools.kickstart_parser import YAMLParser

    check_kickstart_records(RECORD.read_text())  # raises JobFailed if Pegasus saw a failure
    entries = YAMLParser(str(RECORD)).parse_stampede()
    gpu = {key: value for entry in entries if entry.get("multipart")
           for key, value in entry.items()}
    (device,) = gpu["kickstart.inv.gpu.environment"]["devices"]
    assert device["name"] == "NVIDIA H200" and device["cuda_capability"] == 9.0
    assert gpu["kickstart.inv.gpu.stats.max"]["devices"][0]["max_gpu_usage"] == 98
    validate(block(RECORD.read_text()))


def test_the_h200_record_shows_the_job_on_its_gpu():
    """The job's process, as NVML on the real driver named it, is the job's: PID 515 is
    kickstart's child (the record's mainjob), holding 17 GiB (its 16 GiB tensor and CUDA's
    own) in every sample while it ran (the event stream: the record keeps the first and last)."""
    events = [json.loads(line) for line in EVENTS.read_text().splitlines()]
    busy = [e for e in events if e.get("compute_procs")]
    assert "pid: 515" in RECORD.read_text().split(MARKER)[0]
    assert len(busy) == 13 and {(p["pid"], p["in_job"]) for e in busy
                                for p in e["compute_procs"] + e["proc_samples"]} == {(515, True)}
    assert max(e["gpu_utilization"] for e in busy) == 98
    (maxima,) = block(RECORD.read_text())["kickstart.inv.gpu.stats.max"]["devices"]
    assert maxima["energy_source"] == "energy counter" and maxima["energy_used"] == 6106141
    assert 17 * GIB < maxima["max_mem_usage"] < 18 * GIB
    assert maxima["throttled_samples"] == 10  # SW power cap (0x4) while the products ran


def test_the_report_reads_the_h200_record():
    result = subprocess.run([sys.executable, "-m", "kickstart_gpu.cli", "report", "--format",
                             "json", str(RECORD)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    (job,) = json.loads(result.stdout)["jobs"]
    assert (job["transformation"], job["gpu_count"], job["peak_gpu_util"]) == ("train", 1, 98)
    assert job["gpus"].startswith("NVIDIA H200") and job["energy_j"] == 6106.141


def test_replaying_the_h200_trace_gives_the_inventory_the_driver_gave(tmp_path):
    """The recorder kept every inventory field the sidecar reads: replayed, the trace yields
    the environment event the sidecar wrote on the real H200."""
    real = block(RECORD.read_text())["kickstart.inv.gpu.environment"]
    out = tmp_path / "record"
    result = sidecar("--interval", "1", "--backend", "replay:h200-pytorch-job", "--output",
                     str(out), "--", "sleep", "1.2")
    assert result.returncode == 0, result.stderr
    replayed = block(out.read_text())["kickstart.inv.gpu.environment"]
    assert replayed["devices"] == real["devices"]
    assert (replayed["cuda_version"], replayed["nvidia_driver_version"]) == (
        real["cuda_version"], real["nvidia_driver_version"])
    assert "problems" not in replayed

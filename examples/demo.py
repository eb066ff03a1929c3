"""`make demo`: the whole system on a laptop, with no Globus account and no GPU.

Starts the Globus emulator on a sped-up clock; logs in with pegasus-globus-online-init (the
code piped in automatically); writes the example workflows with Pegasus.api; registers the
nightly backup timer from the workflow's metadata and watches it run; stages a go:// input
with stock pegasus-transfer through this project's handler; runs the GPU job under
pegasus-kickstart-gpu (a replayed two-GPU trace, or the real GPU when NVML finds one); reads
the record with Pegasus' own parser; and prints the GPU report with its figure. Everything is
written under demo-output/, whose home directory stands in for yours.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "demo-output"
EXAMPLES = ROOT / "examples" / "workflows"
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
BIN = Path(sys.executable).parent  # this environment's commands come first
DAY = 86400  # the emulator's clock runs a day a second



def example(name: str) -> object:
    """The example workflow module examples/workflows/<name>/workflow.py."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, EXAMPLES / name / "workflow.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(text: str) -> None:
    print(f"- {text}", flush=True)


def run(*command: str, env: dict[str, str], **options: object) -> subprocess.CompletedProcess:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                            **options)
    if result.returncode != 0:
        raise SystemExit(f"demo step failed: {' '.join(command)}\n{result.stdout}"
                         f"{result.stderr}")
    return result


def login(env: dict[str, str]) -> str:
    from pegasus_globus.emulator import approve

    process = subprocess.Popen(
        [str(BIN / "pegasus-globus-online-init"), "--permanent", "--timers", "--no-browser"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    for line in process.stdout:
        if "://" in line:
            out, _ = process.communicate(approve(line.strip()) + "\n", timeout=60)
            if process.returncode:
                raise SystemExit("demo step failed: pegasus-globus-online-init")
            return out.strip().splitlines()[-1]
    raise SystemExit("demo step failed: pegasus-globus-online-init printed no URL")


def gpu_backend() -> tuple[str, str]:
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        if count:
            return "auto", f"the real GPU(s): {count} found by NVML"
    except Exception:  # no driver here: the replayed trace stands in
        pass
    return f"replay:{TRACE}", "a replayed two-A100 trace (no NVIDIA GPU here)"


def main() -> int:
    started = time.monotonic()
    shutil.rmtree(OUTPUT, ignore_errors=True)
    from pegasus_globus.emulator import Emulator

    with Emulator(OUTPUT / "globus", time_scale=DAY) as emulator:
        env = {**os.environ, **emulator.environment, "HOME": str(OUTPUT / "home"),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PEGASUS_GLOBUS_CONFIG", None)
        step(f"Globus emulator at {emulator.url}, its clock running a day a second")
        step(f"pegasus-globus-online-init: {login(env)}")

        data, results, archive, scratch = (str(uuid.uuid4()) for _ in range(4))
        (emulator.collection_path(data) / "data").mkdir()
        (emulator.collection_path(data) / "data" / "raw.csv").write_text(
            "".join(f"{i},{i * i}\n" for i in range(1000)))
        (emulator.collection_path(results) / "nightly").mkdir()
        for name in ("summary.txt", "report.html"):
            (emulator.collection_path(results) / "nightly" / name).write_text(name)

        nightly = example("nightly_backup").build(data, results, archive,
                                                  OUTPUT / "nightly_backup", nights=3)
        gpu_workflow = example("gpu_training").build(OUTPUT / "gpu_training", interval=1,
                                                     epochs=6)
        step(f"workflows written with Pegasus.api: {nightly.relative_to(ROOT)}, "
             f"{gpu_workflow.relative_to(ROOT)}")

        registered = json.loads(run(str(BIN / "pegasus-globus-timer"), "register",
                                    str(nightly), "--format", "json", env=env).stdout)
        job_id = registered[0]["job_id"]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            job = json.loads(run(str(BIN / "pegasus-globus-timer"), "job", "status", job_id,
                                 "--format", "json", env=env).stdout)
            if job["next_run"] is None:
                break
            time.sleep(0.3)
        again = json.loads(run(str(BIN / "pegasus-globus-timer"), "register", str(nightly),
                               "--format", "json", env=env).stdout)
        backups = sorted(p.name for p in (emulator.collection_path(archive) / "backups" /
                                          "nightly").iterdir())
        step(f"timer from metadata registered ({registered[0]['action']}), ran "
             f"{job['number_of_runs']} nights: {', '.join(backups)} backed up; registering "
             f"again: {again[0]['action']}")

        import Pegasus

        transfer = Path(Pegasus.__file__).parent / "cli" / "pegasus-transfer.py"
        stage_in = OUTPUT / "stage_in.json"
        stage_in.write_text(json.dumps([{
            "type": "transfer", "lfn": "raw.csv", "id": 1, "linkage": "input",
            "src_urls": [{"site_label": "globus", "url": f"go://{data}/data/raw.csv"}],
            "dest_urls": [{"site_label": "scratch",
                           "url": f"go://{scratch}/run/raw.csv"}]}]))
        run(sys.executable, str(transfer), "--file", str(stage_in), "--threads", "1", env=env)
        staged = emulator.collection_path(scratch) / "run" / "raw.csv"
        step(f"stock pegasus-transfer 5.1.3 staged raw.csv through pegasus-globus-online: "
             f"{staged.stat().st_size} bytes at go://{scratch}/run/raw.csv")

    backend, what = gpu_backend()
    jobs = OUTPUT / "gpu_training" / "submit" / "00" / "00"
    jobs.mkdir(parents=True)
    record = jobs / "train_ID0000001.out.000"
    with record.open("w") as out:
        subprocess.run([str(BIN / "pegasus-kickstart-gpu"), "--interval", "1", "--backend",
                        backend, "--", sys.executable,
                        str(EXAMPLES / "gpu_training" / "mini_kickstart.py"), "-n", "train",
                        "-I", "ID0000001", "--", sys.executable,
                        str(EXAMPLES / "gpu_training" / "train.py"), "--epochs", "6"],
                       stdout=out, stderr=subprocess.DEVNULL, cwd=jobs, check=True)
    step(f"GPU job ran under pegasus-kickstart-gpu on {what}: record {record.relative_to(ROOT)}")

    from Pegasus.tools.kickstart_parser import YAMLParser

    entries = YAMLParser(str(record)).parse_stampede()
    gpu = {k: v for e in entries if e.get("multipart") for k, v in e.items() if k != "multipart"}
    invocation = next(e for e in entries if e.get("invocation"))
    step(f"Pegasus' own parser read the invocation (exit {invocation['exitcode']}, "
         f"{invocation['duration']} s) and {len(gpu)} GPU entries: "
         f"{gpu['kickstart.inv.gpu.environment']['device_count']} GPUs, "
         f"{len(gpu['kickstart.inv.gpu.stats'])} samples")

    figure = OUTPUT / "gpu-report.png"
    report = run(str(BIN / "pegasus-kickstart-gpu"), "report", str(jobs.parent.parent),
                 "--plot", str(figure), env=os.environ)
    step("pegasus-kickstart-gpu report:")
    print("\n".join(f"    {line}" for line in report.stdout.splitlines()))
    step(f"done in {time.monotonic() - started:.0f} s; files under {OUTPUT.relative_to(ROOT)}/: "
         f"globus/ (collections), home/.pegasus/globus.conf, nightly_backup/, gpu_training/, "
         f"{figure.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`make demo`: the whole system on a laptop, with no Globus account and no GPU.

Starts the Globus emulator on a sped-up clock and logs in with pegasus-globus-online-init (the
code piped in automatically). With a real Pegasus installation ($PEGASUS_HOME, or pegasus-plan
on PATH) and HTCondor ($CONDOR_CONFIG, or condor_submit_dag on PATH), it starts a personal pool
of its own, submits both example workflows with pegasus-plan --submit, shows pegasus-status
and pegasus-statistics for each, and stops the pool; with Pegasus alone, it plans and runs them
with the Shell code generator and pegasus-run. The nightly backup stages its go:// input, runs,
stages out and registers its Globus timer, which
runs three emulated nights; the GPU job runs under pegasus-kickstart-gpu in front of the real
pegasus-kickstart. Without Pegasus it drives the same pieces by hand: the timer registered from
the workflow's metadata, a go:// input staged by stock pegasus-transfer (the pip-installed one)
through this project's handler, the GPU job under a small kickstart stand-in. Either way the
record is read with Pegasus' own parser and the GPU report is printed with its figure.
Everything is written under demo-output/ (or --output DIR), whose home directory stands in for
yours; the GPU is a replayed two-A100 trace unless NVML finds a real one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))
from personal_pool import GPU_UUIDS, PoolUnavailable, start_pool  # noqa: E402
from rehearsal import RealPegasus, find_pegasus, gpu_training, nightly_backup  # noqa: E402
from rehearsal import example as rehearsal_example  # noqa: E402

EXAMPLES = ROOT / "examples" / "workflows"
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
BIN = Path(sys.executable).parent  # this environment's commands come first
DAY = 86400  # the emulator's clock runs a day a second



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


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is below it, as a user types it."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def collections(emulator: object) -> tuple[str, str, str]:
    """The data (with /data/raw.csv), results and archive collections."""
    data, results, archive = (str(uuid.uuid4()) for _ in range(3))
    (emulator.collection_path(data) / "data").mkdir()
    (emulator.collection_path(data) / "data" / "raw.csv").write_text(
        "".join(f"{i},{i * i}\n" for i in range(1000)))
    return data, results, archive


def watch_timer(job_id: str, env: dict[str, str]) -> dict:
    """The timer's status once it has run its count (the emulator's clock runs a day a second)."""
    deadline = time.monotonic() + 30
    while True:
        job = json.loads(run(str(BIN / "pegasus-globus-timer"), "job", "status", job_id,
                             "--format", "json", env=env).stdout)
        if job["next_run"] is None or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def timer_outcome(job_id: str, workflow: Path, emulator: object, archive: str,
                  env: dict[str, str]) -> str:
    """Once the timer has run its count: what it backed up, and what registering again did."""
    job = watch_timer(job_id, env)
    again = json.loads(run(str(BIN / "pegasus-globus-timer"), "register", str(workflow),
                           "--format", "json", env=env).stdout)
    backups = sorted(p.name for p in (emulator.collection_path(archive) / "backups" /
                                      "nightly").iterdir())
    return (f"it ran {job['number_of_runs']} nights: {', '.join(backups)} backed up; "
            f"registering again: {again[0]['action']}")


def real_pegasus_steps(pegasus: RealPegasus, emulator: object, env: dict[str, str],
                       output: Path) -> Path:
    """Both examples planned and run with the real Pegasus; returns the GPU run's submit dir."""
    env = pegasus.environment(env)
    data, results, archive = collections(emulator)
    workflow, properties = nightly_backup(pegasus, emulator, output / "nightly_backup", data,
                                          results, archive, job_env={
                                              "HOME": env["HOME"], **emulator.environment})
    plan_and_run(pegasus, "nightly_backup", workflow, properties, env,
                 output / "nightly_backup" / "submit", output_site="results")
    kept = sorted(p.name for p in (emulator.collection_path(results) / "nightly").iterdir())
    step(f"outputs staged go:// to the results collection: {', '.join(kept)}")
    timer = next(t for t in json.loads(run(str(BIN / "pegasus-globus-timer"), "job", "list",
                                           "--format", "json", env=env).stdout))
    step(f"the workflow's registration job created timer {timer['name']!r}; "
         + timer_outcome(timer["job_id"], workflow, emulator, archive, env))
    backend, what = gpu_backend()
    workflow, properties = gpu_training(pegasus, output / "gpu_training",
                                        TRACE if backend != "auto" else None)
    step(f"gpu_training: pegasus-kickstart-gpu in front of the real pegasus-kickstart, on {what}")
    return plan_and_run(pegasus, "gpu_training", workflow, properties, env,
                        output / "gpu_training" / "submit")


def preflight(workflow: Path, env: dict[str, str], properties: Path | None = None) -> None:
    """pegasus-globus-setup check --workflow: what Globus will need, before anything runs."""
    command = [str(BIN / "pegasus-globus-setup"), "check", "--workflow", str(workflow)]
    if properties:
        command += ["--conf", str(properties)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    shown_command = " ".join(shown(Path(word)) if "/" in word else word for word in command[1:])
    if result.returncode != 0:
        raise SystemExit(f"demo step failed: pegasus-globus-setup {shown_command}\n"
                         f"{result.stdout}{result.stderr}")
    step(f"pegasus-globus-setup {shown_command}: {result.stdout.strip().splitlines()[-1]}")


def plan_and_run(pegasus: RealPegasus, name: str, workflow: Path, properties: Path,
                 env: dict[str, str], submit: Path, **options: str) -> Path:
    preflight(workflow, env, properties)
    if pegasus.pool:
        pegasus.pool.give(workflow.parent)
        options["site"] = "condorpool" if name == "gpu_training" else "local"
    plan = pegasus.plan(workflow, properties, submit, env, **options)
    if plan.returncode or plan.submit_dir is None:
        raise SystemExit(f"demo step failed: pegasus-plan {name}\n{plan.output[-3000:]}")
    command = re.sub(r"^.*?(?=pegasus-(run|status -l)\s)", "",  # not Pegasus' timestamp
                     plan.lines(r"pegasus-(run|status -l)\s")[0])
    step(f"pegasus-plan {name} ({plan.seconds:.1f} s): "
         + command.replace(str(Path.cwd()) + "/", ""))
    if pegasus.pool:
        return on_the_pool(pegasus, name, plan.submit_dir, env)
    result = pegasus.run(plan.submit_dir, env)
    for line in result.lines(r"^(JOB|POSTSCRIPT FOR JOB) .* Returned with"):
        print(f"    {line}")
    if result.returncode:
        raise SystemExit(f"demo step failed: pegasus-run {name}\n{result.output[-3000:]}")
    step(f"pegasus-run {name}: {len(result.lines(r'^JOB '))} jobs succeeded in "
         f"{result.seconds:.1f} s")
    return plan.submit_dir


def on_the_pool(pegasus: RealPegasus, name: str, submit_dir: Path, env: dict[str, str]) -> Path:
    """Wait for DAGMan, then show what pegasus-status and pegasus-statistics say."""
    result = pegasus.wait(submit_dir)
    status = pegasus.tool("pegasus-status", "--long", str(submit_dir), env=env).output
    print("\n".join(f"    {line}" for line in status.splitlines() if line.strip()))
    if result.returncode:
        raise SystemExit(f"demo step failed: DAGMan ran {name}: {result.output[-3000:]}")
    statistics = pegasus.tool("pegasus-statistics", str(submit_dir), env=env).output
    print("\n".join(f"    {line}" for line in statistics.splitlines()
                    if line.strip() and not line.startswith("#")))
    step(f"DAGMan ran {name} on the pool in {result.seconds:.1f} s")
    return submit_dir


def stand_in_steps(emulator: object, env: dict[str, str], output: Path) -> Path:
    """Without Pegasus: the same pieces driven by hand; returns the GPU run's directory."""
    data, results, archive = collections(emulator)
    (emulator.collection_path(results) / "nightly").mkdir()
    for name in ("summary.txt", "report.html"):
        (emulator.collection_path(results) / "nightly" / name).write_text(name)
    nightly = rehearsal_example("nightly_backup").build(data, results, archive,
                                                        output / "nightly_backup", nights=3)
    step(f"workflow written with Pegasus.api: {shown(nightly)}")
    preflight(nightly, env)
    registered = json.loads(run(str(BIN / "pegasus-globus-timer"), "register", str(nightly),
                                "--format", "json", env=env).stdout)
    step(f"timer from metadata registered ({registered[0]['action']}); "
         + timer_outcome(registered[0]["job_id"], nightly, emulator, archive, env))

    import Pegasus

    scratch = str(uuid.uuid4())
    transfer = Path(Pegasus.__file__).parent / "cli" / "pegasus-transfer.py"
    stage_in = output / "stage_in.json"
    stage_in.write_text(json.dumps([{
        "type": "transfer", "lfn": "raw.csv", "id": 1, "linkage": "input",
        "src_urls": [{"site_label": "globus", "url": f"go://{data}/data/raw.csv"}],
        "dest_urls": [{"site_label": "scratch", "url": f"go://{scratch}/run/raw.csv"}]}]))
    run(sys.executable, str(transfer), "--file", str(stage_in), "--threads", "1", env=env)
    staged = emulator.collection_path(scratch) / "run" / "raw.csv"
    step(f"stock pegasus-transfer 5.1.3 staged raw.csv through pegasus-globus-online: "
         f"{staged.stat().st_size} bytes at go://{scratch}/run/raw.csv")

    backend, what = gpu_backend()
    jobs = output / "gpu_training" / "submit" / "00" / "00"
    jobs.mkdir(parents=True)
    record = jobs / "train_ID0000001.out.000"
    with record.open("w") as out:
        subprocess.run([str(BIN / "pegasus-kickstart-gpu"), "--interval", "1", "--backend",
                        backend, "--", sys.executable,
                        str(EXAMPLES / "gpu_training" / "mini_kickstart.py"), "-n", "train",
                        "-I", "ID0000001", "--", sys.executable,
                        str(EXAMPLES / "gpu_training" / "train.py"), "--epochs", "6"],
                       stdout=out, stderr=subprocess.DEVNULL, cwd=jobs, check=True)
    step(f"GPU job ran under pegasus-kickstart-gpu and a kickstart stand-in (no Pegasus "
         f"found) on {what}: record {shown(record)}")
    return output / "gpu_training" / "submit"


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output",
                        help="where everything is written (default: %(default)s)")
    output = parser.parse_args(argv).output.resolve()
    signal.signal(signal.SIGTERM, _interrupted)  # `timeout`, a batch system: as Ctrl-C
    try:
        return demo(output)
    except KeyboardInterrupt:
        shutil.rmtree(output, ignore_errors=True)
        print(f"\ninterrupted: removed the partial {shown(output)}/", file=sys.stderr)
        return 130


def _interrupted(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def personal_pool(output: Path) -> object | None:
    """A personal HTCondor pool of the demo's own, or None (saying why) without HTCondor."""
    try:
        pool = start_pool(parent=str(output))
    except PoolUnavailable as error:
        step(f"{error}: running the workflows without HTCondor (the Shell code generator)")
        return None
    pool.give(output)
    step(f"personal HTCondor pool started in {shown(pool.root)} (run by "
         f"{pool.account.pw_name if pool.account else 'you'}, {len(GPU_UUIDS)} simulated GPUs)")
    return pool


def demo(output: Path) -> int:
    started = time.monotonic()
    shutil.rmtree(output, ignore_errors=True)
    from pegasus_globus.emulator import Emulator

    installation = find_pegasus()
    with Emulator(output / "globus", time_scale=DAY) as emulator:
        env = {**os.environ, **emulator.environment, "HOME": str(output / "home"),
               "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
        env.pop("PEGASUS_GLOBUS_CONFIG", None)
        step(f"Globus emulator at {emulator.url}, its clock running a day a second")
        step(f"pegasus-globus-online-init: {login(env)}")
        if installation:
            pool = personal_pool(output)
            try:
                pegasus = RealPegasus(installation, output, pool=pool)
                step(f"real Pegasus {pegasus.version()} from {installation}, copied to "
                     f"{shown(pegasus.home)} with this project's Globus handler installed")
                submit = real_pegasus_steps(pegasus, emulator, env, output)
            finally:
                if pool:
                    pool.stop()
                    step("personal pool stopped")
        else:
            step("no Pegasus installation found (set PEGASUS_HOME to run the workflows with "
                 "pegasus-plan and pegasus-run): driving the pieces by hand")
            submit = stand_in_steps(emulator, env, output)

    from Pegasus.tools.kickstart_parser import YAMLParser

    record = next(submit.rglob("train_*.out.000"))
    entries = YAMLParser(str(record)).parse_stampede()
    gpu = {k: v for e in entries if e.get("multipart") for k, v in e.items() if k != "multipart"}
    invocation = next(e for e in entries if e.get("invocation"))
    step(f"Pegasus' own parser read {shown(record)}: exit {invocation['exitcode']}, "
         f"{invocation['duration']} s, {len(gpu)} GPU entries: "
         f"{gpu['kickstart.inv.gpu.environment']['device_count']} GPUs, "
         f"{len(gpu['kickstart.inv.gpu.stats'])} samples")

    figure = output / "gpu-report.png"
    report = run(str(BIN / "pegasus-kickstart-gpu"), "report", str(submit),
                 "--plot", str(figure), env=os.environ)
    step(f"pegasus-kickstart-gpu report {shown(submit)} --plot {shown(figure)}:")
    print("\n".join(f"    {line}" for line in report.stdout.splitlines()))
    written = sorted(p.name + ("/" if p.is_dir() else "") for p in output.iterdir())
    step(f"done in {time.monotonic() - started:.0f} s; under {shown(output)}/: "
         f"{', '.join(written)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

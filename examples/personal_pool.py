"""A personal HTCondor pool for the real-engine tests and ``make demo``: every daemon, DAGMan
and every job on this host, run by an ordinary user, started and stopped by the caller.

HTCondor is found as a user's machine has it: ``$CONDOR_CONFIG`` (its installation's tools in
the ``bin`` beside its ``etc``, else on PATH), else ``condor_submit_dag`` on PATH. The pool gets a
configuration of its own that includes the installation's and then makes it a loopback-only
personal pool in a fresh directory, with short negotiation intervals, simulated GPUs
(HTCondor's ``condor_gpu_discovery -simulate``: fixed UUIDs, assigned per job through
``CUDA_VISIBLE_DEVICES`` as on a GPU node) and several slots so workflows run side by side.

The schedd refuses root's jobs, so as root the pool, and everything submitted to it, runs as
an unprivileged account (created once, ``pegasus-pool``); otherwise as the caller. Whatever the
jobs read (the Python environment, Pegasus, inputs) must be readable by that account: a Python
in root's home is not.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Mapping, Sequence

POOL_ACCOUNT = "pegasus-pool"
SIMULATED_GPUS = 2
# the UUIDs condor_gpu_discovery -simulate:2,N reports (HTCondor's own test hook)
GPU_UUIDS = ("GPU-a0223334-4445-5667-899a-abbccddeeff0", "GPU-b1223334-4445-5667-899a-abbccddeeff0")
SETTINGS = {
    "NEGOTIATOR_INTERVAL": "1", "NEGOTIATOR_CYCLE_DELAY": "1", "NEGOTIATOR_MIN_INTERVAL": "1",
    "SCHEDD_INTERVAL": "1", "SCHEDD_MIN_INTERVAL": "0", "UPDATE_INTERVAL": "2",
    "STARTER_UPDATE_INTERVAL": "2", "DAGMAN_USER_LOG_SCAN_INTERVAL": "1",
    "DAGMAN_SUBMIT_DELAY": "0", "DAGMAN_AVOID_SLASH_TMP": "False",
    "NUM_CPUS": "6", "MEMORY": "6144",  # slots, not cores: the jobs here mostly wait
    "GPU_DISCOVERY_EXTRA": f"-simulate:2,{SIMULATED_GPUS}", "use feature": "GPUs",
    "use ROLE": "Personal", "CONDOR_HOST": "127.0.0.1", "NETWORK_INTERFACE": "127.0.0.1",
    "BIND_ALL_INTERFACES": "False", "USE_SHARED_PORT": "False", "START": "True",
    "SUSPEND": "False", "PREEMPT": "False", "KILL": "False", "RUNBENCHMARKS": "0",
}


class PoolUnavailable(RuntimeError):
    """Why no pool can run here: what is missing and how to provide it."""


def find_condor(environ: Mapping[str, str] = os.environ) -> tuple[Path, Path | None] | None:
    """(the directory holding ``condor_master``'s tools, the installation's condor_config) as
    a user's machine has them, or None."""
    config = environ.get("CONDOR_CONFIG")
    if config and Path(config).is_file():
        release = Path(config).resolve().parent.parent
        for tools in (release / "bin", *_on_path("condor_submit_dag", environ)):
            if (tools / "condor_submit_dag").is_file():
                return tools, Path(config)
    for tools in _on_path("condor_submit_dag", environ):
        config = tools.parent / "etc" / "condor_config"
        return tools, config if config.is_file() else None
    return None


def _on_path(command: str, environ: Mapping[str, str]) -> list[Path]:
    found = shutil.which(command, path=environ.get("PATH"))
    return [Path(os.path.realpath(found)).parent] if found else []


class PersonalPool:
    """A personal pool: :meth:`start` it, :meth:`stop` it (its master and every daemon, by
    PID).

    :param tools: HTCondor's ``bin`` (``sbin`` beside it holds the daemons)
    :param installation_config: the installation's condor_config, included first (None: none)
    :param root: an empty directory for the pool (local dir, config, the jobs' work)
    """

    def __init__(self, tools: Path, installation_config: Path | None, root: Path) -> None:
        self.tools, self.root = tools, root
        self.account = _pool_account()
        self.local = root / "local"
        for name in ("log", "spool", "execute", "lock", "run"):
            (self.local / name).mkdir(parents=True, exist_ok=True)
        self.config = root / "condor_config"
        include = f"include : {installation_config}\n" if installation_config else ""
        release = tools.parent
        self.config.write_text(include + f"RELEASE_DIR = {release}\nLOCAL_DIR = {self.local}\n"
                               + "".join(f"{k} = {v}\n" if not k.startswith("use ")
                                         else f"{k}: {v}\n" for k, v in SETTINGS.items()))
        self.work = root / "work"
        self.work.mkdir(exist_ok=True)
        self._chown(root, recursive=True)
        os.chmod(root, 0o755)
        self.master: subprocess.Popen | None = None

    def environment(self, base: Mapping[str, str] = os.environ) -> dict[str, str]:
        """``base`` with what every process talking to the pool needs (its tools first on
        PATH)."""
        tools = f"{self.tools}{os.pathsep}{self.tools.parent / 'sbin'}"
        return {**base, "CONDOR_CONFIG": str(self.config),
                "PATH": f"{tools}{os.pathsep}{base.get('PATH', '')}"}

    def start(self, timeout: float = 60) -> PersonalPool:
        """Start the master and wait for the GPU slots; on any failure or interruption
        (Ctrl-C) the pool is stopped and its directory removed before the error goes on.
        Start it from the main thread (or one that outlives the pool): the master is told to
        quit when the thread that started it ends."""
        master = self.tools.parent / "sbin" / "condor_master"
        errors = self.root / "condor_master.err"
        try:
            with open(errors, "wb") as stderr:
                self.master = self.popen([str(master), "-f"], env=self.environment(),
                                         stdout=subprocess.DEVNULL, stderr=stderr,
                                         preexec_fn=_quit_with_parent)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.master.poll() is not None:
                    said = errors.read_text(errors="replace").strip().splitlines()
                    raise PoolUnavailable(f"condor_master exited {self.master.returncode}: "
                                          f"{said[0] if said else 'it said nothing'}")
                if self.gpu_slots_ready():
                    return self
                time.sleep(0.3)
            raise PoolUnavailable(f"the pool was not ready in {timeout:.0f} s "
                                  f"(its logs: {self.local / 'log'}, removed)")
        except BaseException:
            self.stop()
            raise

    def gpu_slots_ready(self) -> bool:
        answer = self.run(["condor_status", "-startd", "-af", "TotalGPUs"], check=False)
        return answer.returncode == 0 and answer.stdout.split()[:1] == [str(SIMULATED_GPUS)]

    def stop(self) -> None:
        """SIGQUIT to the master (a fast shutdown: running jobs are killed), then wait for it
        and SIGKILL whatever of the pool is left (found by its config in the environment)."""
        if self.master and self.master.poll() is None:
            self.master.send_signal(signal.SIGQUIT)
            try:
                self.master.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.master.kill()
                self.master.wait()
        for pid in self.processes():
            _kill(pid)
        shutil.rmtree(self.root, ignore_errors=True)

    def processes(self) -> list[int]:
        """PIDs of every process started under this pool's configuration (daemons, DAGMan,
        jobs) that is still running."""
        marker = f"CONDOR_CONFIG={self.config}".encode()
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid():
                try:
                    with open(f"/proc/{entry}/environ", "rb") as environ:
                        if marker in environ.read().split(b"\0"):
                            found.append(int(entry))
                except OSError:
                    continue
        return found

    # -- running things as the pool's account --------------------------------------------

    def popen(self, command: Sequence[str], **kwargs) -> subprocess.Popen:
        return subprocess.Popen(command, **self._as_account(kwargs))

    def run(self, command: Sequence[str], env: Mapping[str, str] | None = None,
            check: bool = True, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
        """``command`` as the pool's account with the pool's environment on top of ``env``."""
        return subprocess.run(list(command), env=self.environment(env or os.environ),
                              capture_output=True, text=True, check=check, timeout=timeout,
                              **self._as_account(kwargs))

    @staticmethod
    def wait_for_job(log: Path, timeout: float = 600) -> None:
        """Wait until a job's event log says it left the queue (terminated or aborted). The
        log is read here, not by a ``condor_wait`` that would outlive a killed caller."""
        deadline = time.monotonic() + timeout
        while not re.search(r"^0(05|09) \(", log.read_text(errors="replace"), re.M):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{log}: the job did not leave the queue in {timeout:.0f} s")
            time.sleep(0.5)

    def wait_for_workflow(self, submit_dir: Path, timeout: float = 600) -> int:
        """Wait until DAGMan has left the queue and monitord has loaded the run (what
        ``pegasus-statistics`` and ``pegasus-analyzer`` need); returns DAGMan's exit status."""
        self.wait_for_job(next(submit_dir.glob("*.dag.dagman.log")), timeout)
        deadline = time.monotonic() + 120
        while not (submit_dir / "monitord.done").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        out = next(submit_dir.glob("*.dag.dagman.out")).read_text()
        found = re.findall(r"EXITING WITH STATUS (\d+)", out)
        return int(found[-1]) if found else -1

    def directory(self, name: str) -> Path:
        """A new directory under the pool's work area, owned by the pool's account."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.work))
        self._chown(path)
        os.chmod(path, 0o755)
        return path

    def give(self, path: Path) -> None:
        """Hand ``path`` and everything under it to the pool's account."""
        self._chown(path, recursive=True)

    def can_run(self, command: Sequence[str]) -> bool:
        try:
            return self.run(command, check=False, cwd="/").returncode == 0
        except OSError:
            return False

    def _as_account(self, kwargs: dict) -> dict:
        if self.account is None:
            return kwargs
        return {**kwargs, "user": self.account.pw_uid, "group": self.account.pw_gid,
                "extra_groups": []}

    def _chown(self, path: Path, recursive: bool = False) -> None:
        if self.account is None:
            return
        paths = [path, *(path.rglob("*") if recursive else ())]
        for item in paths:
            os.lchown(item, self.account.pw_uid, self.account.pw_gid)


def simulated_gpu_trace(trace: Path, directory: Path) -> Path:
    """A copy of replay ``trace`` in ``directory`` whose GPUs are the ones this pool simulates
    (their names and UUIDs), so a sidecar on a slot sees the GPU HTCondor assigned, as on a
    GPU node."""
    import json

    document = json.loads(trace.read_text())
    for device, uuid in zip(document["devices"], GPU_UUIDS):
        device.update(uuid=uuid, name="Tesla V100-PCIE-16GB")
    path = directory / f"simulated-{trace.name}"
    path.write_text(json.dumps(document))
    return path


def _pool_account() -> pwd.struct_passwd | None:
    """The unprivileged account the pool runs as when we are root (None: the caller)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POOL_ACCOUNT)
    except KeyError:
        subprocess.run(["useradd", "--system", "--create-home", "--home-dir",
                        f"/var/lib/{POOL_ACCOUNT}", "--shell", "/bin/sh", POOL_ACCOUNT],
                       check=True, capture_output=True)
        return pwd.getpwnam(POOL_ACCOUNT)


def _quit_with_parent() -> None:
    """In the master, before exec: a fast shutdown when whoever started it dies, so a killed
    test run leaves no pool behind (prctl PR_SET_PDEATHSIG, after the change of account)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGQUIT)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def start_pool(environ: Mapping[str, str] = os.environ,
               parent: str | None = None) -> PersonalPool:
    """Find HTCondor and start a pool in a new directory (under ``parent``, default the
    system's temporary directory); raises :class:`PoolUnavailable` saying what is missing."""
    found = find_condor(environ)
    config = environ.get("CONDOR_CONFIG")
    if found is None and config:
        raise PoolUnavailable(f"CONDOR_CONFIG={config} is not an HTCondor installation's "
                              "condor_config with its tools: fix it, or unset it and put "
                              "condor_submit_dag on PATH")
    if found is None:
        raise PoolUnavailable("no HTCondor: set CONDOR_CONFIG to its condor_config, or put "
                              "condor_submit_dag on PATH")
    root = Path(tempfile.mkdtemp(prefix="pegasus-globus-pool-", dir=parent))
    pool = PersonalPool(*found, root)
    problem = None
    if not pool.can_run(["test", "-w", str(root)]):
        problem = (f"the pool's account ({POOL_ACCOUNT}) cannot reach {root} (a directory "
                   "private to root?): use a directory it can reach")
    elif not pool.can_run([sys.executable, "-c", "pass"]):
        problem = (f"the pool's account ({POOL_ACCOUNT}) cannot run this environment's Python "
                   f"({sys.executable}, {os.path.realpath(sys.executable)}): build the "
                   "environment on a Python outside root's home (make clean && make test "
                   "PYTHON=/usr/bin/python3)")
    if problem:
        shutil.rmtree(root, ignore_errors=True)
        raise PoolUnavailable(problem)
    return pool.start()

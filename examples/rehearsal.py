"""Plan and run workflows with a real Pegasus installation against the local Globus emulator:
what `make demo` and the real-Pegasus tests do.

Pegasus is found as a user's machine has it: ``$PEGASUS_HOME``, else ``pegasus-plan`` on PATH.
The installation is copied once and ``pegasus-globus-setup install`` puts this project's
Globus handler into the copy, so the user's installation is never changed. On a personal
HTCondor pool (:mod:`personal_pool`) workflows are planned with the condor code generator and
``pegasus-plan --submit`` hands them to DAGMan, every command run as the pool's account.
Without HTCondor they are planned with the Shell code generator (``pegasus.code.generator =
Shell``), which writes a script that runs every job through ``pegasus-kickstart`` and every
record through ``pegasus-exitcode``, on site ``local`` only, one job at a time; ``pegasus-run``
runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

BIN = Path(sys.executable).parent  # this environment's commands (pegasus-kickstart-gpu, ...)


def find_pegasus(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The Pegasus installation: ``$PEGASUS_HOME``, else the one ``pegasus-plan`` on PATH is in."""
    home = environ.get("PEGASUS_HOME")
    if home:
        return Path(home) if (Path(home) / "bin" / "pegasus-plan").is_file() else None
    found = shutil.which("pegasus-plan", path=environ.get("PATH"))
    return Path(os.path.realpath(found)).parent.parent if found else None


@dataclass
class Outcome:
    """What a pegasus-plan or pegasus-run printed, and how long it took (seconds)."""

    returncode: int
    output: str
    seconds: float
    submit_dir: Path | None = None

    def lines(self, pattern: str) -> list[str]:
        return [line.strip() for line in self.output.splitlines() if re.search(pattern, line)]


class RealPegasus:
    """A private copy of a Pegasus installation that runs this project's Globus handler.

    :param installation: the user's Pegasus (see :func:`find_pegasus`)
    :param directory: where the copy goes (``directory/pegasus``)
    :param pool: a running :class:`personal_pool.PersonalPool` to submit to (None: the Shell
        code generator, no HTCondor)
    """

    def __init__(self, installation: Path, directory: Path, pool: Any = None) -> None:
        self.home, self.pool = directory / "pegasus", pool
        if not (self.home / "bin" / "pegasus-plan").exists():
            shutil.rmtree(self.home, ignore_errors=True)
            shutil.copytree(installation, self.home, symlinks=True)
            subprocess.run([str(BIN / "pegasus-globus-setup"), "install", "--pegasus-home",
                            str(self.home)], check=True, capture_output=True, text=True)

    def version(self) -> str:
        return subprocess.run([str(self.home / "bin" / "pegasus-version")], capture_output=True,
                              text=True).stdout.strip()

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` with this copy first on PATH, then this project's commands (and the pool's
        tools and configuration, on a pool)."""
        env = {**base, "PEGASUS_HOME": str(self.home), "PEGASUS_METRICS": "false",
               "PATH": f"{self.home / 'bin'}{os.pathsep}{BIN}{os.pathsep}{base.get('PATH', '')}"}
        return self.pool.environment(env) if self.pool else env

    def write_properties(self, path: Path, sites: Path, **extra: str) -> Path:
        generator = "condor" if self.pool else "Shell"
        properties = {"pegasus.code.generator": generator, "pegasus.data.configuration": "sharedfs",
                      "pegasus.catalog.site.file": str(sites), "pegasus.transfer.links": "false",
                      **extra}
        path.write_text("".join(f"{key} = {value}\n" for key, value in properties.items()))
        return path

    def plan(self, workflow: Path, properties: Path, submit: Path, env: Mapping[str, str],
             output_site: str | None = None, cleanup: str = "leaf",
             site: str = "local", staging_site: str | None = None,
             cluster: str | None = None) -> Outcome:
        """``pegasus-plan``, with ``--submit`` on a pool; the outcome's submit_dir is the run
        directory. The Shell code generator plans for site ``local`` only."""
        command = [str(self.home / "bin" / "pegasus-plan"), "--conf", str(properties), "--sites",
                   site, "--dir", str(submit), "--cleanup", cleanup]
        if self.pool:
            command.append("--submit")
        if cluster:
            command += ["--cluster", cluster]
        if output_site:
            command += ["--output-sites", output_site]
        if staging_site:
            command += ["--staging-site", f"{site}={staging_site}"]
        outcome = self._run([*command, str(workflow)], env, cwd=workflow.parent)
        match = re.search(r"pegasus-(?:run|remove)\s+(\S+)", outcome.output)
        outcome.submit_dir = Path(match.group(1)) if match else None
        return outcome

    def exitcode(self, record: str) -> subprocess.CompletedProcess:
        """pegasus-exitcode's verdict on a record's text, run on a copy named as DAGMan names
        it (``job.out``) in a directory of its own, so no run is touched."""
        with tempfile.TemporaryDirectory() as scratch:
            out = Path(scratch) / "job.out"
            out.write_text(record)
            return subprocess.run([str(self.home / "bin" / "pegasus-exitcode"), "--no-rename",
                                   str(out)], capture_output=True, text=True, cwd=scratch,
                                  env=self.environment(os.environ))

    def run(self, submit_dir: Path, env: Mapping[str, str]) -> Outcome:
        return self._run([str(self.home / "bin" / "pegasus-run"), str(submit_dir)], env,
                         cwd=submit_dir)

    def wait(self, submit_dir: Path, timeout: float = 600) -> Outcome:
        """On a pool: wait for a submitted workflow (DAGMan done, monitord done); the
        outcome's seconds are the workflow's wall time as DAGMan's jobstate.log has it."""
        status = self.pool.wait_for_workflow(submit_dir, timeout)
        out = next(submit_dir.glob("*.dag.dagman.out")).read_text()
        stamps = [int(line.split()[0]) for line in
                  (submit_dir / "jobstate.log").read_text().splitlines() if line[:1].isdigit()]
        return Outcome(status, out, float(stamps[-1] - stamps[0]) if stamps else 0.0, submit_dir)

    def tool(self, name: str, *arguments: str, env: Mapping[str, str] = os.environ,
             cwd: Path | None = None) -> Outcome:
        """One of Pegasus' own tools (``pegasus-status``, ``pegasus-statistics``, ...), as the
        pool's account where there is a pool."""
        return self._run([str(self.home / "bin" / name), *arguments], env, cwd=cwd or Path("/"))

    def _run(self, command: list[str], env: Mapping[str, str], cwd: Path) -> Outcome:
        started = time.monotonic()
        if self.pool:
            result = self.pool.run(command, env=self.environment(env), cwd=cwd, check=False,
                                   timeout=900)
        else:
            result = subprocess.run(command, env=dict(env), cwd=cwd, capture_output=True,
                                    text=True, timeout=900)
        return Outcome(result.returncode, result.stdout + result.stderr,
                       time.monotonic() - started)


def local_site(scratch: Path, storage: Path, name: str = "local") -> object:
    """A site with plain file:// scratch and storage (for workflows without Globus)."""
    from Pegasus.api import Directory, FileServer, Operation, Site

    return Site(name).add_directories(
        Directory(Directory.SHARED_SCRATCH, str(scratch)).add_file_servers(
            FileServer(f"file://{scratch}", Operation.ALL)),
        Directory(Directory.LOCAL_STORAGE, str(storage)).add_file_servers(
            FileServer(f"file://{storage}", Operation.ALL)))


def condor_site(name: str, scratch: Path, storage: Path, pegasus_home: Path) -> object:
    """A pool's worker site: file:// scratch and storage, jobs in the vanilla universe (a job
    there gets none of the submitter's environment: what it needs goes in ``env`` profiles)."""
    site = local_site(scratch, storage, name=name)
    site.add_pegasus_profile(style="condor").add_condor_profile(universe="vanilla")
    site.add_env(PEGASUS_HOME=str(pegasus_home))
    return site


def example(name: str) -> object:
    """The example workflow module examples/workflows/<name>/workflow.py."""
    import importlib.util

    path = Path(__file__).resolve().parent / "workflows" / name / "workflow.py"
    spec = importlib.util.spec_from_file_location(f"example_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def nightly_backup(pegasus: RealPegasus, emulator: object, directory: Path, data: str,
                   results: str, archive: str, nights: int = 3,
                   job_env: Mapping[str, str] | None = None) -> tuple[Path, Path]:
    """The nightly_backup workflow for site ``local`` whose shared scratch (``directory/scratch``)
    is a Globus collection of ``emulator``, outputs to the results collection under /nightly.
    ``job_env``: what its jobs need in their environment (on a pool, they get none of ours).

    :returns: the workflow file and the properties file to plan them with
    """
    import uuid

    from Pegasus.api import SiteCatalog

    from pegasus_globus.sites import globus_scratch_site, globus_storage_site

    scratch, scratch_collection = directory / "scratch", str(uuid.uuid4())
    scratch.mkdir(parents=True, exist_ok=True)
    emulator.map_collection(scratch_collection, scratch)  # type: ignore[attr-defined]
    workflow = example("nightly_backup").build(  # type: ignore[attr-defined]
        data, results, archive, directory, nights=nights, site="local")
    site = globus_scratch_site("local", scratch_collection, str(scratch))
    site.add_env(**(job_env or {}))
    SiteCatalog().add_sites(site, globus_storage_site("results", results, "/nightly")).write(
        str(directory / "sites.yml"))
    properties = pegasus.write_properties(directory / "pegasus.properties",
                                          directory / "sites.yml",
                                          **{"pegasus.transfer.arguments": "--max-attempts 1"})
    return workflow, properties


def gpu_training(pegasus: RealPegasus, directory: Path, trace: Path | None,
                 exit_code: int = 0, epochs: int = 2) -> tuple[Path, Path]:
    """The gpu_training workflow with plain file:// scratch, for site ``local`` (on a pool:
    ``condorpool``, where HTCondor assigns the job one of its simulated GPUs); the sidecar
    replays ``trace`` (None: the real GPUs through NVML).

    :returns: the workflow file and the properties file to plan them with
    """
    from Pegasus.api import SiteCatalog

    sites = [local_site(directory / "scratch", directory / "outputs")]
    if pegasus.pool:
        from personal_pool import simulated_gpu_trace

        directory.mkdir(parents=True, exist_ok=True)
        trace = simulated_gpu_trace(trace, directory) if trace else None
        sites.append(condor_site("condorpool", directory / "pool-scratch",
                                 directory / "outputs", pegasus.home))
    workflow = example("gpu_training").build(  # type: ignore[attr-defined]
        directory, interval=1, epochs=epochs, site=sites[-1].name, exit_code=exit_code,
        launcher_arguments=f"--backend replay:{trace}" if trace else "")
    SiteCatalog().add_sites(*sites).write(str(directory / "sites.yml"))
    properties = pegasus.write_properties(directory / "pegasus.properties",
                                          directory / "sites.yml")
    return workflow, properties

"""Run a Pegasus condor plan on this host without HTCondor: DAGMan's part, for site ``local``.

Pegasus' Shell code generator cannot run PegasusLite (nonsharedfs, condorio) jobs: it runs
them in the site's scratch directory, where ``pegasus-lite-common.sh`` is not, and gives the
submit host's data jobs no standard input. A condor plan for site ``local`` puts every job in
HTCondor's local universe through Pegasus' own ``pegasus-lite-local.sh``, which does HTCondor's
file transfer itself. What is left of HTCondor is small, and this module does it:

- DAGMan: nodes in ``PARENT ... CHILD`` order, one at a time; each node's ``SCRIPT POST`` in
  the DAG's directory with ``$RETURN`` (the job's exit code, or -N for a signal); ``RETRY N``.
- condor_submit for universe local: ``executable``, ``arguments`` and ``environment`` (HTCondor's
  quoted syntax; ``$(wf_submit_dir)``, ``$(cluster)``, ``$(process)`` and ``$(RETRY)``
  expanded), ``input``, ``output``, ``error``, ``initialdir`` (default: the DAG's directory,
  where DAGMan submits from); ``_CONDOR_SCRATCH_DIR`` a new directory per job, removed after
  it. The job's environment is the caller's plus the submit file's (as ``getenv = true``).

Anything else (another universe, a SUBDAG, a PRE script) is refused, not approximated.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

# What pegasus-plan --condor needs on PATH: it runs `condor_submit_dag -no_submit DAG`, which
# writes DAG.condor.sub (DAGMan's own submit file), and plans on without it otherwise.
CONDOR_SUBMIT_DAG = """#!/bin/sh
for dag; do :; done
printf 'universe = scheduler\\nexecutable = condor_dagman\\narguments = "-Dag %s"\\nqueue\\n' \
    "$dag" > "$dag.condor.sub"
"""


def condor_submit_dag_stand_in(directory: Path) -> Path:
    """Write ``directory/condor_submit_dag`` (for planning only); returns ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "condor_submit_dag"
    script.write_text(CONDOR_SUBMIT_DAG)
    script.chmod(0o755)
    return directory


@dataclass
class Node:
    """One ``JOB`` of the DAG: its submit file, POST script, retries and parents."""

    name: str
    submit_file: Path
    post: list[str] = field(default_factory=list)
    retries: int = 0
    parents: set[str] = field(default_factory=set)


def condor_words(text: str) -> list[str]:
    """Split HTCondor's new argument/environment syntax: whitespace-separated words, single
    quotes group, ``''`` inside them is one quote."""
    words, word, quoted, index, started = [], [], False, 0, False
    while index < len(text):
        char = text[index]
        if char == "'":
            if quoted and text[index + 1:index + 2] == "'":
                word.append("'")
                index += 1
            else:
                quoted, started = not quoted, True
        elif char.isspace() and not quoted:
            if started:
                words.append("".join(word))
            word, started = [], False
        else:
            word.append(char)
            started = True
        index += 1
    if quoted:
        raise ValueError(f"unbalanced single quote in {text!r}")
    if started:
        words.append("".join(word))
    return words


def read_dag(dag: Path) -> list[Node]:
    """The DAG's nodes in an order that runs every parent before its children."""
    nodes: dict[str, Node] = {}
    for line in dag.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#") or words[0] in ("MAXJOBS", "VARS", "CATEGORY"):
            continue  # one node at a time: throttles and the node-retry attribute don't matter
        keyword = words[0].upper()
        if keyword == "JOB":
            nodes[words[1]] = Node(words[1], dag.parent / words[2])
        elif keyword == "SCRIPT" and words[1].upper() == "POST":
            nodes[words[2]].post = words[3:]
        elif keyword == "RETRY":
            nodes[words[1]].retries = int(words[2])
        elif keyword == "PARENT":
            split = words.index("CHILD")
            for child in words[split + 1:]:
                nodes[child].parents.update(words[1:split])
        else:
            raise ValueError(f"{dag}: {keyword} is not supported by this stand-in: {line}")
    ordered: list[Node] = []
    done: set[str] = set()
    while len(ordered) < len(nodes):
        ready = [n for n in nodes.values() if n.name not in done and n.parents <= done]
        if not ready:
            raise ValueError(f"{dag}: the DAG has a cycle")
        ordered.extend(ready)
        done.update(n.name for n in ready)
    return ordered


def read_submit(path: Path) -> dict[str, str]:
    """A submit file's ``key = value`` settings (keys lower-cased)."""
    settings = {}
    for line in path.read_text().splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.lstrip().startswith(("#", "+")):
            settings[key.strip().lower()] = value.strip()
    return settings


def expand(value: str, macros: Mapping[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: macros.get(m.group(1).lower(), m.group(0)), value)


def unquoted(value: str) -> str:
    """A new-syntax ``arguments``/``environment`` value without its double quotes (``""``
    inside stands for one)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1].replace('""', '"')
    return value


def run_job(node: Node, dag_dir: Path, cluster: int, retry: int,
            base_env: Mapping[str, str]) -> int:
    """Run one node's job as HTCondor's local universe would: its exit code, -N for signal N."""
    settings = read_submit(node.submit_file)
    if settings.get("universe", "vanilla") != "local":
        raise ValueError(f"{node.submit_file}: universe {settings.get('universe')} needs HTCondor")
    macros = {**settings, "cluster": str(cluster), "process": "0", "retry": str(retry)}
    arguments = condor_words(expand(unquoted(settings.get("arguments", "")), macros))
    environment = dict(base_env)
    for word in condor_words(expand(unquoted(settings.get("environment", "")), macros)):
        key, _, value = word.partition("=")
        environment[key] = value
    initial_dir = dag_dir / settings.get("initialdir", ".")
    scratch = Path(tempfile.mkdtemp(prefix=f"condor-local-{cluster}-"))
    environment["_CONDOR_SCRATCH_DIR"] = str(scratch)
    stdin = settings.get("input")
    try:
        with open(initial_dir / (stdin or os.devnull), "rb") as source, \
                open(initial_dir / settings["output"], "wb") as out, \
                open(initial_dir / settings["error"], "wb") as err:
            return subprocess.run([settings["executable"], *arguments], stdin=source, stdout=out,
                                  stderr=err, cwd=initial_dir, env=environment).returncode
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run_dag(dag: Path, env: Mapping[str, str], log=print) -> int:
    """Run every node of ``dag`` (its POST script decides a node's outcome); 0 when all
    succeeded, else 1 after the first node that failed all its tries."""
    for cluster, node in enumerate(read_dag(dag), start=1):
        for retry in range(node.retries + 1):
            status = run_job(node, dag.parent, cluster, retry, env)
            log(f"JOB {node.name} try {retry + 1}: exit {status}")
            if node.post:
                post = [str(status) if word == "$RETURN" else word for word in node.post]
                script = subprocess.run(post, cwd=dag.parent, env=dict(env),
                                        capture_output=True, text=True)
                status = script.returncode
                log(f"POST {node.name}: exit {status} {script.stdout}{script.stderr}".strip())
            if status == 0:
                break
        else:
            return 1
    return 0

"""What a workflow's run will touch on Globus, read from its catalogs as Pegasus reads them.

The planner takes the site, replica and transformation catalogs from the workflow itself when
they are embedded in it, else from the files the properties name
(``pegasus.catalog.site.file``, ``pegasus.catalog.replica.file``,
``pegasus.catalog.transformation.file``), else from ``sites.yml``, ``replicas.yml`` and
``transformations.yml`` in the working directory; properties from ``--conf``, else
``pegasus.properties`` in the working directory. Replicas are read from the workflow and the
file both (the planner consults both). A site catalog without a site ``local`` gets the one
the planner makes (:func:`default_local_site`); a site's ``data.configuration`` Pegasus profile
wins over the properties' ``pegasus.data.configuration``, as in the planner. Every field read
has its schema type checked first (:mod:`pegasus_globus.timers.shape`). Nothing here talks to
Globus.

Which go:// collections the bridge (``pegasus-globus-transfer``) moves data through is decided
by the bridge's own rule (:func:`pegasus_globus.bridge_cli.split`), applied to the transfers the
planner makes for the data configuration: stage-in from the replicas to the staging site's
scratch, PegasusLite's pulls and pushes between that scratch and the worker's directory
(nonsharedfs), and stage-out to the output sites' storage.
"""

from __future__ import annotations

import io
import json
import posixpath
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..timers.shape import catalog_problems, summary, workflow_problems
from ..timers.workflow import PlanError, TimerPlan, plan, read_yaml
from ..transfer.urls import parse_go_url

DATA_CONFIGURATIONS = ("sharedfs", "nonsharedfs", "condorio")
DEFAULT_DATA_CONFIGURATION = "condorio"  # Pegasus 5's default
WORKER = "file://$PWD"  # where PegasusLite puts a job's files on the worker
SCRATCH_TYPES = ("sharedScratch",)
STORAGE_TYPES = ("sharedStorage", "localStorage")
_PROPERTY = re.compile(r"\s*([^=:\s]+)\s*[=:\s]\s*(.*)")  # key = value, key: value, key value


class CatalogError(ValueError):
    """An input that cannot be read; the message names it and the fix."""


@dataclass(frozen=True)
class Input:
    """A go:// replica of a file some job reads and no job writes."""

    lfn: str
    url: str
    jobs: tuple[str, ...]

    @property
    def where(self) -> str:
        more = f" and {len(self.jobs) - 3} more" if len(self.jobs) > 3 else ""
        return f"input {self.lfn} of job {', '.join(self.jobs[:3])}{more}"

    @property
    def expects_directory(self) -> bool:
        return self.url.endswith("/")  # as pegasus-globus-online moves it: recursively


@dataclass(frozen=True)
class Place:
    """A go:// directory the run writes to (or reads from): created if missing."""

    url: str
    where: str


@dataclass
class Run:
    """Everything the run will touch on Globus."""

    name: str
    data_configuration: str
    inputs: list[Input] = field(default_factory=list)
    places: list[Place] = field(default_factory=list)
    timers: list[TimerPlan] = field(default_factory=list)
    timer_problems: list[str] = field(default_factory=list)
    registers_timers: bool = False
    bad_urls: list[tuple[str, str]] = field(default_factory=list)  # (where, what)
    https: dict[str, str] = field(default_factory=dict)  # collection -> why

    def collections(self) -> dict[str, str]:
        """Every collection the run touches -> where it is first used."""
        found: dict[str, str] = {}
        urls = [(i.url, i.where) for i in self.inputs] + [(p.url, p.where) for p in self.places]
        for url, where in urls:
            found.setdefault(parse_go_url(url).collection, where)
        return found


# -- reading the inputs -----------------------------------------------------------------------


def as_document(thing: Any, what: str) -> dict[str, Any]:
    """A catalog or workflow as the dict its YAML holds: a path, or a Pegasus.api object."""
    if isinstance(thing, Mapping):
        return dict(thing)
    if hasattr(thing, "write") and not isinstance(thing, (str, Path)):
        stream = io.StringIO()  # what wf.plan() hands the planner, as JSON
        thing.write(stream, _format="json")
        return dict(json.loads(stream.getvalue()))
    path = Path(thing)
    try:
        document = read_yaml(path.read_text())
    except OSError as error:
        raise CatalogError(f"cannot read {what} {path}: {error.strerror}") from None
    except Exception as error:  # yaml.YAMLError, UnicodeDecodeError
        raise CatalogError(f"{what} {path} is not YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(document, dict):
        raise CatalogError(f"{what} {path} is not a Pegasus 5 YAML catalog")
    return document


def read_properties(thing: Any) -> dict[str, str]:
    """Java-style properties (``key = value``, ``key: value``, ``#`` and ``!`` comments):
    a path, a mapping, or a Pegasus.api ``Properties``."""
    if thing is None:
        default = Path("pegasus.properties")  # the planner reads it from the working directory
        if not default.is_file():
            return {}
        thing = default
    if isinstance(thing, Mapping):
        return {str(k): str(v) for k, v in thing.items()}
    if hasattr(thing, "write") and not isinstance(thing, (str, Path)):
        stream = io.StringIO()
        thing.write(stream)
        text = stream.getvalue()
    else:
        try:
            text = Path(thing).read_text()
        except OSError as error:
            raise CatalogError(f"cannot read properties {thing}: {error.strerror}") from None
    properties = {}
    for line in text.splitlines():
        match = _PROPERTY.match(line)
        if match and not line.lstrip().startswith(("#", "!")):
            properties[match.group(1)] = match.group(2).strip()
    return properties


def _catalog(explicit: Any, inline: Any, properties: dict[str, str], key: str, default: str,
             what: str) -> dict[str, Any]:
    if explicit is not None:
        return _shaped(as_document(explicit, what), explicit, what)
    if isinstance(inline, dict):
        return inline  # checked with the workflow
    named = properties.get(key)
    if named:
        return _shaped(as_document(named, f"{what} ({key})"), named, f"{what} ({key})")
    return _shaped(as_document(default, what), default, what) if Path(default).is_file() else {}


def _shaped(document: dict[str, Any], source: Any, what: str) -> dict[str, Any]:
    """``document`` once its fields have the schema's types (nothing reads them before)."""
    problems = catalog_problems(document, what.split()[0])
    if problems:
        shown = source if isinstance(source, (str, Path)) else "given"
        raise CatalogError(f"{what} {shown} is not a Pegasus 5 {what.split()[0]} catalog: "
                           f"{summary(problems)}")
    return document


def _list(value: Any) -> list[Any]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


# -- what the run touches ---------------------------------------------------------------------


def read_run(workflow: Any, site_catalog: Any = None, replica_catalog: Any = None,
             properties: Any = None) -> Run:
    """The run's go:// inputs, directories, timers and bridge collections.

    :raises CatalogError: an input cannot be read (the message names it)
    """
    document = as_document(workflow, "workflow")
    shown = workflow if isinstance(workflow, (str, Path)) else "the workflow"
    if "jobs" not in document:
        raise CatalogError(f"{shown} is not a Pegasus 5 workflow (no 'jobs')")
    problems = workflow_problems(document)  # before anything walks or prints a value
    if problems:
        raise CatalogError(f"{shown} is not a Pegasus 5 workflow: {summary(problems)}")
    props = read_properties(properties)
    sites = _catalog(site_catalog, document.get("siteCatalog"), props,
                     "pegasus.catalog.site.file", "sites.yml", "site catalog")
    replica_files = [_catalog(replica_catalog, None, props, "pegasus.catalog.replica.file",
                              "replicas.yml", "replica catalog")]
    transformations = _catalog(None, document.get("transformationCatalog"), props,
                               "pegasus.catalog.transformation.file", "transformations.yml",
                               "transformation catalog")
    replicas: dict[str, list[str]] = {}
    for catalog in [document.get("replicaCatalog") or {}, *replica_files]:
        for replica in _list(catalog.get("replicas")):
            for pfn in _list(replica.get("pfns")):
                replicas.setdefault(str(replica.get("lfn")), []).append(str(pfn.get("pfn", "")))

    run = Run(str(document.get("name") or workflow), props.get(
        "pegasus.data.configuration", DEFAULT_DATA_CONFIGURATION).strip().lower())
    if run.data_configuration not in DATA_CONFIGURATIONS:
        raise CatalogError(f"pegasus.data.configuration = {run.data_configuration}: use one of "
                           f"{', '.join(DATA_CONFIGURATIONS)}")
    readers: dict[str, list[str]] = {}
    written: set[str] = set()
    staged_out: list[str] = []
    executables: set[str] = set()
    for job in _list(document.get("jobs")):
        job_id = str(job.get("id") or job.get("name"))
        executables.add(str(job.get("name")))
        for use in _list(job.get("uses")):
            lfn = str(use.get("lfn"))
            if use.get("type") == "input":
                readers.setdefault(lfn, []).append(job_id)
            elif use.get("type") in ("output", "checkpoint"):
                written.add(lfn)
                if use.get("stageOut", True):
                    staged_out.append(lfn)
        if job.get("name") == "pegasus-globus-timer" and "register" in map(
                str, job.get("arguments") or []):
            run.registers_timers = True
    for lfn, jobs in readers.items():
        if lfn in written:
            continue  # made by the run itself
        for url in replicas.get(lfn, []):
            if not url.startswith("go://"):
                continue
            item = Input(lfn, url, tuple(jobs))
            try:
                parse_go_url(url)
                run.inputs.append(item)
            except ValueError as error:
                run.bad_urls.append((item.where, str(error)))

    try:
        run.timers = plan(document, replica_files)
    except PlanError as error:
        run.timer_problems = error.problems
    run.registers_timers = run.registers_timers or bool(run.timers)

    given = {str(s.get("name")): s for s in _list(sites.get("sites"))}
    site_docs = {"local": default_local_site(Path.cwd()), **given}
    compute = _compute_sites(transformations, executables, site_docs, given)
    configurations = {name: _configuration(site_docs.get(name, {}), run.data_configuration,
                                           name) for name in compute}
    # outputs go to the sites the catalog names (pegasus-plan --output-sites): the local site
    # the planner makes up is one only with `-o local`, which the check cannot see, and
    # counting it asked the nightly example (-o results) for a scope its run never uses
    storage = [(name, url) for name, site in given.items()
               for url in _directory_urls(site, STORAGE_TYPES)]
    for name in compute:
        staging = "local" if configurations[name] == "condorio" else name
        for url in _directory_urls(site_docs.get(staging, {}), SCRATCH_TYPES):
            run.places.append(Place(url, f"site {staging}, sharedScratch"))
    for name, url in storage:
        if staged_out:
            run.places.append(Place(url, f"site {name}, storage for outputs"))
    for timer in run.timers:
        for collection, path in (items for item in timer.body_items() for items in (
                (timer.source, item[0]), (timer.destination, item[1]))):
            run.places.append(Place(f"go://{collection}{path}", f"timer '{timer.name}'"))
    for place in list(run.places):
        if not place.url.startswith("go://"):
            run.places.remove(place)
            continue
        try:
            parse_go_url(place.url)
        except ValueError as error:
            run.places.remove(place)
            run.bad_urls.append((place.where, str(error)))
    run.places = list(dict.fromkeys(run.places))
    run.https = _bridged(run, compute, configurations, site_docs, storage, staged_out, props)
    return run


def default_local_site(directory: Path) -> dict[str, Any]:
    """The site ``local`` the planner makes when the site catalog has none: scratch in
    ``wf-scratch/LOCAL`` and storage in ``wf-output`` below the directory it runs in."""
    scratch, storage = directory / "wf-scratch" / "LOCAL", directory / "wf-output"
    return {"name": "local", "directories": [
        {"type": "sharedScratch", "path": str(scratch),
         "fileServers": [{"url": f"file://{scratch}", "operation": "all"}]},
        {"type": "localStorage", "path": str(storage),
         "fileServers": [{"url": f"file://{storage}", "operation": "all"}]}]}


def _configuration(site: dict[str, Any], default: str, name: str) -> str:
    """The site's own ``data.configuration`` Pegasus profile, which the planner prefers to
    the properties' ``pegasus.data.configuration``."""
    profiles = site.get("profiles") if isinstance(site.get("profiles"), dict) else {}
    pegasus = profiles.get("pegasus") if isinstance(profiles.get("pegasus"), dict) else {}
    value = pegasus.get("data.configuration")
    if value is None:
        return default
    configuration = str(value).strip().lower()
    if configuration not in DATA_CONFIGURATIONS:
        raise CatalogError(f"site {name}: pegasus profile data.configuration = {configuration}: "
                           f"use one of {', '.join(DATA_CONFIGURATIONS)}")
    return configuration


def _compute_sites(transformations: dict[str, Any], executables: set[str],
                   sites: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Where the jobs can run: the transformation catalog's sites for the workflow's
    transformations; without one, every site of the catalog with a scratch directory."""
    named = [str(site.get("name")) for entry in _list(transformations.get("transformations"))
             if entry.get("name") in executables for site in _list(entry.get("sites"))]
    named = [name for name in dict.fromkeys(named) if name in sites]
    return named or [name for name, site in given.items()
                     if _directory_urls(site, SCRATCH_TYPES)]


def _directory_urls(site: dict[str, Any], types: tuple[str, ...]) -> list[str]:
    urls = []
    for directory in _list(site.get("directories")):
        if directory.get("type") in types:
            servers = [str(s.get("url")) for s in _list(directory.get("fileServers"))]
            urls += servers or [f"file://{directory.get('path')}"]
    return urls


def _bridged(run: Run, compute: list[str], configurations: dict[str, str],
             sites: dict[str, Any], storage: list[tuple[str, str]], staged_out: list[str],
             props: dict[str, str]) -> dict[str, str]:
    """Collections the bridge moves data through: the planner's transfers for this data
    configuration, put through the bridge's own go<->file rule."""
    from ..bridge_cli import split

    bypass = props.get("pegasus.transfer.bypass.input.staging", "").lower() == "true"
    entries: list[dict[str, Any]] = []

    def transfer(why: str, source: str, target: str) -> None:
        entries.append({"type": "transfer", "lfn": why, "src_urls": [{"url": source}],
                        "dest_urls": [{"url": target}]})

    for name in compute:
        configuration = configurations[name]
        staging = "local" if configuration == "condorio" else name
        for scratch in _directory_urls(sites.get(staging, {}), SCRATCH_TYPES):
            scratch = scratch.rstrip("/")
            for item in run.inputs:
                target = WORKER if bypass and configuration == "nonsharedfs" else scratch
                transfer(f"{item.where}, staged in to {target}", item.url,
                         posixpath.join(target, item.lfn))
            if configuration == "nonsharedfs":  # PegasusLite on the worker
                transfer(f"site {staging}'s scratch, pulled to the worker (nonsharedfs)",
                         f"{scratch}/f", f"{WORKER}/f")
                transfer(f"site {staging}'s scratch, pushed to from the worker (nonsharedfs)",
                         f"{WORKER}/f", f"{scratch}/f")
            for site, url in storage if staged_out else ():
                transfer(f"outputs staged out from site {staging}'s scratch to site {site}",
                         f"{scratch}/f", f"{url.rstrip('/')}/f")
    moves, _ = split(entries)
    found: dict[str, str] = {}
    for move in moves:
        if move.direction in ("download", "upload"):
            try:
                found.setdefault(parse_go_url(move.url).collection, move.lfn)
            except ValueError:
                continue  # reported with its site or replica
    return found

"""Nightly backup: stage a dataset in from a Globus collection, analyse it, and back the
results up every night with a Globus timer declared in the workflow's metadata.

    python workflow.py --data <uuid> --results <uuid> --archive <uuid>   (collection UUIDs)

Plan it with outputs going to the results collection (``--output-sites results``: see
``pegasus-globus-setup snippets`` for the site catalog), so the timer backs up what the run
produced.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from Pegasus.api import File, Job, ReplicaCatalog, Transformation, TransformationCatalog, Workflow

from pegasus_globus.timers.authoring import add_timer_registration, globus_timer

HERE = Path(__file__).resolve().parent


def build(data: str, results: str, archive: str, directory: Path, nights: int = 30,
          site: str = "condorpool") -> Path:
    """Write workflow.yml into ``directory``; returns its path.

    :param data: collection holding the input dataset (``/data/raw.csv``)
    :param results: collection where the analysis results are kept (``/nightly/``)
    :param archive: collection the results are backed up to every night
    :param site: the compute site the jobs run on
    """
    directory.mkdir(parents=True, exist_ok=True)
    workflow = Workflow("nightly-backup")
    raw = File("raw.csv")
    catalog = ReplicaCatalog().add_replica("globus", raw, f"go://{data}/data/raw.csv")
    analyse = Transformation("analyse", site=site, pfn=str(HERE / "analyse.py"),
                             is_stageable=False)
    transformations = TransformationCatalog().add_transformations(analyse)
    job = Job(analyse, _id="analyse").add_args(raw).add_inputs(raw)
    job.add_outputs(File("summary.txt"), File("report.html"))
    globus_timer(job, interval="1d", source=f"go://{results}/nightly/",
                 destination=f"go://{archive}/backups/nightly/", stop_after_runs=nights,
                 sync_level="checksum")
    workflow.add_jobs(job).add_replica_catalog(catalog)
    workflow.add_transformation_catalog(transformations)
    path = directory / "workflow.yml"
    add_timer_registration(workflow, str(path), after=[job],
                           transformation_catalog=transformations, site=site)
    workflow.write(str(path))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("data", "results", "archive"):
        parser.add_argument(f"--{name}", required=True, metavar="UUID")
    parser.add_argument("--nights", type=int, default=30)
    args = parser.parse_args()
    print(build(args.data, args.results, args.archive, Path("."), args.nights))

"""GPU training: one job that requests a GPU, wrapped with the GPU launcher through profiles.

    python workflow.py [--interval SECONDS]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from Pegasus.api import File, Job, Transformation, TransformationCatalog, Workflow

HERE = Path(__file__).resolve().parent


def build(directory: Path, interval: int = 10, epochs: int = 3) -> Path:
    """Write workflow.yml into ``directory``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    train = Transformation("train", site="condorpool", pfn=str(HERE / "train.py"),
                           is_stageable=True)
    train.add_pegasus_profile(gpus=1)  # HTCondor request_gpus = 1
    # pegasus-kickstart runs inside the launcher: pegasus-kickstart-gpu [args] pegasus-kickstart ...
    train.add_pegasus_profile(grid_start_launcher="pegasus-kickstart-gpu",
                              grid_start_launcher_arguments=f"--interval {interval}")
    job = Job(train, _id="train").add_args("--epochs", str(epochs))
    job.add_outputs(File("model.txt"))
    workflow = Workflow("gpu-training").add_jobs(job)
    workflow.add_transformation_catalog(TransformationCatalog().add_transformations(train))
    path = directory / "workflow.yml"
    workflow.write(str(path))
    return path


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--interval", type=int, default=10)
    print(build(Path("."), parser.parse_args().interval))

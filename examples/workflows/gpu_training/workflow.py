"""GPU training: one job that requests a GPU, wrapped with the GPU launcher through profiles.

    python workflow.py [--interval SECONDS]
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from Pegasus.api import File, Job, Transformation, TransformationCatalog, Workflow

HERE = Path(__file__).resolve().parent
# HTCondor runs a job's executable by its path (a vanilla job has no PATH to search), so the
# launcher is named by where it is installed: here, beside this Python, else on PATH.
_BESIDE = Path(sys.executable).parent / "pegasus-kickstart-gpu"
LAUNCHER = str(_BESIDE) if _BESIDE.is_file() else (shutil.which("pegasus-kickstart-gpu")
                                                  or "pegasus-kickstart-gpu")


def build(directory: Path, interval: int = 10, epochs: int = 3, site: str = "condorpool",
          launcher_arguments: str = "", exit_code: int = 0) -> Path:
    """Write workflow.yml into ``directory``; returns its path.

    :param interval: the sidecar's sampling interval in seconds
    :param launcher_arguments: more pegasus-kickstart-gpu options (``--backend replay:TRACE``)
    :param exit_code: the exit status the training job ends with (to rehearse failures)
    """
    directory.mkdir(parents=True, exist_ok=True)
    train = Transformation("train", site=site, pfn=str(HERE / "train.py"), is_stageable=False)
    train.add_pegasus_profile(gpus=1)  # HTCondor request_gpus = 1
    # pegasus-kickstart runs inside the launcher: pegasus-kickstart-gpu [args] pegasus-kickstart ...
    train.add_pegasus_profile(grid_start_launcher=LAUNCHER,
                              grid_start_launcher_arguments=f"--interval {interval} "
                              f"{launcher_arguments}".strip())
    job = Job(train, _id="train").add_args("--epochs", str(epochs))
    if exit_code:
        job.add_args("--exit-code", str(exit_code))
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

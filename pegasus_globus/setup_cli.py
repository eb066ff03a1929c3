"""``pegasus-globus-setup``: make a Pegasus installation use this project, and check a host."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from .scopes import TIMERS_RS, TRANSFER_RS, init_command
from .sites import go_url
from .token_store import DamagedStore, TokenStore, TokenStoreError
from .transfer.urls import parse_go_url

PROG = "pegasus-globus-setup"
HANDLER = "pegasus-globus-online"
BACKUP_SUFFIX = ".stock"
MARKER = "# installed by pegasus-globus-setup"


class SetupError(Exception):
    pass


def wrapper_text() -> str:
    return (f"#!/bin/sh\n{MARKER}: this project's Globus handler; the stock one is kept as "
            f"{HANDLER}{BACKUP_SUFFIX} beside this file (pegasus-globus-setup uninstall "
            f"restores it)\nexec '{sys.executable}' -m pegasus_globus.online \"$@\"\n")


def pegasus_bin(pegasus_home: str | None) -> Path | None:
    """The directory of stock pegasus-transfer, where it looks for the handler first."""
    home = pegasus_home or os.environ.get("PEGASUS_HOME")
    if home:
        directory = Path(home) / "bin"
        if not (directory / "pegasus-transfer").exists():
            raise SetupError(f"{directory} has no pegasus-transfer: give the directory Pegasus "
                             "is installed in (the one holding bin/pegasus-transfer)")
        return directory
    found = shutil.which("pegasus-transfer")
    return Path(os.path.realpath(found)).parent if found else None


def is_ours(path: Path) -> bool:
    try:
        text = path.read_text(errors="replace")[:4000]
    except OSError:
        return False
    return MARKER in text or "pegasus_globus.online" in text


def handler_found_by_stock(directory: Path | None) -> Path | None:
    """The handler stock pegasus-transfer would run: its own directory, $PEGASUS_HOME/bin,
    then PATH (Pegasus.tools.worker_utils.Tools.find)."""
    places = [str(directory)] if directory else []
    if os.environ.get("PEGASUS_HOME"):
        places.append(os.path.join(os.environ["PEGASUS_HOME"], "bin"))
    places += [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    for place in places:
        candidate = Path(place) / HANDLER
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def install(args: argparse.Namespace) -> int:
    directory = pegasus_bin(args.pegasus_home)
    if directory is None:
        print(f"No Pegasus installation found (no pegasus-transfer on PATH, no PEGASUS_HOME). "
              f"Install would put a {HANDLER} wrapper for this project next to pegasus-transfer "
              f"and keep the stock one as {HANDLER}{BACKUP_SUFFIX}. Point at Pegasus with "
              f"{PROG} install --pegasus-home DIR, or put pegasus-transfer on PATH.")
        return 1
    target, backup = directory / HANDLER, directory / (HANDLER + BACKUP_SUFFIX)
    if target.exists() and is_ours(target):
        target.write_text(wrapper_text())  # idempotent; refreshes the interpreter path
        print(f"{target} already runs this project's handler; nothing else to do.")
        return 0
    if backup.exists():
        raise SetupError(f"{backup} exists but {target} is not ours (was Pegasus reinstalled?):"
                         f" remove {backup} if {target} is the stock handler, then run again")
    if target.exists():
        os.rename(target, backup)  # keeps content, mode and times, for an exact uninstall
    temporary = target.with_name(f".{HANDLER}.tmp")
    temporary.write_text(wrapper_text())
    temporary.chmod(0o755)
    os.replace(temporary, target)
    kept = f"; stock handler kept as {backup}" if backup.exists() else ""
    print(f"Installed {target}{kept}.")
    return 0


def uninstall(args: argparse.Namespace) -> int:
    directory = pegasus_bin(args.pegasus_home)
    if directory is None:
        print("No Pegasus installation found: nothing to uninstall.")
        return 1
    target, backup = directory / HANDLER, directory / (HANDLER + BACKUP_SUFFIX)
    if target.exists() and not is_ours(target):
        print(f"{target} is not this project's handler: left as it is.")
        return 0
    if backup.exists():
        os.replace(backup, target)
        print(f"Restored the stock {target}.")
    elif target.exists():
        target.unlink()
        print(f"Removed {target} (there was no stock handler to restore).")
    else:
        print("Nothing installed.")
    return 0


def check_rows() -> list[dict[str, Any]]:
    """One row per check: name, status (ok, warn, fail), detail, fix."""
    rows: list[dict[str, Any]] = []

    def row(name: str, status: str, detail: str, fix: str = "") -> None:
        rows.append({"check": name, "status": status, "detail": detail, "fix": fix})

    try:
        from .online_init import status_report

        store = TokenStore()
        report = status_report(store)
        row("token file", "ok" if report["exists"] and not report["problems"] else "fail",
            f"{report['config']}" + (f" (mode {report['mode']})" if report["mode"] else
                                     " (missing)"),
            "; ".join(report["next_steps"][:1]))
        for name, server in (("transfer", TRANSFER_RS), ("timers", TIMERS_RS)):
            token = report["tokens"].get(name)
            if token is None:
                row(f"{name} token", "fail" if name == "transfer" else "warn", "not consented",
                    init_command(report["collections"], timers=name == "timers"))
                continue
            row(f"{name} token", "ok" if token["usable"] else "fail",
                f"expires {token['expires_at']}, "
                + ("refreshable" if token["refreshable"] else "not refreshable"),
                "" if token["usable"] else init_command(report["collections"],
                                                        timers=name == "timers"))
            if token["usable"]:
                row(f"{name} service", *_service(store, server))
        row("collection consents", "ok", ", ".join(report["collections"]) or "none requested")
    except DamagedStore as error:  # online-init will not overwrite it
        row("token file", "fail", f"{store.path} is not a valid token file ({error.reason})",
            store.aside(init_command()))
    except TokenStoreError as error:
        row("token file", "fail", str(error), init_command())
    row("GPU monitoring", *_nvml())
    directory = None
    try:
        directory = pegasus_bin(None)
    except SetupError as error:
        row("pegasus-transfer", "fail", str(error), f"{PROG} install --pegasus-home DIR")
    handler = handler_found_by_stock(directory)
    if directory is None:
        row("pegasus-transfer", "warn", "no Pegasus installation on this host (PATH, "
            "PEGASUS_HOME)", "")
    elif handler is not None and is_ours(handler):
        row("Globus handler", "ok", f"stock pegasus-transfer runs {handler}")
    else:
        row("Globus handler", "fail", f"stock pegasus-transfer would run {handler or 'nothing'}",
            f"{PROG} install")
    return rows


def _service(store: TokenStore, server: str) -> tuple[str, str, str]:
    import globus_sdk

    try:
        if server == TRANSFER_RS:
            client = globus_sdk.TransferClient(authorizer=store.authorizer(server))
            client.get_submission_id()
            url = client.base_url
        else:
            client = globus_sdk.TimersClient(authorizer=store.authorizer(server))
            client.list_jobs(query_params={"filter_status": "new"})
            url = client.base_url
        return "ok", f"answers at {url}", ""
    except globus_sdk.GlobusAPIError as error:
        return "fail", f"refused ({error.http_status} {error.code})", init_command(
            timers=server == TIMERS_RS)
    except (globus_sdk.NetworkError, TokenStoreError) as error:
        return "fail", f"unreachable ({error.__class__.__name__})", \
            "check the network, or GLOBUS_SDK_SERVICE_URL_*"


def _nvml() -> tuple[str, str, str]:
    from kickstart_gpu.nvml import Nvml
    from kickstart_gpu.selection import select

    try:
        import pynvml
    except ImportError:
        return "warn", "nvidia-ml-py is not installed", "pip install nvidia-ml-py"
    nvml = Nvml(pynvml)
    if not nvml.init():
        return "warn", f"NVML unavailable here ({nvml.init_error}): jobs record no GPUs", ""
    selection = select(nvml, os.environ)
    names = [str(nvml.query("nvmlDeviceGetName", nvml.query("nvmlDeviceGetHandleByIndex", i)))
             for i in selection.indices]
    nvml.shutdown()
    return "ok", f"would monitor {len(names)} GPU(s) ({selection.source}): {', '.join(names)}", ""


def check(args: argparse.Namespace) -> int:
    if args.workflow:
        return check_workflow(args)
    rows = check_rows()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            line = f"{r['status']:<4} {r['check']}: {r['detail']}"
            print(line + (f"\n     fix: {r['fix']}" if r["fix"] and r["status"] != "ok" else ""))
    return 1 if any(r["status"] == "fail" for r in rows) else 0


def check_workflow(args: argparse.Namespace) -> int:
    """The pre-flight check of one workflow: a line per problem, then a summary."""
    from .preflight import check as preflight

    report = preflight(args.workflow, site_catalog=args.sites, replica_catalog=args.replicas,
                       properties=args.conf)
    if args.format == "json":
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(report.text())
    return 0 if report.ok else 1


def snippets(args: argparse.Namespace) -> int:
    site, scratch, collection_path = args.site, args.scratch_dir, args.collection_path
    scratch_collection, archive_collection = args.scratch_collection, args.archive_collection
    for option, value in (("--scratch-collection", scratch_collection),
                          ("--archive-collection", archive_collection)):
        if not value.startswith("<"):
            try:
                parse_go_url(f"go://{value}/")
            except ValueError:
                raise SetupError(f"{option} {value!r} is not a collection UUID (find it with "
                                 "globus endpoint search, or on app.globus.org)") from None
    bridge = shutil.which("pegasus-globus-transfer") or "/path/to/bin/pegasus-globus-transfer"
    launcher = shutil.which("pegasus-kickstart-gpu") or "/path/to/bin/pegasus-kickstart-gpu"
    print(f"""# Transformation catalog (YAML): request a GPU and wrap the GPU job with the sidecar.
# Per transformation, not per site: a site-wide launcher would wrap the data jobs too
# (create-dir, stage-in/out, cleanup), which hold no GPU. The launcher by its path: HTCondor
# searches no PATH for a job's executable.
transformations:
  - name: train
    sites:
      - name: {site}
        pfn: /path/to/train
        type: installed
    profiles:
      pegasus:
        gpus: 1
        gridstart.launcher: {launcher}
        gridstart.launcher.arguments: "--interval 10"

# The same with Pegasus.api, on a transformation or a job
#   train.add_pegasus_profile(gpus=1,           # HTCondor request_gpus
#                             grid_start_launcher="{launcher}",
#                             grid_start_launcher_arguments="--interval 10")

# Replica catalog: Globus-staged files are go://<collection uuid>/<absolute path>
#   rc.add_replica("globus", "input.dat", "go://<collection uuid>/data/input.dat")

# Site catalog (YAML): go:// data with stock pegasus-transfer. Its Globus handler moves go->go
# only (go->file fails: "Unable to find handlers for 'go' to 'file' transfers"), so expose the
# site's shared scratch as a Globus collection and declare it with a go:// file server: every
# data job is then go mkdir, go->go stage-in/out or go remove, and jobs read the local path.
pegasus: "5.0"
sites:
  - name: {site}
    directories:
      - type: sharedScratch
        path: {scratch}  # the scratch directory, as jobs see it
        sharedFileSystem: false
        fileServers:
          - url: {go_url(scratch_collection, collection_path)}
            operation: all
  - name: archive  # pegasus-plan --output-sites archive
    directories:
      - type: sharedStorage
        path: /results
        sharedFileSystem: false
        fileServers:
          - url: {go_url(archive_collection, "/results")}
            operation: all
#   Pegasus.api: from pegasus_globus.sites import globus_scratch_site, globus_storage_site
#     SiteCatalog().add_sites(
#         globus_scratch_site("{site}", "{scratch_collection}", "{scratch}"),
#         globus_storage_site("archive", "{archive_collection}", "/results"))
# Properties: pegasus.data.configuration = sharedfs (nonsharedfs and condorio pull inputs
# go->file on the worker, which stock pegasus-transfer cannot do).

# Or keep the site's scratch a plain directory (any data configuration): the transformation
# catalog's pegasus::transfer entry runs pegasus-globus-transfer for every data job (PegasusLite
# jobs too), which moves go<->file through the collections' HTTPS servers and hands every other
# transfer to the stock pegasus-transfer. Install it at the same path on the workers. With
# nonsharedfs, pegasus.transfer.bypass.input.staging = true lets jobs pull go:// inputs
# themselves; a Globus collection as staging site (--staging-site {site}=<site>) has its
# create-dir, stage-out and cleanup jobs run on the submit host: hence the entry for local.
# Log in with the collections named:
#   pegasus-globus-online-init --permanent --collections <data uuid> <results uuid>
transformations:
  - namespace: pegasus
    name: transfer
    sites:
      - name: {site}
        pfn: {bridge}
        type: installed
      - name: local
        pfn: {bridge}
        type: installed
#   Pegasus.api: Transformation("transfer", namespace="pegasus", site="{site}",
#                               pfn="{bridge}", is_stageable=False)
#                  .add_sites(TransformationSite("local", "{bridge}", is_stageable=False))

# Properties: transfer options for pegasus-globus-online, as environment on transfer jobs
env.PEGASUS_GLOBUS_VERIFY_CHECKSUM = true
env.PEGASUS_GLOBUS_SYNC_LEVEL = checksum
env.PEGASUS_GLOBUS_INACTIVE_TIMEOUT = 900
# a missing input or a permission error: give up after 20 s (Globus retries until the task's
# deadline), and let pegasus-transfer fail at once rather than back off 2, then 5 minutes
env.PEGASUS_GLOBUS_PATH_ERROR_GRACE = 20
pegasus.transfer.arguments = --max-attempts 1
""")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Sets up a host for this project: install makes stock "
        "pegasus-transfer run this project's Globus handler, check diagnoses tokens, services, "
        "GPUs and the handler, snippets prints catalog and properties lines.",
        epilog="Exit status: 0 fine, 1 something is wrong (each problem names its fix), 2 bad "
        "input.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, text in ((
            "install", install, "make stock pegasus-transfer use this project's handler"),
            ("uninstall", uninstall, "restore the stock handler exactly")):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("--pegasus-home", metavar="DIR",
                         help="the Pegasus installation (default: $PEGASUS_HOME, else the "
                         "pegasus-transfer on PATH)")
        sub.set_defaults(handler=handler)
    text = ("diagnose this host: tokens, services, GPUs, handler; with --workflow, check "
            "everything a workflow's run needs from Globus before it is planned")
    sub = commands.add_parser(
        "check", help=text, description=f"{text[0].upper()}{text[1:]}: the login, each "
        "go:// collection (consents, https scopes, high-assurance sessions), every go:// "
        "input (one listing per directory), the places written to, and the timer metadata. "
        "Each problem is one line: where in the workflow, what, and the command that fixes "
        "it. Nothing is changed.", epilog="Exit status: 0 nothing wrong, 1 a problem, 2 bad "
        "usage, or an input that cannot be read or is no Pegasus 5 workflow or catalog (a "
        "field of the wrong type).")
    sub.add_argument("--workflow", metavar="WORKFLOW.yml",
                     help="check this Pegasus 5 workflow instead of the host")
    sub.add_argument("--sites", metavar="SITES.yml", help="site catalog (default: as "
                     "pegasus-plan finds it: in the workflow, pegasus.catalog.site.file, "
                     "sites.yml)")
    sub.add_argument("--replicas", metavar="REPLICAS.yml", help="replica catalog, read with "
                     "the workflow's own (default: pegasus.catalog.replica.file, replicas.yml)")
    sub.add_argument("--conf", metavar="pegasus.properties", help="properties (default: "
                     "pegasus.properties in the working directory), for the data configuration "
                     "and the catalog files")
    sub.add_argument("--format", choices=("text", "json"), default="text",
                     help="output (default: text)")
    sub.set_defaults(handler=check)
    sub = commands.add_parser("snippets", help="catalog and properties lines to use the GPU "
                              "launcher and Globus staging")
    sub.add_argument("--site", default="condorpool", help="site name (default: %(default)s)")
    sub.add_argument("--scratch-collection", default="<scratch collection uuid>",
                     metavar="UUID", help="the collection exposing the site's shared scratch")
    sub.add_argument("--scratch-dir", default="/scratch/pegasus", metavar="DIR",
                     help="the shared scratch directory as jobs see it (default: %(default)s)")
    sub.add_argument("--collection-path", default="/", metavar="PATH",
                     help="where the scratch directory is inside its collection (default: "
                     "%(default)s, the collection's root)")
    sub.add_argument("--archive-collection", default="<output collection uuid>",
                     metavar="UUID", help="the collection outputs are staged to")
    sub.set_defaults(handler=snippets)
    return parser


def main(argv: list[str] | None = None) -> int:
    from .preflight.catalogs import CatalogError
    from .timers.shape import one_line

    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "check" and not args.workflow and (args.sites or args.replicas
                                                          or args.conf):
        parser.error("check: --sites, --replicas and --conf go with --workflow WORKFLOW.yml")
    try:
        return args.handler(args)
    except (SetupError, OSError, CatalogError) as error:
        print(one_line(f"{PROG}: {error}"), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

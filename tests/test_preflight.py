"""``pegasus-globus-setup check --workflow``: each problem the issue names shows as one line
with its fix, against the emulator through the real globus-sdk, and after running that fix
the check passes."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import admin, deny_as_mode_000
from tests.test_online_init import run_init

SETUP = [sys.executable, "-m", "pegasus_globus.setup_cli"]


@dataclass
class World:
    """The nightly_backup example against the emulator: data, results and archive
    collections, a site ``local`` whose scratch is a collection (or a plain directory)."""

    directory: Path
    env: dict[str, str]
    data: str
    results: str
    archive: str
    scratch: str
    workflow: Path
    properties: Path

    def check(self, *extra: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*SETUP, "check", "--workflow", str(self.workflow), "--conf",
                                 str(self.properties), *extra], capture_output=True, text=True,
                                env=self.env, timeout=120, cwd=self.directory)
        for secret in self.secrets():  # never a token, whatever happened
            assert secret not in result.stdout + result.stderr
        return result

    def login(self, *args: str) -> None:
        result = run_init(self.env, "--no-browser", *args)
        assert result.returncode == 0, result.stderr

    def run_fix(self, line: str) -> None:
        """Run the fix a problem line names, as the user would copy it."""
        command = shlex.split(line.split("; fix: ", 1)[1])
        assert command[0] == "pegasus-globus-online-init", line
        self.login(*command[1:])

    def secrets(self) -> list[str]:
        import configparser

        parser = configparser.RawConfigParser()
        try:
            parser.read(Path(self.env["HOME"]) / ".pegasus" / "globus.conf")
        except (configparser.Error, UnicodeDecodeError):
            return []  # a damaged file, put there by the test
        return [value for section in parser.sections() for key, value in parser.items(section)
                if key in ("transfer_at", "transfer_rt", "access_token", "refresh_token")]

    def replica(self, old: str, new: str) -> None:
        self.workflow.write_text(self.workflow.read_text().replace(old, new))


def problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The problem lines (the last line is the summary)."""
    return result.stdout.splitlines()[:-1]


def build(directory: Path, emulator, file_scratch: bool = False,
          data_configuration: str = "sharedfs", site_name: str = "local") -> World:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
    from Pegasus.api import SiteCatalog
    from rehearsal import example, local_site

    from pegasus_globus.sites import globus_scratch_site, globus_storage_site

    data, results, archive, scratch = (str(uuid.uuid4()) for _ in range(4))
    (emulator.collection_path(data) / "data").mkdir()
    (emulator.collection_path(data) / "data" / "raw.csv").write_text("1,1\n")
    (directory / "scratch").mkdir(parents=True)
    emulator.map_collection(scratch, directory / "scratch")
    workflow = example("nightly_backup").build(data, results, archive, directory, nights=3,
                                               site=site_name)
    site = (local_site(directory / "scratch", directory / "outputs") if file_scratch
            else globus_scratch_site(site_name, scratch, str(directory / "scratch")))
    SiteCatalog().add_sites(site, globus_storage_site("results", results, "/nightly")).write(
        str(directory / "sites.yml"))
    properties = directory / "pegasus.properties"
    properties.write_text(f"pegasus.catalog.site.file = {directory / 'sites.yml'}\n"
                          f"pegasus.data.configuration = {data_configuration}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEGASUS_GLOBUS")}
    env.update(emulator.environment, HOME=str(directory / "home"))
    return World(directory, env, data, results, archive, scratch, workflow, properties)


@pytest.fixture
def world(tmp_path, emulator) -> World:
    return build(tmp_path / "nightly", emulator)


def test_the_nightly_example_is_ready_once_logged_in(world):
    world.login("--permanent", "--timers")
    result = world.check()
    assert result.returncode == 0, result.stdout
    assert result.stdout.startswith("nightly-backup: ready for Globus (1 go:// input(s)")


def test_the_nightly_example_as_its_readme_plans_it_is_ready(tmp_path, emulator):
    """Site condorpool and the results collection, no site local in the catalog (pegasus-plan
    makes one): the local site's wf-output is no output place unless `-o local`, so the run
    `--output-sites results` needs no https scope for its scratch (it was asked for one it
    never uses)."""
    world = build(tmp_path / "nightly", emulator, site_name="condorpool")
    world.login("--permanent", "--timers", "--collections", world.data, world.results,
                world.archive)  # no https scope for the scratch: go->go needs none
    result = world.check()
    assert result.returncode == 0, result.stdout


def test_not_logged_in_is_one_line_and_its_login_fixes_it(world):
    result = world.check()
    assert result.returncode == 1
    [line] = problems(result)
    assert line.startswith("Globus login: not logged in (no Transfer token in ")
    # the collections' kinds are unknown yet: none is named (a guest one fails the login)
    assert line.endswith("; fix: pegasus-globus-online-init --permanent --timers")
    world.run_fix(line)
    assert world.check().returncode == 0


def test_not_logged_in_with_a_guest_collection_the_login_given_works(world, emulator):
    """Guest collections have no data_access scope: asking for it fails the login, so before
    the kinds are known no collection is asked for; the next check names what each needs."""
    emulator.mark_collection(world.archive, guest=True)
    emulator.mark_collection(world.data, consent_required=True)
    [line] = problems(world.check())
    assert world.archive not in line
    world.run_fix(line)  # succeeds: Auth is asked for no guest collection's data_access
    [line] = problems(world.check())
    assert line.startswith(f"input raw.csv of job analyse: collection {world.data} needs your "
                           "consent to its data_access scope")
    assert world.archive not in line.split("; fix: ")[1]
    world.run_fix(line)
    assert world.check().returncode == 0


def test_a_mapped_collection_without_its_data_access_consent(world, emulator):
    emulator.mark_collection(world.data, consent_required=True)
    world.login("--permanent", "--timers")
    result = world.check()
    [line] = problems(result)
    assert line.startswith(f"input raw.csv of job analyse: collection {world.data} needs your "
                           "consent to its data_access scope")
    assert f"--collections {world.data} " in line
    world.run_fix(line)
    assert world.check().returncode == 0


def test_a_high_assurance_collection_wants_a_recent_login(world, emulator):
    emulator.mark_collection(world.results, high_assurance=True)
    world.login("--permanent", "--timers")
    assert world.check().returncode == 0  # a login of a moment ago is recent enough
    admin(emulator, "POST", "_emulator/sessions/expire")  # ... then time passes
    result = world.check()
    [line] = problems(result)
    assert line.startswith(f"site results, storage for outputs: collection {world.results} is "
                           "high-assurance and wants a login more recent than its "
                           "authentication timeout of 30 minutes; fix: "
                           "pegasus-globus-online-init --permanent --timers")
    assert world.results not in line.split("; fix: ")[1]  # no data_access for high assurance
    world.run_fix(line)
    assert world.check().returncode == 0


def test_a_guest_collection_needs_no_data_access(world, emulator):
    emulator.mark_collection(world.archive, guest=True)
    emulator.mark_collection(world.data, consent_required=True)
    world.login("--permanent", "--timers")
    [line] = problems(world.check())
    assert world.data in line and world.archive not in line
    world.run_fix(line)  # Auth refuses a guest collection's data_access: it was not asked
    assert world.check().returncode == 0


def test_a_missing_input_with_a_typo_names_the_file_that_is_there(world):
    world.login("--permanent", "--timers")
    world.replica("/data/raw.csv", "/data/raw.cvs")
    result = world.check()
    [line] = problems(result)
    right = f"go://{world.data}/data/raw.csv"
    assert line == (f"input raw.csv of job analyse: go://{world.data}/data/raw.cvs does not "
                    f"exist (go://{world.data}/data/ has raw.csv); fix: correct its replica to "
                    f"{right}")
    world.replica("/data/raw.cvs", "/data/raw.csv")
    assert world.check().returncode == 0


def test_a_missing_input_directory(world):
    world.login("--permanent", "--timers")
    world.replica("/data/raw.csv", "/dta/raw.csv")
    [line] = problems(world.check())
    assert f"go://{world.data}/dta/raw.csv does not exist: no directory go://{world.data}/dta/" \
        in line


def test_an_input_directory_the_collection_denies_you_is_named(world, emulator, monkeypatch):
    """Globus denies paths one by one (a collection's path restrictions, its storage's
    permissions: 403 EndpointPermissionDenied). Seen: "collection C refuses you access", as if
    the whole collection did, and a second denied directory of it left unsaid."""
    world.login("--permanent", "--timers")
    deny_as_mode_000(monkeypatch, emulator.collection_path(world.data) / "data")
    [line] = problems(world.check())
    assert line == (f"input raw.csv of job analyse: collection {world.data} denies you access "
                    f"to go://{world.data}/data/ (EndpointPermissionDenied); fix: ask the "
                    "collection's administrator for access to that directory, or use one you "
                    "can reach")


def test_an_input_of_the_wrong_kind(world, emulator):
    world.login("--permanent", "--timers")
    raw = emulator.collection_path(world.data) / "data" / "raw.csv"
    raw.unlink()
    raw.mkdir()
    (raw / "part-0").write_text("1,1\n")
    [line] = problems(world.check())
    url = f"go://{world.data}/data/raw.csv"
    assert line == (f"input raw.csv of job analyse: {url} is a directory, but the job expects "
                    f"a file; fix: correct its replica to {url}/ to stage the whole directory, "
                    "or name a file in it")
    world.replica(url, url + "/")
    assert world.check().returncode == 0


def test_tokens_that_cannot_be_refreshed(world):
    world.login("--timers")
    result = world.check()
    lines = problems(result)
    assert [line.split(":")[0] for line in lines] == ["Globus Transfer token",
                                                      "Globus Timers token"]
    assert "cannot be refreshed, so a run still going then fails" in lines[0]
    assert lines[0].split("; fix: ")[1].startswith("pegasus-globus-online-init --permanent ")
    world.run_fix(lines[0])
    assert world.check().returncode == 0


def test_a_file_scratch_needs_the_https_scopes_the_bridge_uses(tmp_path, emulator):
    world = build(tmp_path / "nightly", emulator, file_scratch=True)
    world.login("--permanent", "--timers")
    lines = problems(world.check())
    assert len(lines) == 2, lines
    assert lines[0].startswith("input raw.csv of job analyse, staged in to file://")
    assert f"through collection {world.data}'s HTTPS server, and there is no token for its " \
        "https scope" in lines[0]
    assert lines[1].startswith("outputs staged out from site local's scratch to "
                               f"site results: the bridge moves this through collection "
                               f"{world.results}'s HTTPS server")
    assert lines[0].split("; fix: ")[1] == lines[1].split("; fix: ")[1]
    world.run_fix(lines[0])
    assert world.check().returncode == 0


def test_the_go_scratch_of_nonsharedfs_is_bridged_to_the_worker(tmp_path, emulator):
    world = build(tmp_path / "nightly", emulator, data_configuration="nonsharedfs")
    world.login("--permanent", "--timers")
    [line] = problems(world.check())
    assert line.startswith("site local's scratch, pulled to the worker (nonsharedfs): the bridge "
                           f"moves this through collection {world.scratch}'s HTTPS server")


def test_timer_metadata_by_the_rules_of_pegasus_globus_timer(world):
    world.login("--permanent", "--timers")
    world.workflow.write_text(world.workflow.read_text().replace(
        "globus.timer.interval: 1d", "globus.timer.interval: 30s"))
    line = problems(world.check())[0]
    register = subprocess.run([sys.executable, "-m", "pegasus_globus.timers.cli", "register",
                               str(world.workflow), "--dry-run"], capture_output=True,
                              text=True, env=world.env, timeout=60)
    said = register.stderr.strip().splitlines()[-1].split(": ", 1)[-1]
    assert "interval '30s' is 30 s: Globus Timers need at least 60 s" in said
    assert line.startswith("timer metadata, job analyse, file report.html: "
                           "globus.timer.interval: interval '30s' is 30 s")


def test_bad_usage_and_unreadable_inputs_are_exit_2(world, tmp_path):
    usage = subprocess.run([*SETUP, "check", "--sites", "sites.yml"], capture_output=True,
                           text=True, timeout=60)
    assert usage.returncode == 2 and "--workflow" in usage.stderr
    missing = world.check("--sites", str(tmp_path / "nope.yml"))
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        f"pegasus-globus-setup: cannot read site catalog {tmp_path / 'nope.yml'}: "
        "No such file or directory"]


def test_json_output_and_the_python_call_with_pegasus_objects(world, emulator):
    """The same check from a workflow script, on Pegasus.api objects, before planning; many
    inputs cost one listing per directory."""
    from Pegasus.api import File, Job, ReplicaCatalog, SiteCatalog, Transformation, Workflow

    from pegasus_globus.preflight import check
    from pegasus_globus.sites import globus_scratch_site
    from pegasus_globus.token_store import TokenStore

    world.login("--permanent", "--timers")
    for directory in ("a", "b"):
        (emulator.collection_path(world.data) / directory).mkdir()
        for n in range(30):
            (emulator.collection_path(world.data) / directory / f"f{n}").write_text("x")
    catalog, job = ReplicaCatalog(), Job(Transformation("t", site="local", pfn="/bin/true",
                                                          is_stageable=False))
    for directory in ("a", "b"):
        for n in range(30):
            catalog.add_replica("globus", f"{directory}{n}",
                                f"go://{world.data}/{directory}/f{n}")
            job.add_inputs(File(f"{directory}{n}"))
    workflow = Workflow("many").add_jobs(job).add_replica_catalog(catalog)
    sites = SiteCatalog().add_sites(globus_scratch_site("local", world.scratch, "/scratch"))
    report = check(workflow, site_catalog=sites, properties={
        "pegasus.data.configuration": "sharedfs"},
        token_store=TokenStore(Path(world.env["HOME"]) / ".pegasus" / "globus.conf"))
    assert report.ok, report.text()
    assert (report.inputs, report.listings) == (60, 3)  # a/, b/ and the scratch directory
    result = json.loads(world.check("--format", "json").stdout)
    assert result["ok"] and result["problems"] == [] and result["workflow"] == "nightly-backup"


def test_the_check_changes_nothing(world, emulator):
    world.login("--permanent", "--timers")
    admin(emulator, "DELETE", "_emulator/stats")

    def files() -> list[Path]:  # a collection's root is the emulator's, made when first used
        return sorted(p for p in (emulator.root / "collections").glob("*/**/*"))

    before = files()
    world.check()
    calls = admin(emulator, "GET", "_emulator/stats")["requests"]
    assert {route.split(" ")[0] for route in calls} == {"GET"}, calls
    assert files() == before
    assert yaml.safe_load(world.workflow.read_text())["name"] == "nightly-backup"


def test_an_output_directory_that_is_a_file(world, emulator):
    world.login("--permanent", "--timers")
    (emulator.collection_path(world.results) / "nightly").write_text("not a directory")
    lines = problems(world.check())
    assert lines[0] == (f"site results, storage for outputs: go://{world.results}/nightly cannot "
                        "be written: it is a file, not a directory; fix: choose another "
                        "directory (site catalog or metadata), or move the file away")
    (emulator.collection_path(world.results) / "nightly").unlink()
    assert world.check().returncode == 0


def test_a_guest_collection_the_bridge_reaches_gets_its_https_scope_alone(tmp_path, emulator):
    world = build(tmp_path / "nightly", emulator, file_scratch=True)
    emulator.mark_collection(world.data, guest=True)
    world.login("--permanent", "--timers")
    line = problems(world.check())[0]
    assert line.startswith("input raw.csv of job analyse, staged in to file://")
    fix = line.split("; fix: ")[1].split()
    assert fix[fix.index("--https") + 1:] == [world.data]  # not with --collections
    assert world.data not in fix[:fix.index("--https")]
    world.run_fix(line)  # Auth refuses data_access on a guest collection: not asked
    assert world.check().returncode == 0


def test_a_revoked_login_is_one_line(world):
    world.login("--permanent", "--timers")
    store = Path(world.env["HOME"]) / ".pegasus" / "globus.conf"
    text = store.read_text()
    assert run_init(world.env, "--logout", "--revoke", code=None).returncode == 0
    store.write_text(text)  # revoked at Globus, still in the file
    [line] = problems(world.check())
    assert line.startswith("Globus login: Globus Auth refused to refresh the token (401 "
                           "invalid_grant); fix: pegasus-globus-online-init --permanent --timers")
    world.run_fix(line)
    assert world.check().returncode == 0


def test_catalogs_and_properties_are_found_where_the_planner_finds_them(world):
    """No --conf: pegasus.properties in the working directory; no site file property:
    sites.yml there; ``key: value`` properties read as Java reads them."""
    world.login("--permanent", "--timers")
    (world.directory / "pegasus.properties").write_text(
        "# comment\n! also a comment\npegasus.data.configuration: sharedfs\n")
    result = subprocess.run([*SETUP, "check", "--workflow", "workflow.yml", "--format", "json"],
                            capture_output=True, text=True, env=world.env, timeout=120,
                            cwd=world.directory)
    report = json.loads(result.stdout)
    assert report["ok"] and report["collections"] == 4  # the scratch collection of sites.yml
    (world.directory / "pegasus.properties").write_text("pegasus.data.configuration = nfs\n")
    wrong = subprocess.run([*SETUP, "check", "--workflow", "workflow.yml"], capture_output=True,
                           text=True, env=world.env, timeout=120, cwd=world.directory)
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        "pegasus-globus-setup: pegasus.data.configuration = nfs: use one of sharedfs, "
        "nonsharedfs, condorio")


def test_timers_need_the_data_access_consents_transfer_has(world, emulator):
    """A later login without --timers gives Transfer a consent the Timers token lacks: the
    timer would go inactive at its first run."""
    emulator.mark_collection(world.archive, consent_required=True)
    world.login("--permanent", "--timers")
    world.login("--permanent", "--collections", world.data, world.scratch, world.results,
                world.archive)  # Transfer now has archive's data_access; Timers does not
    lines = problems(world.check())
    assert [world.results in lines[0], world.archive in lines[1]] == [True, True]
    for collection, line in zip((world.results, world.archive), lines):
        assert line.startswith("timer 'pegasus nightly-backup ")
        assert f"Globus Timers has no consent to collection {collection}'s data_access, so " \
            "the timer would turn inactive at its first run; fix: pegasus-globus-online-init " \
            "--permanent --timers --collections " in line
    world.run_fix(lines[0])
    assert world.check().returncode == 0


def test_globus_out_of_reach_is_one_line(world, emulator):
    world.login("--permanent", "--timers")
    world.env.update({name: "http://127.0.0.1:9/" for name in emulator.environment
                      if name.startswith("GLOBUS_SDK_SERVICE_URL_")})
    result = world.check()
    [line] = problems(result)
    assert line.startswith("Globus: cannot reach it (GlobusConnectionError)")
    assert line.endswith("; fix: check the network, or GLOBUS_SDK_SERVICE_URL_TRANSFER and "
                         "GLOBUS_SDK_SERVICE_URL_AUTH")


def _alias_bomb(tail: str) -> str:
    """Nine levels of lists of nine aliases: 9**9 leaves, in a few hundred bytes."""
    levels = ["a0: &a0 [x]"] + [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]"
                                for i in range(1, 10)]
    return "\n".join([*levels, tail]) + "\n"


MALFORMED = {
    "alias bomb as jobs": (_alias_bomb("jobs: *a9"), "jobs[0] should be a mapping, not a list"),
    "alias bomb as replicas": (_alias_bomb("jobs: []\nreplicaCatalog: {replicas: *a9}"),
                               "replicaCatalog replicas[0] should be a mapping, not a list"),
    "alias bomb as metadata": (
        _alias_bomb("jobs: []\nmetadata: {globus.timer.interval: *a9}"),
        "the workflow's metadata 'globus.timer.interval' should be a text or a number, not a "
        "list"),
    "replica catalog a list": ("jobs: []\nreplicaCatalog: [1, 2]\n",
                               "replicaCatalog should be a mapping, not a list [1, 2]"),
    "job and transformation names lists": (
        "jobs: [{id: j, name: [1], uses: []}]\n"
        "transformationCatalog: {transformations: [{name: [1]}]}\n",
        "job 'j' name should be a text or a number, not a list [1] (and 1 more)"),
    "replica lfn a list": (
        "jobs: [{id: j, name: x, uses: [{lfn: a, type: input}]}]\n"
        "replicaCatalog: {replicas: [{lfn: [1], pfns: [{pfn: 'go://x/y'}]}]}\n",
        "replicaCatalog replicas[0] lfn should be a text or a number, not a list [1]"),
    "jobs a number": ("jobs: 5\n", "jobs should be a list, not int 5"),
    "replicas a number": ("jobs: []\nreplicaCatalog: {replicas: 5}\n",
                          "replicaCatalog replicas should be a list, not int 5"),
    "uses a number": ("jobs: [{id: j, name: x, uses: 7}]\n",
                      "job 'j' uses should be a list, not int 7"),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_a_workflow_of_the_wrong_shape_is_exit_2_in_one_line(tmp_path, name):
    """Fields of the wrong type (and YAML alias bombs, which expand to billions of nodes when
    walked or printed) are one line and exit 2, at once, from the check and from
    pegasus-globus-timer register alike; never a traceback, never a timer fix."""
    text, said = MALFORMED[name]
    (tmp_path / "wf.yml").write_text(text)
    env = {**os.environ, "HOME": str(tmp_path)}
    for command, prog in (([*SETUP, "check", "--workflow", "wf.yml"], "pegasus-globus-setup"),
                          ([sys.executable, "-m", "pegasus_globus.timers.cli", "register",
                            "wf.yml", "--dry-run"], "pegasus-globus-timer")):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60,
                                cwd=tmp_path)
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stdout == ""
        [line] = result.stderr.splitlines()
        assert line.startswith(f"{prog}: wf.yml is not a Pegasus 5 workflow: {said}"), line


def test_a_replica_catalog_file_of_the_wrong_shape(world, tmp_path):
    (tmp_path / "replicas.yml").write_text("replicas: [{lfn: raw.csv, pfns: [{pfn: [1]}]}]\n")
    result = world.check("--replicas", str(tmp_path / "replicas.yml"))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pegasus-globus-setup: replica catalog {tmp_path / 'replicas.yml'} is not a Pegasus 5 "
        "replica catalog: replica 'raw.csv' pfns[0] pfn should be a text or a number, not a "
        "list [1]"]


@pytest.mark.parametrize("damage", [b"hello\n[oauth\nfoo", b"\xff\xfe\x00\x81random bytes"])
def test_a_damaged_token_file_is_moved_aside_by_its_fix(world, damage):
    """online-init will not overwrite a damaged file, so a plain login is no fix: the fix
    moves it aside first, and works as given."""
    store = Path(world.env["HOME"]) / ".pegasus" / "globus.conf"
    store.parent.mkdir(parents=True)
    store.write_bytes(damage)
    [line] = problems(world.check())
    assert line.startswith(f"Globus login: {store} is not a valid token file (")
    assert "permissions" not in line
    move, login = line.split("; fix: ", 1)[1].split(" && ")
    assert shlex.split(move) == ["mv", str(store), f"{store}.damaged"]
    host = subprocess.run([*SETUP, "check"], capture_output=True, text=True, env=world.env,
                          timeout=120)  # the host check gives the same fix
    assert f"     fix: {move} && pegasus-globus-online-init --permanent\n" in host.stdout
    subprocess.run(shlex.split(move), check=True)
    world.run_fix(f"; fix: {login}")
    assert world.check().returncode == 0
    assert Path(f"{store}.damaged").read_bytes() == damage


def test_a_token_file_others_can_read_is_the_problem_the_host_check_names(world):
    world.login("--permanent", "--timers")
    store = Path(world.env["HOME"]) / ".pegasus" / "globus.conf"
    store.chmod(0o644)
    host = subprocess.run([*SETUP, "check"], capture_output=True, text=True, env=world.env,
                          timeout=120)
    assert f"fail token file: {store} (mode 0644)\n     fix: chmod 600 {store}" in host.stdout
    result = world.check()
    assert result.returncode == 1
    assert problems(result) == [f"token file: {store} is readable by others (mode 0644); "
                                f"fix: chmod 600 {store}"]
    subprocess.run(["chmod", "600", str(store)], check=True)
    assert world.check().returncode == 0


@pytest.mark.parametrize("expects_directory", [False, True])
def test_a_suggested_name_is_of_the_kind_the_job_expects(world, emulator, expects_directory):
    """A file is never corrected to a directory of a close name, nor a directory to a file."""
    world.login("--permanent", "--timers")
    data = emulator.collection_path(world.data) / "data"
    (data / "raw.csv").unlink()
    wrong, right = (data / "raw.csy", data / "raw.csx")  # difflib prefers raw.csy on a tie
    (right if expects_directory else wrong).mkdir()
    (wrong if expects_directory else right).write_text("1,1\n")
    url = f"go://{world.data}/data/raw.csv" + ("/" if expects_directory else "")
    world.replica(f"go://{world.data}/data/raw.csv", url)
    [line] = problems(world.check())
    assert line.endswith(f"fix: correct its replica to go://{world.data}/data/raw.csx"
                         + ("/" if expects_directory else "")), line
    world.replica(url, f"go://{world.data}/data/raw.csx" + ("/" if expects_directory else ""))
    assert world.check().returncode == 0


def test_a_url_above_the_collections_root_is_a_url_to_correct(world):
    world.login("--permanent", "--timers")
    good = f"go://{world.data}/data/raw.csv"
    world.replica(good, f"go://{world.data}/../../etc/passwd")
    [line] = problems(world.check())
    assert line == (f"input raw.csv of job analyse: go://{world.data}/../../etc/passwd is "
                    f"outside collection {world.data}; fix: correct the URL: go://<collection "
                    "uuid>/<absolute path>, with no .. above its root")
    world.replica(f"go://{world.data}/../../etc/passwd", good)
    assert world.check().returncode == 0


def test_line_breaks_and_control_characters_are_escaped(world):
    """A URL holding an escape sequence, a replica URL holding a line break: each problem
    stays one line, and nothing reaches the terminal raw."""
    world.login("--permanent", "--timers")
    good = f"go://{world.data}/data/raw.csv"
    world.replica(good, f'"go://{world.data}/data/raw\\e[2J.csv"')
    result = world.check()
    [line] = problems(result)
    assert "\x1b" not in result.stdout
    assert f"go://{world.data}/data/raw\\x1b[2J.csv does not exist" in line
    world.replica(f'"go://{world.data}/data/raw\\e[2J.csv"', f'"go://{world.data}/data/\\nraw"')
    result = world.check()
    [line] = problems(result)
    assert f"'go://{world.data}/data/\\nraw' is not a go:// URL" in line
    world.replica(f'"go://{world.data}/data/\\nraw"', good)
    assert world.check().returncode == 0


def test_the_local_site_pegasus_makes_when_the_catalog_has_none(tmp_path, emulator):
    """With no site ``local`` in the catalog, pegasus-plan 5.1.2 makes one (scratch
    wf-scratch/LOCAL, storage wf-output, below the directory it runs in, as file:// URLs)
    and, under condorio, stages go:// inputs to it: the bridge's go->file move needs the
    input collection's https scope."""
    from Pegasus.api import SiteCatalog

    from pegasus_globus.sites import globus_storage_site

    world = build(tmp_path / "nightly", emulator, data_configuration="condorio")
    SiteCatalog().add_sites(globus_storage_site("results", world.results, "/nightly")).write(
        str(world.directory / "sites.yml"))
    world.login("--permanent", "--timers")
    lines = problems(world.check())
    scratch = world.directory / "wf-scratch" / "LOCAL"
    assert lines[0].startswith(f"input raw.csv of job analyse, staged in to file://{scratch}: "
                               f"the bridge moves this through collection {world.data}'s "
                               "HTTPS server"), lines
    world.run_fix(lines[0])
    assert world.check().returncode == 0


def test_a_sites_data_configuration_profile_wins_over_the_properties(world):
    """The planner takes a site's ``pegasus: {data.configuration: ...}`` profile before
    pegasus.data.configuration: nonsharedfs here pulls the go:// scratch to the worker."""
    sites = yaml.safe_load((world.directory / "sites.yml").read_text())
    [local] = [site for site in sites["sites"] if site["name"] == "local"]
    local.setdefault("profiles", {}).setdefault("pegasus", {})["data.configuration"] = \
        "nonsharedfs"
    (world.directory / "sites.yml").write_text(yaml.safe_dump(sites))
    world.login("--permanent", "--timers")
    [line] = problems(world.check())
    assert line.startswith("site local's scratch, pulled to the worker (nonsharedfs): the bridge "
                           f"moves this through collection {world.scratch}'s HTTPS server")
    local["profiles"]["pegasus"]["data.configuration"] = "nfs"
    (world.directory / "sites.yml").write_text(yaml.safe_dump(sites))
    wrong = world.check()
    assert wrong.returncode == 2 and wrong.stderr.strip() == (
        "pegasus-globus-setup: site local: pegasus profile data.configuration = nfs: use one "
        "of sharedfs, nonsharedfs, condorio")


def test_a_login_redone_before_the_kinds_are_known_keeps_its_consents(world, emulator):
    """A revoked login stops the check before any endpoint document: the login it gives asks
    again for the data_access the last login had (Auth granted it), and for nothing else."""
    emulator.mark_collection(world.data, consent_required=True)
    world.login("--permanent", "--timers", "--collections", world.data)
    store = Path(world.env["HOME"]) / ".pegasus" / "globus.conf"
    text = store.read_text()
    assert run_init(world.env, "--logout", "--revoke", code=None).returncode == 0
    store.write_text(text)  # revoked at Globus, still in the file
    [line] = problems(world.check())
    assert line.endswith(f"; fix: pegasus-globus-online-init --permanent --timers --collections "
                         f"{world.data}")
    world.run_fix(line)
    assert world.check().returncode == 0


def test_timer_register_escapes_line_breaks_in_its_problems(tmp_path):
    (tmp_path / "wf.yml").write_text(
        'jobs: [{id: j, name: x, uses: [{lfn: "a\\nb\\e[2J", type: output, metadata: '
        '{globus.timer.interval: 30s}}]}]\n')
    result = subprocess.run([sys.executable, "-m", "pegasus_globus.timers.cli", "register",
                             "wf.yml", "--dry-run"], capture_output=True, text=True,
                            env={**os.environ, "HOME": str(tmp_path)}, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 2 and "\x1b" not in result.stderr
    assert all(line.startswith("pegasus-globus-timer: job j, file a\\nb\\x1b[2J: ")
               for line in result.stderr.splitlines()), result.stderr

"""pegasus-globus-timer against the emulator, and timers from Pegasus workflow metadata."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.concurrent_refresh import logged_in_store
from pegasus_globus.timers.cli import main
from pegasus_globus.timers.schedule import parse_interval, read_items_file

from .conftest import wait_for


@pytest.fixture
def home(emulator, tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("PEGASUS_GLOBUS_CONFIG", raising=False)
    logged_in_store(emulator, home / ".pegasus" / "globus.conf")
    return home


@pytest.fixture
def collections(emulator) -> tuple[str, str]:
    source, destination = str(uuid.uuid4()), str(uuid.uuid4())
    (emulator.collection_path(source) / "data").mkdir()
    (emulator.collection_path(source) / "data" / "a.txt").write_text("a")
    (emulator.collection_path(source) / "data" / "b.txt").write_text("b")
    emulator.collection_path(destination)
    return source, destination


def login_like_init(collections: list[str] = ()) -> None:
    """What ``pegasus-globus-online-init --permanent --timers -c ...`` stores."""
    import globus_sdk

    from pegasus_globus.emulator import approve
    from pegasus_globus.scopes import login_scopes
    from pegasus_globus.token_store import StoredToken, TokenStore

    client = globus_sdk.NativeAppAuthClient("d7382f5a-4ea3-4b69-b094-99c392fc820d")
    client.oauth2_start_flow(requested_scopes=login_scopes(collections, timers=True),
                             refresh_tokens=True)
    tokens = client.oauth2_exchange_code_for_tokens(approve(client.oauth2_get_authorize_url()))
    TokenStore().save_tokens(StoredToken.from_response(tokens))


def run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def run_json(capsys, *argv: str) -> Any:
    status, out, err = run(capsys, *argv, "--format", "json")
    assert status == 0, err
    return json.loads(out)


def new_timer(capsys, source: str, destination: str, *extra: str) -> dict[str, Any]:
    return run_json(capsys, "job", "transfer", "--name", "nightly", "--interval", "1h",
                    "--source-endpoint", source, "--dest-endpoint", destination,
                    "--item", "/data/a.txt", "/~/a.txt", "false", *extra)


# -- parsing -------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,seconds", [("60", 60), ("1d", 86400), ("8h", 28800),
                                          ("1h30m", 5400), ("2w", 1209600), ("1d 12h", 129600)])
def test_intervals(text, seconds):
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text,message", [("30", "at least 60 s"), ("soon", "not an interval"),
                                          ("1x", "not an interval")])
def test_bad_intervals(text, message):
    with pytest.raises(ValueError, match=message):
        parse_interval(text)


def test_items_file_with_comments_and_spaces(tmp_path):
    items = tmp_path / "items.csv"
    items.write_text("# my items\n/share/a.txt,  ~/a.txt , false\n\n  /share/dir/, ~/dir/, TRUE\n")
    assert read_items_file(items) == [("/share/a.txt", "~/a.txt", False),
                                      ("/share/dir/", "~/dir/", True)]


@pytest.mark.parametrize("line,message", [
    ("/a, /b", "line 2: expected 'source, destination"),
    ("/a, /b, maybe", "line 2: recursive 'maybe'"),
    ("a, /b, false", "line 2: source 'a' is relative"),
    ('/a, "' + "x" * 131_073 + '", false', "line 2: field larger than field limit"),
])
def test_items_file_bad_lines(tmp_path, line, message):
    items = tmp_path / "items.csv"
    items.write_text(f"# header comment\n{line}\n")
    with pytest.raises(ValueError, match=message):
        read_items_file(items)


def test_an_items_file_that_is_not_text_is_named(tmp_path):
    items = tmp_path / "items.csv"
    items.write_bytes(b"/a, /b\xff, false\n")
    with pytest.raises(ValueError, match=f"items file {items} is not text"):
        read_items_file(items)


# -- the job commands ----------------------------------------------------------------------------

def test_a_stop_date_before_the_first_run_is_refused(capsys, home, emulator, collections):
    source, destination = collections
    status, _, err = run(capsys, "job", "transfer", "--name", "old", "--interval", "1d",
                         "--source-endpoint", source, "--dest-endpoint", destination,
                         "--item", "/a", "/b", "false", "--stop-after-date", "1990-01-01")
    assert status == 2 and "--stop-after-date 1990-01-01 is before the first run" in err
    assert emulator.state["timers"] == {}


@pytest.mark.parametrize("flag, value, message", [
    ("--name", "n" * 100_000, "--name is 100000 characters long: give at most 128"),
    ("--name", "two\nlines", "--name contains a control character"),
    ("--name", " ", "--name is empty"),
    ("--label", "l" * 129, "--label is 129 characters long: give at most 128"),
])
def test_a_name_or_label_out_of_bounds_is_one_line(capsys, home, emulator, collections, flag,
                                                   value, message):
    source, destination = collections
    named = {"--name": "ok", flag: value}
    status, _, err = run(capsys, "job", "transfer", "--interval", "1d",
                         "--source-endpoint", source, "--dest-endpoint", destination,
                         "--item", "/a", "/b", "false", *[a for kv in named.items() for a in kv])
    assert status == 2 and err.startswith(f"pegasus-globus-timer: {message}")
    assert len(err.splitlines()) == 1 and len(err) < 200  # the text itself is never echoed
    assert emulator.state["timers"] == {}


def test_the_default_label_of_a_long_name_keeps_to_transfers_limit(capsys, home, emulator,
                                                                   collections):
    source, destination = collections
    run_json(capsys, "job", "transfer", "--name", "n" * 128, "--interval", "1d",
             "--source-endpoint", source, "--dest-endpoint", destination,
             "--item", "/data/a.txt", "/~/a.txt", "false")
    [timer] = emulator.state["timers"].values()
    assert timer["name"] == "n" * 128
    assert timer["body"]["label"] == ("Job from Timer service named " + "n" * 128)[:128]


def test_job_transfer_runs_on_schedule_and_stops_after_its_runs(capsys, home, emulator,
                                                               collections):
    source, destination = collections
    items = home.parent / "items.csv"
    items.write_text("# backup\n/data/b.txt, /~/b.txt, false\n")
    timer = new_timer(capsys, source, destination, "--items-file", str(items),
                      "--stop-after-runs", "2", "--verify-checksum")
    assert timer["schedule"]["end"] == {"count": 2}
    assert {i["source_path"] for i in timer["body"]["DATA"]} == {"/data/a.txt", "/data/b.txt"}
    wait_for(lambda: run_json(capsys, "job", "status", timer["job_id"])["number_of_runs"] == 2)
    status, out, _ = run(capsys, "job", "status", timer["job_id"])
    assert status == 0
    assert "Last Run Result: SUCCESS" in out and "Next Run At:     none" in out
    wait_for((emulator.collection_path(destination) / "b.txt").exists)
    status, out, _ = run(capsys, "job", "list")
    assert out.splitlines()[0].split(" | ") == ["Name   ", "Job ID" + " " * 30, "Status",
                                                "Last Result"]
    assert timer["job_id"] in out


def test_start_without_a_zone_is_local_time_and_shown_in_utc(capsys, home, collections):
    source, destination = collections
    local = dt.datetime(2030, 1, 2, 3, 4, 5)
    timer = new_timer(capsys, source, destination, "--start", local.isoformat())
    expected = local.astimezone().astimezone(dt.timezone.utc).isoformat(timespec="seconds")
    assert timer["schedule"]["start"] == expected
    _, out, _ = run(capsys, "job", "status", timer["job_id"])
    assert f"Start:           {expected}" in out


def test_pause_resume_delete_and_show_deleted(capsys, home, collections):
    source, destination = collections
    job_id = new_timer(capsys, source, destination)["job_id"]
    assert "paused" in run(capsys, "job", "pause", job_id)[1]
    assert run_json(capsys, "job", "resume", job_id)["status"] in ("new", "loaded")
    assert run_json(capsys, "job", "delete", job_id)[0]["status"] == "deleted"
    status, _, err = run(capsys, "job", "status", job_id)
    assert status == 1 and "--show-deleted" in err
    assert run_json(capsys, "job", "status", job_id, "--show-deleted")["status"] == "deleted"
    assert run_json(capsys, "job", "list") == []
    assert [j["job_id"] for j in run_json(capsys, "job", "list", "--show-deleted")] == [job_id]


def test_verbose_prints_the_full_json(capsys, home, collections):
    source, destination = collections
    job_id = new_timer(capsys, source, destination)["job_id"]
    _, out, _ = run(capsys, "job", "status", job_id, "--verbose")
    assert json.loads(out)["job_id"] == job_id


def test_missing_consent_is_shown_with_the_fix_then_resumed(capsys, home, emulator,
                                                             collections):
    source, destination = collections
    emulator.mark_collection(destination, consent_required=True)
    job_id = new_timer(capsys, source, destination)["job_id"]
    wait_for(lambda: run_json(capsys, "job", "status", job_id)["status"] == "inactive")
    _, out, _ = run(capsys, "job", "status", job_id)
    assert (f"run pegasus-globus-online-init --permanent --timers --collections {destination}, "
            f"then pegasus-globus-timer job resume {job_id}") in out
    login_like_init([destination])  # the user consents, as the printed command would
    # ... and resumes: with updated credentials, so the next run goes through
    run_json(capsys, "job", "resume", job_id)
    wait_for(lambda: run_json(capsys, "job", "status", job_id)["number_of_runs"] == 1)
    wait_for((emulator.collection_path(destination) / "a.txt").exists)  # the run's task


def test_without_a_timers_login_the_fix_is_named(capsys, home, tmp_path, collections):
    (home / ".pegasus" / "globus.conf").write_text("[oauth]\nclient_id = x\n")
    status, _, err = run(capsys, "job", "list")
    assert status == 1 and "run pegasus-globus-online-init --permanent --timers" in err
    assert "not logged in to Globus Timers" in err  # not the resource server's UUID
    assert run(capsys, "session", "whoami")[0] == 1  # the same state, the same status


@pytest.mark.parametrize("argv,message", [
    (["--interval", "30"], "at least 60 s"),
    (["--interval", "1h", "--start", "tomorrow"], "not a date or date-time"),
    (["--interval", "99999999999999999999w"], "more than 3650d"),
    (["--interval", "1h", "--item", "data/a.txt", "/~/a.txt", "false"], "is relative"),
    (["--interval", "1h", "--item", "/data/a.txt", "/~/a\0b", "false"], "NUL"),
])
def test_bad_job_transfer_input(capsys, home, emulator, collections, argv, message):
    source, destination = collections
    try:  # argparse rejects some values itself, with SystemExit(2)
        status = main(["job", "transfer", "--name", "x", "--source-endpoint", source,
                       "--dest-endpoint", destination, "--item", "/a", "/b", "false", *argv])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2 and message in capsys.readouterr().err
    assert emulator.state["timers"] == {}


def test_session_whoami_and_logout(capsys, home):
    login_like_init()
    status, out, _ = run(capsys, "session", "whoami")
    assert status == 0 and out.startswith("user@example.org")
    status, out, _ = run(capsys, "session", "logout")
    assert status == 0 and "removed" in out
    status, _, err = run(capsys, "job", "list")
    assert status == 1 and "pegasus-globus-online-init" in err


def test_config_is_accepted_after_the_command_too(capsys, home, tmp_path):
    moved = tmp_path / "elsewhere.conf"
    (home / ".pegasus" / "globus.conf").rename(moved)
    assert run(capsys, "job", "list")[0] == 1  # not logged in at the default place
    assert run(capsys, "job", "list", "--config", str(moved))[0] == 0
    assert run(capsys, "--config", str(moved), "job", "list")[0] == 0


@pytest.mark.parametrize("runs,stop_in,condition", [
    (3, dt.timedelta(days=30), "runs"),  # 3 hourly runs end after 2 h
    (300, dt.timedelta(hours=5), "date"),  # 5 h come before 300 hourly runs
])
def test_both_stop_conditions_the_earlier_ends_the_timer(capsys, home, collections, runs,
                                                          stop_in, condition):
    """The seed: "the job stops running as soon as one stop condition is met"."""
    stop = (dt.datetime.now(dt.timezone.utc) + stop_in).replace(microsecond=0)
    timer = new_timer(capsys, *collections, "--stop-after-runs", str(runs),
                      "--stop-after-date", stop.isoformat())
    end = timer["schedule"]["end"]
    if condition == "date":
        assert "count" not in end and dt.datetime.fromisoformat(end["datetime"]) == stop
    else:
        assert end.get("count") == runs and "datetime" not in end


def test_a_destination_the_shell_expanded_is_pointed_out(capsys, home, collections):
    """The seed's ``--item /share/godata/file1.txt ~/new_file1.txt false``, pasted into a
    shell, arrives as $HOME/new_file1.txt."""
    status, _, err = run(capsys, "job", "transfer", "--name", "x", "--interval", "1h",
                         "--source-endpoint", collections[0], "--dest-endpoint", collections[1],
                         "--item", "/data/a.txt", f"{home}/new_file1.txt", "false")
    assert status == 0
    assert f"'{home}/new_file1.txt' starts with your local home directory" in err
    assert "/~/new_file1.txt" in err


# -- timers from workflow metadata ---------------------------------------------------------------

def write_workflow(path: Path, source: str, destination: str, runs: int = 3,
                   **extra: str) -> Path:
    """Inputs backed up hourly; the job's outputs every 2 minutes (0.2 s at x600), N times."""
    from Pegasus.api import File, Job, ReplicaCatalog, Workflow

    from pegasus_globus.timers.authoring import globus_timer

    workflow = Workflow("nightly")
    catalog = ReplicaCatalog()
    data = File("a.txt")
    catalog.add_replica("globus", data, f"go://{source}/data/a.txt")
    globus_timer(data, interval="1h", destination=f"go://{destination}/inputs/")
    outputs = [File(f"out{i}.dat") for i in range(3)]
    job = Job("analyze", _id="ID0001").add_inputs(data).add_outputs(*outputs)
    globus_timer(job, interval="2m", source=f"go://{source}/data/",
                 destination=f"go://{destination}/backup/", stop_after_runs=runs)
    if extra:
        job.add_metadata(**extra)
    workflow.add_jobs(job).add_replica_catalog(catalog)
    workflow.write(str(path))
    return path


def test_workflow_timers_run_exactly_their_count_and_register_is_idempotent(
        capsys, home, emulator, collections, tmp_path):
    source, destination = collections
    workflow = write_workflow(tmp_path / "wf.yml", source, destination, runs=3)
    outcomes = run_json(capsys, "register", str(workflow))
    assert sorted(o["action"] for o in outcomes) == ["created", "created"]
    daily = next(o for o in outcomes if o["job_id"] in emulator.state["timers"]
                 and emulator.state["timers"][o["job_id"]]["schedule"].get("end"))
    wait_for(lambda: run_json(capsys, "job", "status", daily["job_id"])["next_run"] is None)
    assert run_json(capsys, "job", "status", daily["job_id"])["number_of_runs"] == 3
    wait_for((emulator.collection_path(destination) / "backup" / "b.txt").exists)
    wait_for((emulator.collection_path(destination) / "inputs" / "a.txt").exists)
    again = run_json(capsys, "register", str(workflow))
    assert [o["action"] for o in again] == ["unchanged", "unchanged"]
    assert len(emulator.state["timers"]) == 2
    ledger = json.loads(Path(f"{workflow}.timers.json").read_text())
    assert sorted(ledger["timers"].values()) == sorted(o["job_id"] for o in outcomes)
    deleted = run_json(capsys, "unregister", str(workflow))
    assert len(deleted) == 2
    assert all(t["status"] == "deleted" for t in emulator.state["timers"].values())


def test_a_changed_group_is_reported_and_replaced_only_when_asked(capsys, home, emulator,
                                                                  collections, tmp_path):
    source, destination = collections
    workflow = write_workflow(tmp_path / "wf.yml", source, destination)
    run_json(capsys, "register", str(workflow))
    changed = write_workflow(tmp_path / "wf.yml", source, destination,
                             **{"globus.timer.label": "renamed backup"})
    outcomes = run_json(capsys, "register", str(changed))
    assert sorted(o["action"] for o in outcomes) == ["created", "unchanged"]
    # the label is part of the group's identity, so a new timer is made; an items change
    # keeps the name and is reported instead:
    catalog_change = write_workflow(tmp_path / "wf.yml", source, destination)
    text = catalog_change.read_text().replace("/data/a.txt", "/data/b.txt")
    catalog_change.write_text(text)
    outcomes = run_json(capsys, "register", str(catalog_change))
    assert "changed" in {o["action"] for o in outcomes}
    outcomes = run_json(capsys, "register", str(catalog_change), "--replace")
    assert "replaced" in {o["action"] for o in outcomes}


@pytest.mark.parametrize("document,message", [
    ({"jobs": "x"}, "jobs should be a list, not str"),
    ({"jobs": ["j1"]}, "jobs[0] should be a mapping, not str"),
    ({"jobs": [{"id": "J1", "uses": ["x"]}]}, "job 'J1' uses[0] should be a mapping"),
    ({"jobs": [{"id": "J1", "metadata": ["x"]}]}, "job 'J1' metadata should be a mapping"),
    ({"jobs": [], "metadata": "x"}, "the workflow's metadata should be a mapping"),
    ({"jobs": [], "replicaCatalog": ["x"]}, "replicaCatalog should be a mapping"),
])
def test_workflow_shapes_pegasus_would_refuse_are_named(capsys, home, emulator, tmp_path,
                                                        document, message):
    path = tmp_path / "odd.yml"
    path.write_text(json.dumps({"pegasus": "5.0.4", "name": "odd", **document}))
    status, _, err = run(capsys, "register", str(path))
    assert status == 2 and message in err and "Traceback" not in err
    assert emulator.state["timers"] == {}


def test_a_replica_catalog_that_is_a_list_is_named(capsys, home, emulator, tmp_path):
    path = tmp_path / "wf.yml"
    path.write_text(json.dumps({"pegasus": "5.0.4", "name": "wf", "jobs": []}))
    catalog = tmp_path / "rc.yml"
    catalog.write_text("- lfn: a\n")
    status, _, err = run(capsys, "register", str(path), "--replica-catalog", str(catalog))
    assert status == 2 and ("is not a Pegasus 5 replica catalog: the catalog should be a "
                            "mapping, not a list") in err


def test_bad_metadata_is_all_reported_and_nothing_is_created(capsys, home, emulator,
                                                             collections, tmp_path):
    from Pegasus.api import File, Job, Workflow

    source, destination = collections
    workflow = Workflow("broken")
    jobs = []
    for number, metadata in enumerate([
        {"globus.timer.interval": "soon", "globus.timer.destination": f"go://{destination}/"},
        {"globus.timer.interval": "1d", "globus.timer.start": "next tuesday",
         "globus.timer.destination": f"go://{destination}/", "globus.timer.source":
         f"go://{source}/x/"},
        {"globus.timer.interval": "1d", "globus.timer.source": "go://not-a-uuid/x/",
         "globus.timer.destination": f"go://{destination}/"},
        {"globus.timer.interval": "1d", "globus.timer.source": f"go://{source}/x/"},
    ]):
        job = Job("step", _id=f"J{number}").add_outputs(File(f"f{number}"))
        jobs.append(job.add_metadata(**metadata))
    workflow.add_jobs(*jobs)
    path = tmp_path / "broken.yml"
    workflow.write(str(path))
    status, _, err = run(capsys, "register", str(path))
    assert status == 2
    assert "job J0, file f0: globus.timer.interval: 'soon' is not an interval" in err
    assert "job J1, file f1: globus.timer.start" in err
    assert "job J2, file f2: globus.timer.source" in err and "UUID" in err
    assert "job J3, file f3: globus.timer.destination is missing" in err
    assert emulator.state["timers"] == {}

"""``pegasus-globus-online`` against the emulator, alone and driven by stock pegasus-transfer."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bench.concurrent_refresh import logged_in_store
from pegasus_globus.scopes import TRANSFER_RS

from .conftest import admin, deny_as_mode_000, wait_for

HANDLER = [sys.executable, "-m", "pegasus_globus.online"]


class World:
    """An emulator, a logged-in HOME, two collections and a way to run the handler."""

    def __init__(self, emulator, tmp_path: Path) -> None:
        self.emulator = emulator
        self.home = tmp_path / "home"
        self.store = logged_in_store(emulator, self.home / ".pegasus" / "globus.conf")
        self.source, self.destination = str(uuid.uuid4()), str(uuid.uuid4())
        self.src_root = emulator.collection_path(self.source)
        self.dst_root = emulator.collection_path(self.destination)
        self.spec_path = tmp_path / "spec.json"
        self.env = {**os.environ, **emulator.environment, "HOME": str(self.home)}
        self.env.pop("PEGASUS_GLOBUS_CONFIG", None)

    def credentials(self) -> dict[str, Any]:
        """What stock pegasus-transfer puts in the spec, read back with stock's rules."""
        token = self.store.token(TRANSFER_RS)
        return {"client_id": self.store.client_id(), "transfer_at": token.access_token,
                "transfer_rt": token.refresh_token, "transfer_at_exp": token.expires_at}

    def spec(self, **fields: Any) -> Path:
        self.spec_path.write_text(json.dumps({**self.credentials(), **fields}))
        return self.spec_path

    def transfer_spec(self, *files: tuple[str, str]) -> Path:
        return self.spec(src_endpoint=self.source, dst_endpoint=self.destination,
                         files=[{"src": s, "dst": d} for s, d in files])

    def run(self, mode: str, spec: Path, *extra: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*HANDLER, f"--{mode}", "--file", str(spec), *extra],
                              capture_output=True, text=True, timeout=120,
                              env={**self.env, **env})

    def handler_on_an_inactive_task(self) -> subprocess.Popen:
        """The handler running, its task held INACTIVE (the destination is inactive)."""
        (self.src_root / "f").write_text("f")
        self.emulator.mark_collection(self.destination, inactive=True)
        process = subprocess.Popen([*HANDLER, "--transfer", "--file",
                                    str(self.transfer_spec(("/f", "/~/f")))],
                                   stderr=subprocess.PIPE, text=True, env=self.env)
        wait_for(lambda: self.tasks() and self.tasks()[0]["status"] == "INACTIVE", timeout=30)
        return process

    def tasks(self) -> list[dict[str, Any]]:
        return [task["doc"] for task in self.emulator.state["tasks"].values()]


@pytest.fixture
def world(emulator, tmp_path) -> World:
    return World(emulator, tmp_path)


def test_transfer_of_files_and_a_directory(world):
    (world.src_root / "in" / "sub").mkdir(parents=True)
    (world.src_root / "in" / "sub" / "x.dat").write_text("x")
    (world.src_root / "f.txt").write_text("f")
    result = world.run("transfer", world.transfer_spec(("/f.txt", "/~/out/f.txt"),
                                                       ("/in", "/~/out/in")))
    assert result.returncode == 0, result.stderr
    assert (world.dst_root / "out" / "f.txt").read_text() == "f"
    assert (world.dst_root / "out" / "in" / "sub" / "x.dat").read_text() == "x"
    assert "transfer complete" in result.stderr
    assert len(world.tasks()) == 1
    assert world.tasks()[0]["verify_checksum"] is True  # on by default


def test_mkdir_of_a_deep_path_twice(world):
    spec = world.spec(endpoint=world.destination, files=["/~/a/b/c/d/e"])
    first, second = world.run("mkdir", spec), world.run("mkdir", spec)
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert (world.dst_root / "a" / "b" / "c" / "d" / "e").is_dir()
    assert "5 directories created" in first.stderr
    assert "0 directories created" in second.stderr
    assert "retrying" not in second.stderr  # "already exists" is an answer, not a fault


def test_mkdir_on_a_fresh_collection_and_a_parent_that_is_a_file(world):
    """Every collection has a root; a parent that cannot hold directories ends in a clear
    failure after a few calls (it recursed 968 times into a RecursionError)."""
    fresh = world.run("mkdir", world.spec(endpoint=world.destination,
                                          files=["/~/run/inputs"]))
    assert fresh.returncode == 0, fresh.stderr
    assert (world.dst_root / "run" / "inputs").is_dir()
    (world.dst_root / "blocker").write_text("a file")
    admin(world.emulator, "DELETE", "/_emulator/stats")
    blocked = world.run("mkdir", world.spec(endpoint=world.destination,
                                            files=["/~/blocker/sub/dir"]))
    assert blocked.returncode == 1 and "is a parent a file?" in blocked.stderr
    assert "Traceback" not in blocked.stderr
    assert admin(world.emulator, "GET", "/_emulator/stats")["total"] < 20


def test_mkdir_where_the_collection_denies_you_says_what_to_do(world, monkeypatch):
    """A directory whose storage permissions keep you out (403 EndpointPermissionDenied, as
    Globus answers path by path; see deny_as_mode_000). Seen: Globus' several lines of
    GridFTP details squeezed into one, and no word of what to do."""
    locked = world.dst_root / "locked"
    locked.mkdir()
    deny_as_mode_000(monkeypatch, locked)
    result = world.run("mkdir", world.spec(endpoint=world.destination, files=["/~/locked/run"]))
    [line] = result.stderr.splitlines()
    assert result.returncode == 1
    assert line.endswith("the collection denies you access there (403 "
                         "EndpointPermissionDenied): ask its administrator for access, or use a "
                         "path you can reach"), line


def test_remove_honours_recursive_and_ignores_what_is_gone(world):
    (world.dst_root / "tree" / "deep").mkdir(parents=True)
    (world.dst_root / "tree" / "deep" / "f").write_text("f")
    flat = world.run("remove", world.spec(endpoint=world.destination, recursive=False,
                                          files=["/~/tree"]))
    assert flat.returncode == 1 and "DIRECTORY_NOT_EMPTY" in flat.stderr
    deep = world.run("remove", world.spec(endpoint=world.destination, recursive=True,
                                          files=["/~/tree", "/~/never-existed"]))
    assert deep.returncode == 0, deep.stderr
    assert not (world.dst_root / "tree").exists()


def test_a_missing_source_fails_fast_and_cancels_the_task(world):
    """Globus would keep the task ACTIVE until its deadline (24 h): give up after the grace."""
    (world.src_root / "ok.txt").write_text("ok")
    started = time.monotonic()
    result = world.run("transfer", world.transfer_spec(("/ok.txt", "/~/ok.txt"),
                                                       ("/missing.txt", "/~/m.txt")),
                       PEGASUS_GLOBUS_PATH_ERROR_GRACE="1")
    assert result.returncode == 1
    assert time.monotonic() - started < 60
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert any("FILE_NOT_FOUND" in line and "/missing.txt" in line for line in errors)
    assert errors[-1].split("ERROR:", 1)[1].strip().startswith("transfer of 2 item(s)")
    assert "cancelled" in result.stderr
    assert not any("CANCELED:" in line for line in errors)  # our own cancel is no cause
    assert [task["fatal_error"]["code"] for task in world.tasks()] == ["CANCELED"]


def test_consent_required_names_the_fix(world):
    (world.src_root / "f").write_text("f")
    world.emulator.mark_collection(world.destination, consent_required=True)
    result = world.run("transfer", world.transfer_spec(("/f", "/~/f")))
    assert result.returncode == 1
    assert (f"run pegasus-globus-online-init --permanent --collections {world.destination}"
            in result.stderr)


def test_injected_faults_deliver_every_item_exactly_once_in_one_task(world):
    for index in range(30):
        (world.src_root / f"{index}.dat").write_text(str(index))
    spec = world.transfer_spec(*[(f"/{i}.dat", f"/~/{i}.dat") for i in range(30)])
    admin(world.emulator, "PATCH", "_emulator/settings", {"fault_rate": 0.2})
    result = world.run("transfer", spec)
    admin(world.emulator, "PATCH", "_emulator/settings", {"fault_rate": 0})
    assert result.returncode == 0, result.stderr
    assert len(world.tasks()) == 1
    assert world.tasks()[0]["files_transferred"] == 30
    assert sorted(p.name for p in world.dst_root.iterdir()) == sorted(
        f"{i}.dat" for i in range(30))
    assert admin(world.emulator, "GET", "_emulator/stats")["faults"] > 0


def test_sigterm_cancels_the_running_task(world):
    process = world.handler_on_an_inactive_task()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 1
    assert "interrupted by SIGTERM; the Globus task was cancelled" in process.stderr.read()
    assert world.tasks()[0]["fatal_error"]["code"] == "CANCELED"


def test_a_second_sigterm_during_the_cancel_still_cancels(world):
    """HTCondor or an impatient user signals again while the cancel is being retried."""
    process = world.handler_on_an_inactive_task()
    admin(world.emulator, "PATCH", "_emulator/settings", {"fault_rate": 1.0})  # cancel fails
    process.send_signal(signal.SIGTERM)
    wait_for(lambda: admin(world.emulator, "GET", "_emulator/stats")["faults"] > 0)
    process.send_signal(signal.SIGTERM)  # while globus-sdk waits to retry the cancel
    admin(world.emulator, "PATCH", "_emulator/settings", {"fault_rate": 0.0})
    assert process.wait(timeout=60) == 1
    stderr = process.stderr.read()
    assert "Traceback" not in stderr and "the Globus task was cancelled" in stderr
    assert world.tasks()[0]["fatal_error"]["code"] == "CANCELED"


def test_a_cancel_as_the_handler_ends_is_tried_for_seconds_not_a_minute(world):
    """A batch system's soft kill (SIGTERM) is followed by SIGKILL within seconds: with Globus
    answering only errors, the cancel is tried 3 times (about 1.5 s), not globus-sdk's 6 with
    backoff up to 10 s (13 s here; 46 s seen with Globus gone)."""
    process = world.handler_on_an_inactive_task()
    admin(world.emulator, "PATCH", "_emulator/settings", {"fault_rate": 1.0})
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 1
    assert "could not cancel task" in process.stderr.read()
    requests = admin(world.emulator, "GET", "_emulator/stats")["requests"]
    assert requests["POST /v0.10/task/{task_id}/cancel"] == 3


def test_a_cancel_globus_did_not_take_is_not_said_to_be_done():
    """Interrupted while Globus Transfer is unreachable, the handler could not cancel its task
    (which then ran to its end): it must not say "the Globus task was cancelled"."""
    import globus_sdk

    from pegasus_globus.transfer.operations import GlobusTransfers

    # a real client (its retries and timeout tuned for the cancel), at a port nothing serves
    unreachable = globus_sdk.TransferClient(base_url="http://127.0.0.1:1/v0.10/")
    transfers = GlobusTransfers(unreachable, label="x")
    transfers.current_task = "task"
    assert transfers.cancel_current() is False


def test_globus_transfer_down_is_said_with_the_url_the_cause_and_the_next_try(world):
    (world.src_root / "f").write_text("f")
    process = subprocess.Popen([*HANDLER, "--transfer", "--file",
                                str(world.transfer_spec(("/f", "/~/f")))],
                               stderr=subprocess.PIPE, text=True,
                               env={**world.env,
                                    "GLOBUS_SDK_SERVICE_URL_TRANSFER": "http://127.0.0.1:9/"})
    try:
        first = process.stderr.readline()  # the first retry is announced at once
    finally:
        process.kill()
        process.wait()
    assert "Globus Transfer at http://127.0.0.1:9/v0.10/" in first
    assert "cannot reach it ([Errno 111] Connection refused)" in first
    assert re.search(r"try 2 of 6 at \d\d:\d\d:\d\d \(in \d+\.\d s\)", first)


def test_a_task_inactive_too_long_is_cancelled_and_fails(world):
    (world.src_root / "f").write_text("f")
    world.emulator.mark_collection(world.destination, inactive=True)
    result = world.run("transfer", world.transfer_spec(("/f", "/~/f")),
                       PEGASUS_GLOBUS_INACTIVE_TIMEOUT="1")
    assert result.returncode == 1
    assert "was INACTIVE for more than 1 s and was cancelled" in result.stderr
    assert world.tasks()[0]["status"] == "FAILED"


def test_options_and_label_come_from_the_environment(world):
    (world.src_root / "f").write_text("f")
    result = world.run("transfer", world.transfer_spec(("/f", "/~/f")),
                       PEGASUS_GLOBUS_SYNC_LEVEL="checksum",
                       PEGASUS_GLOBUS_PRESERVE_TIMESTAMP="true",
                       PEGASUS_WF_UUID="wf-1", PEGASUS_DAG_JOB_ID="stage_in_0")
    assert result.returncode == 0, result.stderr
    task = world.tasks()[0]
    assert (task["sync_level"], task["preserve_timestamp"], task["label"]) == (
        3, True, "wf-1 - stage_in_0")


@pytest.mark.parametrize("variable,value", [("PEGASUS_GLOBUS_SYNC_LEVEL", "sometimes"),
                                            ("PEGASUS_GLOBUS_VERIFY_CHECKSUM", "maybe"),
                                            ("PEGASUS_GLOBUS_DEADLINE_HOURS", "-1")])
def test_a_bad_option_is_a_one_line_error(world, variable, value):
    result = world.run("transfer", world.transfer_spec(("/f", "/~/f")), **{variable: value})
    assert result.returncode == 2
    assert variable in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert world.tasks() == []


@pytest.mark.parametrize("recursive", ["False", "false", False])
def test_the_planners_string_false_never_deletes_a_tree(world, recursive):
    """pegasus-plan writes "recursive": "False" in remove specs (seen with Pegasus 5.1.2)."""
    (world.dst_root / "tree" / "deep").mkdir(parents=True)
    (world.dst_root / "tree" / "deep" / "f").write_text("f")
    result = world.run("remove", world.spec(endpoint=world.destination, recursive=recursive,
                                            files=["/~/tree"]))
    assert result.returncode == 1 and "DIRECTORY_NOT_EMPTY" in result.stderr
    assert (world.dst_root / "tree" / "deep" / "f").exists()


def test_the_planners_string_true_removes_a_tree(world):
    (world.dst_root / "tree" / "deep").mkdir(parents=True)
    result = world.run("remove", world.spec(endpoint=world.destination, recursive="True",
                                            files=["/~/tree"]))
    assert result.returncode == 0, result.stderr
    assert not (world.dst_root / "tree").exists()


@pytest.mark.parametrize("recursive", ["yes", 1, None, "Falsch"])
def test_any_other_recursive_value_is_refused_naming_the_key(world, recursive):
    (world.dst_root / "tree").mkdir()
    result = world.run("remove", world.spec(endpoint=world.destination, recursive=recursive,
                                            files=["/~/tree"]))
    assert result.returncode == 2 and "'recursive'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert world.tasks() == [] and (world.dst_root / "tree").exists()


@pytest.mark.parametrize("content,message", [
    ("{broken", "not valid JSON"),
    ('{"client_id": "c", "transfer_at": "a", "files": [{"src": "/a", "dst": "/b"}],'
     ' "src_endpoint": "not-a-uuid", "dst_endpoint": "not-a-uuid"}', "not a collection UUID"),
    ('{"client_id": "c", "transfer_at": "a", "files": []}', "'files' is empty"),
    ('{"client_id": "c", "transfer_at": "a", "transfer_rt": 12345, "files": [{"src": "/a", '
     '"dst": "/b"}], "src_endpoint": "x", "dst_endpoint": "y"}', "'transfer_rt' must be"),
])
def test_a_bad_spec_is_a_one_line_error(world, content, message):
    world.spec_path.write_text(content)
    result = world.run("transfer", world.spec_path)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_tokens_never_reach_the_output_even_with_debug_and_refresh(world):
    (world.src_root / "f").write_text("f")
    world.store.update({"oauth": {"transfer_at_exp": "0"}})  # expired: the handler refreshes
    before = world.credentials()
    result = world.run("transfer", world.transfer_spec(("/f", "/~/f")), "--debug")
    assert result.returncode == 0, result.stderr
    after = world.credentials()
    assert after["transfer_at"] != before["transfer_at"]  # refreshed and written back
    assert after["transfer_rt"] == before["transfer_rt"]
    for secret in (before["transfer_at"], before["transfer_rt"], after["transfer_at"]):
        assert secret not in result.stdout + result.stderr
    assert "DEBUG" in result.stderr


def test_an_expired_unrefreshable_token_names_the_fix(world):
    spec = world.transfer_spec(("/f", "/~/f"))
    document = json.loads(spec.read_text())
    spec.write_text(json.dumps({**document, "transfer_rt": None, "transfer_at_exp": 1}))
    result = world.run("transfer", spec)
    assert result.returncode == 1
    assert "cannot be refreshed: run pegasus-globus-online-init --permanent" in result.stderr


@pytest.mark.parametrize("expiry", ["Infinity", "NaN", "1e999"])
def test_an_expiry_that_is_no_number_of_seconds_is_named(world, expiry):
    spec = world.transfer_spec(("/f", "/~/f"))
    text = json.dumps({**json.loads(spec.read_text()), "transfer_at_exp": 0})
    spec.write_text(text.replace('"transfer_at_exp": 0', f'"transfer_at_exp": {expiry}'))
    result = world.run("transfer", spec)
    assert result.returncode == 2, result.stderr
    assert "'transfer_at_exp' is not a number" in result.stderr
    assert "Traceback" not in result.stderr and "unexpected" not in result.stderr


# -- stock pegasus-transfer (pegasus-wms.worker 5.1.3) driving our handler -----------------

def pegasus_transfer(world: World, entries: list[dict[str, Any]],
                     **environment: str) -> subprocess.CompletedProcess:
    import Pegasus

    script = Path(Pegasus.__file__).parent / "cli" / "pegasus-transfer.py"
    listing = world.spec_path.with_name("transfers.json")
    listing.write_text(json.dumps(entries))
    handler_dir = Path(sys.executable).parent  # where pip put our pegasus-globus-online
    assert (handler_dir / "pegasus-globus-online").exists()
    # as on a host without a Pegasus installation: with PEGASUS_HOME set, pegasus-transfer
    # would run $PEGASUS_HOME/bin/pegasus-globus-online before PATH's (pegasus-globus-setup
    # install is the fix there, tested in test_setup_and_examples and test_real_pegasus)
    env = {**{k: v for k, v in world.env.items() if k != "PEGASUS_HOME"},
           "PATH": f"{handler_dir}:{world.env['PATH']}", **environment}
    return subprocess.run([sys.executable, str(script), "--file", str(listing),
                           "--max-attempts", "1", "--threads", "1"], capture_output=True, text=True,
                          timeout=300, env=env)


def go(collection: str, path: str) -> dict[str, str]:
    return {"site_label": "globus", "url": f"go://{collection}{path}"}


def test_stock_pegasus_transfer_moves_go_urls_through_our_handler(world):
    """The planner's create-dir, stage-in and cleanup jobs: one pegasus-transfer run each."""
    (world.src_root / "inputs").mkdir()
    for name in ("a.txt", "b.txt"):
        (world.src_root / "inputs" / name).write_text(name)
    (world.dst_root / "old").mkdir()
    create_dir = [{"type": "mkdir", "target": go(world.destination, "/~/run/inputs")}]
    stage_in = [{"type": "transfer", "lfn": name, "id": i, "linkage": "input",
                 "src_urls": [go(world.source, f"/inputs/{name}")],
                 "dest_urls": [go(world.destination, f"/~/run/inputs/{name}")]}
                for i, name in enumerate(("a.txt", "b.txt"))]
    cleanup = [{"type": "remove", "target": {**go(world.destination, "/~/old"),
                                              "recursive": True}}]
    for job in (create_dir, stage_in, cleanup):
        result = pegasus_transfer(world, job)
        assert result.returncode == 0, result.stdout + result.stderr
    for name in ("a.txt", "b.txt"):
        assert (world.dst_root / "run" / "inputs" / name).read_text() == name
    assert not (world.dst_root / "old").exists()
    assert len(world.tasks()) == 2  # one transfer task for the batch, one delete task


def test_a_failing_go_transfer_fails_pegasus_transfer(world):
    entries = [{"type": "transfer", "lfn": "x", "id": 1, "linkage": "input",
                "src_urls": [go(world.source, "/missing")],
                "dest_urls": [go(world.destination, "/~/x")]}]
    started = time.monotonic()
    result = pegasus_transfer(world, entries, PEGASUS_GLOBUS_PATH_ERROR_GRACE="1")
    assert result.returncode != 0
    assert "FILE_NOT_FOUND" in result.stdout + result.stderr
    assert time.monotonic() - started < 300


def test_the_first_status_request_comes_before_any_sleep():
    """Stock polls at once; waiting first cost a small transfer on an idle service 0.5 s."""
    from pegasus_globus.transfer.watch import TaskWatcher

    happened: list[Any] = []
    watcher = TaskWatcher(lambda task_id: happened.append("status") or {"status": "SUCCEEDED"},
                          cancel=lambda task_id: None, inactive_timeout=900,
                          progress_interval=60, is_transient=lambda error: False,
                          sleep=happened.append)
    assert watcher.wait("task").status == "SUCCEEDED"
    assert happened == ["status"]


def test_a_young_task_is_polled_every_quarter_second_then_ever_less_often():
    """A task the service picks up after a second is seen done within 0.25 s of its end; an
    hour-long one costs about as many polls as a 15 s interval would."""
    from itertools import islice

    from pegasus_globus.transfer.watch import poll_delays

    delays = list(islice(poll_delays(), 300))
    elapsed = [sum(delays[:n + 1]) for n in range(len(delays))]
    young = [d for d, t in zip(delays[1:], elapsed[1:]) if t <= 2.0]
    assert delays[0] == 0 and young and max(young) <= 0.25
    assert max(delays) == 15.0 and delays == sorted(delays)
    assert sum(1 for t in elapsed if t <= 3600) < 260


def test_a_long_task_about_to_end_is_polled_as_it_ends():
    """At the rate its items have gone so far, the poll after the 98th of 100 items comes when
    the task should end, not at the next step of a schedule grown to seconds."""
    from pegasus_globus.transfer.watch import QUICK_POLL

    ended, _ = watch_a_fake_batch(rate=10, picked_up=0.0, items=100)
    assert 10.0 <= ended <= 10.0 + QUICK_POLL + 1e-6


def watch_a_fake_batch(rate: float, picked_up: float,
                       items: int = 1000) -> tuple[float, list[float]]:
    """``items`` files that the service starts copying ``picked_up`` seconds after the
    submission, at ``rate`` files a second, watched on a fake clock: when the watch ended, and
    its polls."""
    from pegasus_globus.transfer.watch import TaskWatcher

    now = [0.0]
    polls: list[float] = []

    def task(task_id: str) -> dict[str, Any]:
        polls.append(now[0])
        done = min(items, max(0, int(rate * (now[0] - picked_up) + 1e-6)))
        return {"status": "SUCCEEDED" if done == items else "ACTIVE", "subtasks_total": items,
                "subtasks_succeeded": done, "subtasks_pending": items - done}

    def sleep(seconds: float) -> None:
        now[0] += seconds
    watcher = TaskWatcher(task, cancel=lambda task_id: None, inactive_timeout=900,
                          progress_interval=600, is_transient=lambda error: False,
                          sleep=sleep, clock=lambda: now[0])
    assert watcher.wait("task").status == "SUCCEEDED"
    return now[0], polls


def test_a_batch_picked_up_late_is_seen_ending_at_the_rate_of_its_last_poll():
    """1,000 files the service picks up after 1 s and copies at 1,600 a second end at 1.625 s:
    the rate between the last two polls says so, and the poll comes then, not on the
    quarter-second grid (1.75 s). The rate since the submission, pick-up included, said
    0.375 s more."""
    from pegasus_globus.transfer.watch import SOONEST_POLL

    ended, _ = watch_a_fake_batch(rate=1600, picked_up=1.0)
    assert 1.625 <= ended <= 1.625 + SOONEST_POLL


def test_a_batch_seen_starting_is_polled_again_soon_to_learn_its_rate():
    """Items that began between two polls went at an unknown rate (the poll before saw
    none): 1,000 files copied at 5,000 a second from 1.2 s end at 1.4 s, and the poll after
    the first sight of them (250 done at 1.25 s, which would say 1,000 a second and 0.75 s
    more) comes soon, learns the rate and catches the end, not 0.1 s late at 1.5 s."""
    from pegasus_globus.transfer.watch import SOONEST_POLL

    ended, polls = watch_a_fake_batch(rate=5000, picked_up=1.2)
    assert 1.4 <= ended <= 1.4 + SOONEST_POLL
    assert len(polls) <= 9  # 0, 0.25, ... 1.25, then the probe and the end


def test_a_finished_run_leaves_its_objects_to_the_exit(tmp_path):
    """The interpreter's exit would walk every object globus-sdk and requests made, looking
    for cycles to collect (about 90 ms, as long as a small file's whole transfer): a run
    that is over freezes them, and the process ends without that walk."""
    spec = tmp_path / "spec.json"
    spec.write_text("{broken")
    result = subprocess.run([sys.executable, "-c", (
        "import gc, sys; from pegasus_globus.online import main; "
        "status = main(sys.argv[1:]); print(status, gc.get_freeze_count() > 0)"),
        "--transfer", "--file", str(spec)], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["2", "True"], result.stderr

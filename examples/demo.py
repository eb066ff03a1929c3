"""`make demo`: rehearse Globus transfers and timers against the local emulator.

Starts the emulator on a sped-up clock, logs in through a native-app PKCE flow, copies a
directory between two collections, and lets a recurring timer run three times, all through
plain globus-sdk 4 calls. Each step prints one line; the last says where the files are.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import globus_sdk

from pegasus_globus.emulator import Emulator, approve

OUTPUT = Path(__file__).resolve().parent.parent / "demo-output"
CLIENT_ID = "d7382f5a-4ea3-4b69-b094-99c392fc820d"  # Pegasus' native app
TIME_SCALE = 86400  # one emulated day passes in a second


def step(text: str) -> None:
    print(f"- {text}", flush=True)


def main() -> int:
    shutil.rmtree(OUTPUT, ignore_errors=True)
    with Emulator(OUTPUT / "globus", time_scale=TIME_SCALE) as emulator:
        os.environ.update(emulator.environment)
        step(f"emulator serving Globus Auth, Transfer and Timers at {emulator.url} "
             f"(clock x{TIME_SCALE})")

        auth = globus_sdk.NativeAppAuthClient(CLIENT_ID)
        transfer_scope = globus_sdk.TransferClient.scopes.all
        auth.oauth2_start_flow(refresh_tokens=True, requested_scopes=(
            f"{transfer_scope} {globus_sdk.TimersClient.scopes.timer}[{transfer_scope}]"))
        tokens = auth.oauth2_exchange_code_for_tokens(approve(auth.oauth2_get_authorize_url()))
        step(f"logged in with PKCE: tokens for {', '.join(sorted(tokens.by_resource_server))}")

        def client(cls: type, server: str) -> globus_sdk.BaseClient:
            rt = tokens.by_resource_server[server]["refresh_token"]
            return cls(authorizer=globus_sdk.RefreshTokenAuthorizer(rt, auth))

        transfer = client(globus_sdk.TransferClient, "transfer.api.globus.org")
        timers = client(globus_sdk.TimersClient, globus_sdk.TimersClient.resource_server)

        source, backup = str(uuid.uuid4()), str(uuid.uuid4())
        inputs = emulator.collection_path(source) / "run1"
        inputs.mkdir()
        for index in range(3):
            (inputs / f"part{index}.dat").write_bytes(os.urandom(64 * 1024))
        data = globus_sdk.TransferData(source, backup, label="demo stage-in")
        data.add_item("/run1/", "/~/run1/", recursive=True)
        task_id = transfer.submit_transfer(data)["task_id"]
        transfer.task_wait(task_id, timeout=30, polling_interval=1)
        task = transfer.get_task(task_id)
        step(f"transfer {task_id[:8]}: {task['status']}, {task['files_transferred']} files, "
             f"{task['bytes_transferred']} bytes")

        body = globus_sdk.TransferData(source, backup, label="demo nightly backup")
        body.add_item("/run1/", "/~/backup/run1/", recursive=True)
        schedule = globus_sdk.RecurringTimerSchedule(
            86400, end={"condition": "iterations", "count": 3})
        job = timers.create_timer(globus_sdk.TransferTimer(name="demo nightly backup",
                                                           schedule=schedule, body=body))
        job_id = job["timer"]["job_id"]
        step(f"timer {job_id[:8]} created: daily, 3 runs, first at {job['timer']['next_run']}")
        deadline = time.monotonic() + 30
        while timers.get_job(job_id)["number_of_runs"] < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        job = timers.get_job(job_id)
        results = [r["data"]["display_status"] for r in job["results"]["data"]]
        step(f"timer ran {job['number_of_runs']} times in 3 emulated days: {', '.join(results)}")
    step(f"files are under {OUTPUT / 'globus' / 'collections'}")
    return 0 if job["number_of_runs"] == 3 else 1


if __name__ == "__main__":
    sys.exit(main())

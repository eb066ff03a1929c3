"""The cancel as the handler ends on SIGTERM, against a Globus that takes the request and
never answers it (tester s32c). README: "3 times, each given 2 s to answer, 8 s at most";
each try waited for globus-sdk's own HTTP timeout (60 s): the handler was still running 150 s
after SIGTERM at commit 98d03e2, past any batch system's SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import threading

from .test_online import world  # noqa: F401

GUARD = 30  # seconds: 8 s at most promised; far past it, the handler hangs on the cancel


def test_a_cancel_globus_never_answers_does_not_hold_the_ending_handler(world):  # noqa: F811
    process = world.handler_on_an_inactive_task()
    dispatch, release = world.emulator._dispatch, threading.Event()

    def unanswered(request):  # the connection taken, no answer: a hung or black-holed service
        if request.path.endswith("/cancel"):
            release.wait(600)
        return dispatch(request)
    world.emulator._dispatch = unanswered
    try:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=GUARD)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise AssertionError(f"the handler still ran {GUARD} s after SIGTERM") from None
    finally:
        release.set()
        world.emulator._dispatch = dispatch
    assert process.returncode == 1
    assert "could not cancel task" in process.stderr.read()

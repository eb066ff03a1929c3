"""Run the job exactly as it would run alone, and learn how it ended.

The job is started before anything else happens, with the signal mask and dispositions it
would have had, and standard input, output and error untouched. Every signal that would end
the launcher by default (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGALRM, SIGXCPU,
the real-time signals, ...; not SIGKILL, nor SIGPIPE and SIGXFSZ, which Python ignores) is
forwarded to the job once instead, so the job never outlives the launcher because of one:

- Outside a terminal's foreground (batch systems, DAGMan) the job gets a process group of its
  own, so a signal to the launcher's group (``kill -TERM -- -PGID``, ``timeout``) reaches the
  job only through the launcher. kickstart does not survive a second SIGTERM while it writes
  its record, so a signal must never arrive twice.
- In a terminal's foreground the job shares the launcher's group, so it can read the terminal;
  signals the terminal sends the group (Ctrl-C) reached the job already and are not forwarded.
- The same signal arriving again within ``REPEAT_WINDOW`` seconds (``timeout`` signals its
  child, then its group) is forwarded once.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
import sys
import threading

TYPE_CHECKING = False  # typing costs milliseconds on the job's start path
if TYPE_CHECKING:
    from typing import NoReturn

# what ends a process by default, that kill(2) can send and a thread can wait for
FORWARDED = {getattr(signal, name) for name in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGXCPU", "SIGVTALRM",
    "SIGPROF", "SIGIO", "SIGPWR", "SIGSYS") if hasattr(signal, name)} | (
    set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else set())
# Python ignores these at start-up, and ignored dispositions survive exec: without a reset a
# job's `yes | head` would spin on EPIPE and a job over `ulimit -f` would not die of SIGXFSZ.
PYTHON_IGNORED = {signal.SIGPIPE, signal.SIGXFSZ}
# the launcher script passes the SigIgn mask it inherited, which Python's start-up overwrites
INHERITED_IGNORED_VARIABLE = "PEGASUS_KICKSTART_GPU_SIGIGN"
SI_KERNEL = 0x80  # si_code of signals the kernel (a terminal) sent to a process group
REPEAT_WINDOW = 0.2  # seconds within which the same signal again is the same event
NOT_FOUND, NOT_EXECUTABLE = 127, 126  # the shell's exit codes


def inherited_ignored() -> set[int]:
    """The signals the sidecar's parent left ignored (nohup's SIGHUP, a shell's SIGPIPE), which
    the job inherits as it would without the sidecar. Python's own ignores are not among them:
    the launcher script passes the mask it had before Python started (and the variable is
    removed here, so the job never sees it)."""
    ignored = {s for s in FORWARDED if signal.getsignal(s) is signal.SIG_IGN}
    try:
        mask = int(os.environ.pop(INHERITED_IGNORED_VARIABLE, "") or "0", 16)
    except ValueError:
        mask = 0
    return ignored | {s for s in PYTHON_IGNORED if mask >> (s - 1) & 1}


class Job:
    """A spawned job. Create it before any slow work: it starts at once."""

    def __init__(self, argv: list[str]) -> None:
        self._ignored = inherited_ignored()
        # take the signals in a thread, with their sender, instead of at random points
        self._original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, FORWARDED)
        self.own_group = not _in_terminal_foreground()
        self.pid = self._spawn(argv)
        if self.own_group:
            with contextlib.suppress(OSError):  # also done in the child: whichever runs first
                os.setpgid(self.pid, self.pid)
        self._done = threading.Event()
        threading.Thread(target=self._forward, name="signal-forwarder", daemon=True).start()

    def _spawn(self, argv: list[str]) -> int:
        """fork and exec, not posix_spawn: glibc's posix_spawn (2.36) starts the child with
        its internal signals 32 and 33 ignored, which a job would inherit. Raises the exec's
        OSError in this process, as posix_spawn does."""
        report, reported = os.pipe2(os.O_CLOEXEC)  # closed by a successful exec
        pid = os.fork()
        if pid == 0:  # the child: no threads, nothing but resets and the exec
            try:
                if self.own_group:
                    os.setpgid(0, 0)
                for signum in PYTHON_IGNORED | FORWARDED:  # as the sidecar's parent left them
                    signal.signal(signum, signal.SIG_IGN if signum in self._ignored
                                  else signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, self._original_mask)
                os.execvp(argv[0], argv)
            except OSError as error:
                os.write(reported, str(error.errno).encode())
            finally:
                os._exit(NOT_EXECUTABLE)
        os.close(reported)
        failure = os.read(report, 16)  # empty once the exec succeeded
        os.close(report)
        if failure:
            os.waitpid(pid, 0)
            code = int(failure)
            raise OSError(code, os.strerror(code))
        return pid

    def _forward(self) -> None:
        import time

        last: dict[int, float] = {}
        while True:
            info = signal.sigwaitinfo(FORWARDED)  # sleeps: no CPU until a signal comes
            if self._done.is_set():
                return
            if info.si_code == SI_KERNEL and not self.own_group:
                continue  # a terminal signalled the group the job shares
            now = time.monotonic()
            if now - last.get(info.si_signo, -REPEAT_WINDOW) < REPEAT_WINDOW:
                continue
            last[info.si_signo] = now
            os.kill(self.pid, info.si_signo)

    def wait(self) -> int:
        """The raw wait status, once the job has ended."""
        # stop forwarding before reaping: until then the pid cannot belong to anyone else
        os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        self._done.set()
        _, status = os.waitpid(self.pid, 0)
        return status


def _in_terminal_foreground() -> bool:
    """Whether this process's group owns the terminal on standard input (an interactive run)."""
    try:
        return os.isatty(0) and os.tcgetpgrp(0) == os.getpgrp()
    except OSError:
        return False


def spawn_failure(argv: list[str], error: OSError) -> NoReturn:
    """Report a job that could not start the way a shell would, and exit like one."""
    print(f"pegasus-kickstart-gpu: {argv[0]}: {error.strerror}", file=sys.stderr, flush=True)
    os._exit(NOT_FOUND if isinstance(error, FileNotFoundError) else NOT_EXECUTABLE)


def end_like(status: int) -> NoReturn:
    """Exit with the job's status; for a job killed by a signal, die of the same signal."""
    for stream in (sys.stdout, sys.stderr):
        # a reader gone (the job died of SIGPIPE too) must not change the status; a stream
        # the caller closed (`>&-`) is None
        with contextlib.suppress(OSError, AttributeError):
            stream.flush()
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the job's core is what counts
            signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL's disposition cannot be set, nor need be
            pass
        try:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
            os.kill(os.getpid(), signum)
        except (OSError, ValueError):
            pass
        os._exit(128 + signum)  # only if the signal could not end us
    os._exit(os.waitstatus_to_exitcode(status) if hasattr(os, "waitstatus_to_exitcode")
             else os.WEXITSTATUS(status))

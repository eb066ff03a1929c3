"""Run the job exactly as it would run alone, and learn how it ended.

The job is started before anything else happens, with the signal mask and dispositions it
would have had, standard input, output and error untouched, and in the launcher's own process
group, as kickstart would be without it: a signal to the group (``kill -TERM -- -PGID``,
``timeout``, a terminal's Ctrl-C or Ctrl-Z, a batch system suspending the job) reaches every
process of the job directly, background children included, and job control stops and
continues the launcher with the job.

Every signal that would end the launcher by default (SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1,
SIGUSR2, SIGALRM, SIGXCPU, the real-time signals, ...; not SIGKILL, nor SIGPIPE and SIGXFSZ,
which Python ignores) is kept pending instead, taken by the launcher as it waits for the job,
and forwarded to the job if the job did not get it already: a signal sent to the launcher alone
(HTCondor's soft kill) is forwarded once, a signal sent to the whole group is not, since
kickstart does not survive a second SIGTERM while it writes its record. Which one it was is
told by a canary: a child in the group that keeps those signals blocked, so that a signal to
the group is left pending in it (see :class:`Canary`).
"""

from __future__ import annotations

import _signal as signal  # signal.py builds its enums on import: 7 ms before every job starts
import os
import sys

# typing costs milliseconds on the job's start path, and so would contextlib (5 ms): nothing
# else the sidecar runs imports it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

# what ends a process by default, that kill(2) can send and sigwaitinfo(2) can take
FORWARDED = {getattr(signal, name) for name in (
    "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
    "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGXCPU", "SIGVTALRM",
    "SIGPROF", "SIGIO", "SIGPWR", "SIGSYS") if hasattr(signal, name)} | (
    set(range(signal.SIGRTMIN, signal.SIGRTMAX + 1)) if hasattr(signal, "SIGRTMIN") else set())
# Python ignores these at start-up, and ignored dispositions survive exec: without a reset a
# job's `yes | head` would spin on EPIPE and a job over `ulimit -f` would not die of SIGXFSZ.
PYTHON_IGNORED = {signal.SIGPIPE, signal.SIGXFSZ}
# taken while the job runs: these two too, when another process sends them (the launcher's own
# write to a closed pipe or past `ulimit -f` raises them at itself, and gets its error); and
# SIGCHLD, the job's end
WAITED_FOR = FORWARDED | PYTHON_IGNORED | {signal.SIGCHLD}
# the launcher script passes the SigIgn mask it inherited, which Python's start-up overwrites
INHERITED_IGNORED_VARIABLE = "PEGASUS_KICKSTART_GPU_SIGIGN"
GROUP_WAIT = 0.1  # seconds a signal to the group may take to reach the canary after us
NOT_FOUND, NOT_EXECUTABLE = 127, 126  # the shell's exit codes
NOT_A_PROGRAM = 8  # ENOEXEC: neither a binary nor a #! script


def inherited_ignored() -> set[int]:
    """The signals the sidecar's parent left ignored (nohup's SIGHUP, a shell's SIGPIPE), which
    the job inherits as it would without the sidecar. Python's own ignores are not among them:
    the launcher script passes the mask it had before Python started (and the variable is
    removed here, so the job never sees it)."""
    ignored = {s for s in FORWARDED if signal.getsignal(s) == signal.SIG_IGN}
    try:
        mask = int(os.environ.pop(INHERITED_IGNORED_VARIABLE, "") or "0", 16)
    except ValueError:
        mask = 0
    return ignored | {s for s in PYTHON_IGNORED if mask >> (s - 1) & 1}


class Canary:
    """A child of the launcher, in its process group, with every forwarded signal blocked.

    A signal sent to the group is left pending in it; one sent to the launcher alone is not.
    It holds no file but a pipe from the launcher, on which it is told to take a pending signal
    (so the next one shows again), and whose end (the launcher gone) ends it.
    """

    def __init__(self) -> None:
        self.pid = 0  # none: every signal is forwarded
        try:
            listen, self._tell = os.pipe2(os.O_CLOEXEC)
            pid = os.fork()
        except OSError:
            return
        if pid == 0:  # the canary: no threads, nothing but the pipe
            try:
                os.closerange(0, listen)
                os.closerange(listen + 1, os.sysconf("SC_OPEN_MAX"))
                while True:
                    told = os.read(listen, 1)
                    if not told:
                        break
                    signal.sigtimedwait({told[0]}, 0)
            finally:
                os._exit(0)
        os.close(listen)
        self.pid = pid

    def reached_the_group(self, signum: int) -> bool:
        """Whether ``signum`` was sent to the whole group (then it is taken from the canary),
        waiting up to GROUP_WAIT for it: the kernel signals a group one process at a time."""
        import time

        deadline = time.monotonic() + GROUP_WAIT
        while self.pid:
            try:
                with open(f"/proc/{self.pid}/status") as status:
                    pending = int(status.read().split("ShdPnd:", 1)[1].split(None, 1)[0], 16)
            except (OSError, IndexError, ValueError):  # gone (a kill of every process)
                return False
            if pending >> (signum - 1) & 1:
                try:  # noqa: SIM105 - contextlib costs the job's start 5 ms
                    os.write(self._tell, bytes([signum]))
                except OSError:  # it was ended meanwhile
                    pass
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return False

    def close(self) -> None:
        """End it now, stopped or not, so that it never outlives the job. (The pipe stays
        open: a forward may still be looking; it goes with the launcher.)"""
        pid, self.pid = self.pid, 0
        if pid:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


class Job:
    """A spawned job. Create it before any slow work: it starts at once."""

    def __init__(self, argv: list[str]) -> None:
        self._ignored = inherited_ignored()
        # the signals wait, pending, until wait() takes them with their sender (instead of
        # interrupting at random points), and SIGCHLD with them, which says when to look
        self._original_mask = signal.pthread_sigmask(signal.SIG_BLOCK, WAITED_FOR)
        self.pid, exec_report = self._fork(argv)
        # after the job: a signal to the group that the canary holds reached the job too
        # (and while the job's exec goes on)
        self._canary = Canary()
        failure = os.read(exec_report, 16)  # empty once the exec succeeded
        os.close(exec_report)
        if failure:
            self._canary.close()
            os.waitpid(self.pid, 0)
            code = int(failure)
            raise OSError(code, os.strerror(code))

    def _fork(self, argv: list[str]) -> tuple[int, int]:
        """fork and exec, not posix_spawn: glibc's posix_spawn (2.36) starts the child with
        its internal signals 32 and 33 ignored, which a job would inherit. Returns the child's
        pid and a pipe that gives the exec's errno, or nothing once the exec succeeded (then
        raised in this process, as posix_spawn does)."""
        report, reported = os.pipe2(os.O_CLOEXEC)  # closed by a successful exec
        pid = os.fork()
        if pid == 0:  # the child: no threads, nothing but resets and the exec
            try:
                for signum in PYTHON_IGNORED | FORWARDED:  # as the sidecar's parent left them
                    signal.signal(signum, signal.SIG_IGN if signum in self._ignored
                                  else signal.SIG_DFL)
                signal.pthread_sigmask(signal.SIG_SETMASK, self._original_mask)
                _exec_from_path(argv)
            except OSError as error:
                os.write(reported, str(error.errno).encode())
            finally:
                os._exit(NOT_EXECUTABLE)
        os.close(reported)
        return pid, report

    def wait(self) -> int:
        """Forward signals until the job ends, then its raw wait status. (A signal that comes
        later, while the record is written, is the job's no more: it stays pending.)"""
        # the job is reaped only after the last forward: until then its pid is no one else's
        while not os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
            taken = signal.sigwaitinfo(WAITED_FOR)  # sleeps: no CPU until a signal comes
            if taken.si_signo != signal.SIGCHLD:
                self._forward(taken.si_signo, taken.si_pid)
        _, status = os.waitpid(self.pid, 0)
        self._canary.close()
        return status

    def _forward(self, signum: int, sender: int) -> None:
        if signum in PYTHON_IGNORED and (sender == os.getpid() or signum in self._ignored):
            return  # our own write's, or one the job ignores as we were told to
        if self._canary.reached_the_group(signum):
            # the job has it; so may we, a second time, if the group's came while we looked:
            # that one is the same signal
            signal.sigtimedwait({signum}, 0)
            return
        os.kill(self.pid, signum)


def _exec_from_path(argv: list[str]) -> None:
    """glibc's execvp: the command looked up on $PATH (the first error other than a missing
    file is the one reported), and a file that is no program run by /bin/sh, as a shell runs
    it; without os.execvp's `import warnings` (1.5 ms between the fork and the job's exec)."""
    if not argv[0]:
        raise FileNotFoundError(2, "No such file or directory")  # as execvp says
    if "/" in argv[0]:
        _exec(argv[0], argv)
    first_error: OSError | None = None
    last_error: OSError = FileNotFoundError(2, "No such file or directory")
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        try:
            _exec(os.path.join(directory, argv[0]), argv)
        except (FileNotFoundError, NotADirectoryError) as error:
            last_error = error
        except OSError as error:  # the first other (EACCES, say) is the one reported
            first_error = first_error or error
    raise first_error or last_error


def _exec(path: str, argv: list[str]) -> None:
    try:
        os.execv(path, argv)
    except OSError as error:
        if error.errno != NOT_A_PROGRAM:
            raise
        os.execv("/bin/sh", ["/bin/sh", path, *argv[1:]])  # a script without #!


def spawn_failure(argv: list[str], error: OSError) -> NoReturn:
    """Report a job that could not start the way a shell would, and exit like one."""
    print(f"pegasus-kickstart-gpu: {argv[0]}: {error.strerror}", file=sys.stderr, flush=True)
    os._exit(NOT_FOUND if isinstance(error, FileNotFoundError) else NOT_EXECUTABLE)


def end_like(status: int) -> NoReturn:
    """Exit with the job's status; for a job killed by a signal, die of the same signal."""
    for stream in (sys.stdout, sys.stderr):
        # a reader gone (the job died of SIGPIPE too) must not change the status; a stream
        # the caller closed (`>&-`) is None
        try:  # noqa: SIM105 - contextlib costs the job's start 5 ms
            stream.flush()
        except (OSError, AttributeError):
            pass
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        try:
            import resource

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

"""``pegasus-kickstart-gpu``: wrap a job, sample its GPUs, add GPU events to its record."""

from __future__ import annotations

import os
import sys

from .launcher import Job, end_like, spawn_failure

TYPE_CHECKING = False  # the job waits for everything imported before it starts
if TYPE_CHECKING:
    import argparse
    from typing import Any, Callable

STOP_TIMEOUT = 10.0  # seconds the last sample may take before the record is written anyway


def _parser() -> argparse.ArgumentParser:
    import argparse  # only for --help and mistakes: see _usual_arguments

    parser = argparse.ArgumentParser(
        prog="pegasus-kickstart-gpu",
        usage="%(prog)s [options] [--] COMMAND [ARGS...]\n       %(prog)s report PATH...",
        description="Runs COMMAND (typically pegasus-kickstart and the job, as Pegasus' "
        "gridstart.launcher), samples the job's NVIDIA GPUs through NVML and, when the job "
        "ends, appends the GPU inventory, samples and maxima to the job's record as a "
        "pegasus-multipart block. The job runs exactly as without it: same exit status, "
        "signals, input and output.",
        epilog="Options stop at the first word that is not one, so everything after it is "
        "the command. GPUs: CUDA_VISIBLE_DEVICES, else NVIDIA_VISIBLE_DEVICES, else all. "
        "'report PATH...' summarises the GPU use of a run's records (see report --help).",
    )
    parser.add_argument("--interval", type=float, default=10.0, metavar="SECONDS",
                        help="seconds between samples, 1 to 3600 (default: 10)")
    parser.add_argument("--backend", default="auto", metavar="auto|nvml|none|replay:TRACE",
                        help="where samples come from: NVML (auto, nvml), nowhere (none), or "
                        "a recorded trace, by path or by the name of an installed one "
                        "(replay:a2x-a100-training) (default: auto)")
    parser.add_argument("--max-samples", type=int, default=500, metavar="N",
                        help="samples kept in the record, spread over the run; maxima cover "
                        "all (default: 500)")
    parser.add_argument("--events-file", metavar="PATH",
                        help="also append every event to PATH as JSON lines")
    parser.add_argument("--output", metavar="PATH",
                        help="append the block to PATH (default: a file in "
                        "$PEGASUS_MULTIPART_DIR when set, else standard output)")
    parser.add_argument("--no-pcie", dest="pcie", action="store_false",
                        help="skip PCIe throughput (about 20 ms per GPU per sample)")
    parser.add_argument("--no-process-utilization", dest="process_utilization",
                        action="store_false", help="skip per-process utilisation samples")
    parser.add_argument("--no-graphics-processes", dest="graphics_processes",
                        action="store_false", help="skip graphics processes")
    parser.add_argument("--mon-url", default=os.environ.get("KICKSTART_MON_URL"),
                        metavar="URL", help="also send each event to file://, http(s):// or "
                        "rabbitmq(s):// (default: $KICKSTART_MON_URL)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    return parser


# the options of _parser, for _usual_arguments: option -> (attribute, type)
_VALUED = {"--interval": ("interval", float), "--backend": ("backend", str),
           "--max-samples": ("max_samples", int), "--events-file": ("events_file", str),
           "--output": ("output", str), "--mon-url": ("mon_url", str)}
_SWITCHES = {"--no-pcie": "pcie", "--no-process-utilization": "process_utilization",
             "--no-graphics-processes": "graphics_processes"}


class Arguments:
    """What the command line says, as attributes (argparse.Namespace without argparse)."""


def _usual_arguments(argv: list[str]) -> Any:
    """The command line as _parser reads it, read without argparse (its import and parser
    cost every job about 10 ms); None for anything else (--help, an abbreviation, a value
    that is no number), which _parser then reads and explains."""
    values: dict[str, Any] = {
        "interval": 10.0, "backend": "auto", "max_samples": 500, "events_file": None,
        "output": None, "pcie": True, "process_utilization": True, "graphics_processes": True,
        "mon_url": os.environ.get("KICKSTART_MON_URL")}
    index = 0
    while index < len(argv) and argv[index].startswith("-") and argv[index] != "--":
        word = argv[index]
        if word in _SWITCHES:
            values[_SWITCHES[word]] = False
            index += 1
            continue
        option, inline, value = word.partition("=")
        if option not in _VALUED:
            return None
        if not inline:
            if index + 1 == len(argv) or argv[index + 1].startswith("-"):
                return None
            value = argv[index + 1]
        index += 1 if inline else 2
        attribute, kind = _VALUED[option]
        try:
            values[attribute] = kind(value)
        except ValueError:
            return None
    arguments = Arguments()
    vars(arguments).update(values, command=argv[index:])
    return arguments


def _fail(message: str) -> None:
    _parser().error(message)  # exits 2 with the usage, as argparse's own errors


def _library(args: argparse.Namespace, job_pid: int) -> tuple[Callable[[], Any] | None, str]:
    """What the monitor thread opens as NVML, and why there is nothing when there is not."""
    if args.backend == "none":
        return None, "GPU monitoring is off (--backend none)"
    if args.trace is not None:

        def replay() -> Any:
            from .replay import TraceLibrary
            from .trace_file import parse_trace

            return TraceLibrary(parse_trace(*args.trace), job_pid)
        return replay, ""

    def nvml() -> Any:
        from .nvml import AbsentNvml, driver_library_loads, import_pynvml

        if args.backend == "auto" and not driver_library_loads():
            return AbsentNvml()  # what pynvml would conclude, without its 20 ms import
        return import_pynvml()  # 20 to 50 ms: in the monitor thread, never before the job
    return nvml, ""


def _check(args: argparse.Namespace) -> None:
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        _fail("no command to run: pegasus-kickstart-gpu [options] [--] COMMAND [ARGS...]")
    if not 1 <= args.interval <= 3600:
        _fail(f"--interval {args.interval:g}: use 1 to 3600 seconds")
    if args.max_samples < 2:
        _fail(f"--max-samples {args.max_samples}: keep at least 2")
    backend = args.backend
    if backend not in ("auto", "nvml", "none") and not backend.startswith("replay:"):
        _fail(f"--backend {backend}: use auto, nvml, none or replay:TRACE")
    args.trace = None
    if backend.startswith("replay:"):
        from .trace_file import TraceError, read_trace, trace_path

        path = trace_path(backend[len("replay:"):])
        try:  # a file that is no trace is a bad option, said before the job starts; what a
            # trace plays, a damaged one too, is the record's, as NVML's failures are (its
            # parsing would cost every replayed job 3 ms before it starts)
            args.trace = (read_trace(path), path)
        except TraceError as error:
            _fail(f"--backend {backend}: {error}")
    if args.mon_url:
        from .sinks import make_sink

        try:
            args.sink = make_sink(args.mon_url)
        except ValueError as error:
            _fail(f"--mon-url {error}")
    else:
        args.sink = None


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["report"]:  # a job named "report" runs as: pegasus-kickstart-gpu -- report
        from .report import main as report

        sys.exit(report(argv[1:]))
    args = _usual_arguments(argv) or _parser().parse_args(argv)
    _check(args)
    try:
        job = Job(args.command)  # first: nothing below may delay the job's start
    except OSError as error:
        spawn_failure(args.command, error)
    monitor = _start_monitor(job.pid, args)
    status = job.wait()
    if monitor is not None:
        _write_record(monitor, args)
    end_like(status)


def _start_monitor(job_pid: int, args: argparse.Namespace) -> Any:
    try:
        from .monitor import Monitor, Options

        library, reason = _library(args, job_pid)
        options = Options(interval=args.interval, max_samples=args.max_samples,
                          pcie=args.pcie, process_utilization=args.process_utilization,
                          graphics_processes=args.graphics_processes,
                          events_file=args.events_file, sink=args.sink)
        monitor = Monitor(library, options, os.environ, job_pid, reason, command=args.command)
        monitor.start()
        return monitor
    except Exception as error:  # no monitoring, and the job goes on untouched
        print(f"pegasus-kickstart-gpu: monitoring failed to start: {error}", file=sys.stderr)
        return None


def _write_record(monitor: Any, args: argparse.Namespace) -> None:
    try:
        if not monitor.stop(STOP_TIMEOUT):
            monitor.problems.append(f"the last sample did not finish within {STOP_TIMEOUT:g} s")
        from .block_writer import write_record

        write_record(monitor.finish(), args.output, os.environ)
    except Exception as error:  # the job's exit status is what matters; say what was lost
        print(f"pegasus-kickstart-gpu: could not write the GPU record: {error}", file=sys.stderr)


def _interrupted() -> None:
    """Ctrl-C before the job started (after, SIGINT is blocked and forwarded): end by SIGINT,
    as the job would have, not with Python's KeyboardInterrupt traceback and exit 1."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    os.kill(os.getpid(), signal.SIGINT)


def run() -> None:
    """The launcher script's entry point: main, and Ctrl-C before the job started."""
    try:
        main()
    except KeyboardInterrupt:
        _interrupted()


if __name__ == "__main__":
    run()

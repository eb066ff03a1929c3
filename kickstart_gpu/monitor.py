"""The sampler: a background thread that never lets an exception out.

Takes the first sample at start, one every interval, and the last when told the job ended.
The record keeps at most ``max_samples`` samples spread over the whole run; maxima, averages
and energy cover every sample taken.
"""

from __future__ import annotations

import _thread  # threading imports functools and collections: 3 ms of every job
import os
import time

from .nvml import THROTTLE_MASK, Device, Nvml, Unavailable
from .selection import select

TYPE_CHECKING = False  # this module is imported on every run: keep its imports cheap
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping, Sequence

CONTEXT_VARIABLES = {"PEGASUS_WF_UUID": "wf_uuid", "PEGASUS_WF_LABEL": "wf_label",
                     "PEGASUS_DAG_JOB_ID": "dag_job_id", "CONDOR_JOBID": "condor_job_id",
                     "PEGASUS_XFORMATION": "xformation", "PEGASUS_TASK_ID": "task_id",
                     "PEGASUS_SITE": "site"}


def _kickstart_task(command: list[str]) -> dict[str, str]:
    """The task a wrapped ``pegasus-kickstart`` runs, from its command line (``-n``
    transformation, ``-N`` derivation): names the block's task where a clustered job's blocks
    are printed apart from their records (PegasusLite prints $PEGASUS_MULTIPART_DIR at the
    end)."""
    if not command or not command[0].endswith("pegasus-kickstart"):
        return {}
    found = {}
    for flag, name in (("-n", "transformation"), ("-N", "derivation")):
        if flag in command[:-1]:
            found[name] = command[command.index(flag) + 1]
    return found


def next_beat(beat: int, elapsed: float, interval: float) -> int:
    """The beat to sample at next, after sampling at ``beat`` (beat n is n * ``interval``
    seconds after the first sample, ``elapsed`` seconds ago): the one after it, or, where a
    slow sample let beats go by, the first still ahead. Missed beats are skipped, not made
    up for with samples back to back."""
    return max(beat, int(elapsed / interval)) + 1


class Flag:
    """A threading.Event, set once, on a bare lock."""

    def __init__(self) -> None:
        self._unset = _thread.allocate_lock()
        self._unset.acquire()

    def set(self) -> None:
        if self._unset.locked():
            self._unset.release()

    def wait(self, timeout: float) -> bool:
        """Whether the flag is set, waiting up to ``timeout`` seconds for it."""
        if self._unset.acquire(timeout=timeout):
            self._unset.release()
            return True
        return False


class Options:
    """How to sample.

    :param interval: seconds between samples
    :param max_samples: samples kept in the record (all are counted in the maxima)
    :param pcie, process_utilization, graphics_processes: read these costlier fields
    :param events_file: path that also receives every event as a JSON line
    :param sink: callable that also receives every event (``--mon-url``)
    """

    def __init__(self, interval: float = 10.0, max_samples: int = 500, pcie: bool = True,
                 process_utilization: bool = True, graphics_processes: bool = True,
                 events_file: str | None = None,
                 sink: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.interval = interval
        self.max_samples = max_samples
        self.pcie = pcie
        self.process_utilization = process_utilization
        self.graphics_processes = graphics_processes
        self.events_file = events_file
        self.sink = sink


class SpreadSamples:
    """At most ``capacity`` items, spread evenly over all appended: when full, every other item
    is dropped and only every other later one is kept. The newest item is always kept."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity - 1)  # one place stays free for the newest item
        self.items: list[Any] = []
        self.latest: Any = None
        self._stride = 1
        self._seen = 0

    def append(self, item: Any) -> None:
        if self._seen % self._stride == 0:
            self.items.append(item)
            if len(self.items) > self.capacity:
                self.items = self.items[::2]
                self._stride *= 2
            self.latest = None
        else:
            self.latest = item
        self._seen += 1

    def __iter__(self) -> Any:
        yield from self.items
        if self.latest is not None:
            yield self.latest


class Totals:
    """Running maxima, means and energy for one device, over every sample."""

    def __init__(self) -> None:
        self.maxima: dict[str, float] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.samples = 0
        self.first_energy: float | None = None
        self.last_energy: float | None = None
        self.integrated_mj = 0.0
        self._last_power: tuple[float, float] | None = None  # (monotonic s, mW)
        self.throttled = 0
        self.idle_s = self.span_s = 0.0  # between samples, idle when the earlier one read 0 %
        self._last_utilization: tuple[float, float] | None = None  # (monotonic s, %)

    def add(self, sample: dict[str, Any], when: float) -> None:
        self.samples += 1
        for key in ("temp", "power_usage", "bar1_mem_usage", "mem_usage", "gpu_utilization",
                    "mem_utilization"):
            value = sample.get(key)
            if isinstance(value, (int, float)):
                self.maxima[key] = max(self.maxima.get(key, value), value)
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1
        energy = sample.get("energy_consumption")
        if isinstance(energy, (int, float)):
            self.first_energy = energy if self.first_energy is None else self.first_energy
            self.last_energy = energy
        if (sample.get("throttle_reasons") or 0) & THROTTLE_MASK:
            self.throttled += 1
        utilization = sample.get("gpu_utilization")
        if isinstance(utilization, (int, float)):
            if self._last_utilization is not None:
                then, before = self._last_utilization
                self.span_s += when - then
                self.idle_s += (when - then) if before == 0 else 0.0
            self._last_utilization = (when, utilization)
        power = sample.get("power_usage")
        if isinstance(power, (int, float)):
            if self._last_power is not None:  # trapezoids: mW x s = mJ
                then, before = self._last_power
                self.integrated_mj += (before + power) / 2 * (when - then)
            self._last_power = (when, power)

    def mean(self, key: str) -> float | None:
        return round(self.sums[key] / self.counts[key], 2) if self.counts.get(key) else None

    def summary(self) -> dict[str, Any]:
        counter_ok = (self.first_energy is not None and self.last_energy is not None
                      and self.last_energy >= self.first_energy and self.samples > 1)
        return {
            "max_temp": self.maxima.get("temp"),
            "max_power_usage": self.maxima.get("power_usage"),
            "max_bar1_mem_usage": self.maxima.get("bar1_mem_usage"),
            "max_mem_usage": self.maxima.get("mem_usage"),
            "max_gpu_usage": self.maxima.get("gpu_utilization"),
            "max_mem_utilization": self.maxima.get("mem_utilization"),
            "avg_gpu_utilization": self.mean("gpu_utilization"),
            "avg_mem_utilization": self.mean("mem_utilization"),
            "avg_power_usage": self.mean("power_usage"),
            "energy_used": round(self.last_energy - self.first_energy) if counter_ok
            else round(self.integrated_mj) if self._last_power else None,
            "energy_source": "energy counter" if counter_ok
            else "integrated power" if self._last_power else None,
            "samples": self.samples,
            # over every sample, since the record keeps only a few of them
            "throttled_samples": self.throttled,
            "idle_fraction": round(self.idle_s / self.span_s, 4) if self.span_s > 0 else None,
        }


def _parent(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


class JobProcesses:
    """Whether a PID belongs to the job's process tree, by walking its parents in /proc.

    Answers are cached per PID: a GPU process is looked up once, not at every sample.
    """

    def __init__(self, root: int) -> None:
        self.root = root
        self._known: dict[int, bool] = {root: True}

    def __contains__(self, pid: int) -> bool:
        path = []
        while pid not in self._known:
            path.append(pid)
            parent = _parent(pid)
            if parent is None or parent <= 1:
                pid, answer = -1, False
                break
            pid = parent
        else:
            answer = self._known[pid]
        for visited in path:
            self._known[visited] = answer
        return answer


class Monitor:
    """Samples the job's GPUs in a daemon thread.

    :param open_library: returns the NVML library (``pynvml`` or a replay); called in the
        thread, so importing pynvml never delays the job. None means monitoring is off.
    """

    def __init__(self, open_library: Callable[[], Any] | None, options: Options,
                 environ: Mapping[str, str], job_pid: int, disabled_reason: str = "",
                 command: Sequence[str] = ()) -> None:
        """:param command: what the job runs; the task of a wrapped kickstart is named in the
            record"""
        self.options = options
        self.command = list(command)
        self._open_library = open_library
        self._disabled_reason = disabled_reason
        self._environ = dict(environ)
        self.job_pid = job_pid
        self._job_processes = JobProcesses(job_pid)
        self.environment: dict[str, Any] = {}
        self.samples = SpreadSamples(options.max_samples)
        self.totals: dict[int, Totals] = {}
        self.devices: list[Device] = []
        self.problems: list[str] = []
        self._job_started = time.monotonic()  # made right after the job was spawned
        self._job_ended: float | None = None
        self._stop = Flag()
        self._stopped = Flag()
        self._nvml: Nvml | None = None
        self._events_file: Any = None

    def start(self) -> None:
        _thread.start_new_thread(self._run, ())

    def stop(self, timeout: float) -> bool:
        """Ask for the last sample and wait for it; says whether the thread finished."""
        self._job_ended = time.monotonic()
        self._stop.set()
        return self._stopped.wait(timeout)

    # -- the thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._start_monitoring()
            # finish()'s, while the job runs rather than after it ended (here, not in the main
            # thread: two threads importing and parsing at once take turns of 5 ms)
            from . import block_writer  # noqa: F401
            # a job that ended while NVML started (90 ms on a GPU host) gets its exit sample
            # alone: another sample would read the same idle GPU and hold the job's end
            if self.devices and not self._stop.wait(0):
                interval, started = self.options.interval, time.monotonic()
                self.take_sample()  # beat 0
                beat = next_beat(0, time.monotonic() - started, interval)
                # start to start, so what sampling costs (PCIe: 40 ms per GPU) does not
                # stretch the interval; beats missed while sampling are skipped
                while not self._stop.wait(max(0.0, started + beat * interval
                                              - time.monotonic())):
                    self.take_sample()
                    beat = next_beat(beat, time.monotonic() - started, interval)
            if self.devices:
                self.take_sample(at_exit=True)
        except Exception as error:  # the job must never notice: record it and stop sampling
            self.problems.append(f"monitoring stopped: {error.__class__.__name__}: {error}")
        finally:
            if self._nvml is not None:
                self._nvml.shutdown()
            self._stopped.set()

    def _start_monitoring(self) -> None:
        started = time.time()
        environment: dict[str, Any] = {
            "event": "kickstart.inv.gpu.environment", "timestamp": int(started),
            "cuda_version": None, "nvidia_driver_version": None, "device_count": 0,
            "devices": [], "context": self._context(),
        }
        self.environment = environment
        if self._open_library is None:
            environment["reason"] = self._disabled_reason or "GPU monitoring is off"
            return
        try:
            library = self._open_library()
        except Exception as error:
            environment["reason"] = f"no NVML: {error.__class__.__name__}: {error}"
            return
        nvml = self._nvml = Nvml(library)
        if not nvml.init():
            environment["reason"] = f"NVML did not start: {nvml.init_error}"
            return
        cuda = nvml.query("nvmlSystemGetCudaDriverVersion_v2")
        environment["cuda_version"] = None if isinstance(cuda, Unavailable) else float(
            f"{cuda // 1000}.{cuda % 1000 // 10}")
        driver = nvml.query("nvmlSystemGetDriverVersion")
        environment["nvidia_driver_version"] = None if isinstance(driver, Unavailable) else driver
        selection = select(nvml, self._environ)
        self.problems.extend(selection.problems)
        for index in selection.indices:
            handle = nvml.query("nvmlDeviceGetHandleByIndex", index)
            if isinstance(handle, Unavailable):
                self.problems.append(f"GPU {index}: {handle.reason}")
                continue
            self.devices.append(Device(nvml, index, handle, selection.mig.get(index)))
            self.totals[index] = Totals()
        host_count = nvml.query("nvmlDeviceGetCount")
        environment.update(
            device_count=len(self.devices), devices=[d.inventory() for d in self.devices],
            host_device_count=None if isinstance(host_count, Unavailable) else host_count,
            selected_by=selection.source)
        if not self.devices:  # a count NVML cannot give is no "no GPU": there may be eight
            environment["reason"] = (
                f"NVML cannot count the GPUs: {host_count.reason}"
                if isinstance(host_count, Unavailable) else
                f"no GPU for this job ({selection.source})" if host_count else
                "no NVIDIA GPU on this host")
        self._emit(environment)

    def _context(self) -> dict[str, Any]:
        context = {name: self._environ[var] for var, name in CONTEXT_VARIABLES.items()
                   if self._environ.get(var)}
        context["hostname"] = os.uname().nodename
        context.update(_kickstart_task(self.command))
        return context

    def take_sample(self, at_exit: bool = False) -> list[dict[str, Any]]:
        """One stats event per device, added to the record and the totals.

        :param at_exit: the sample after the job's exit, which leaves out PCIe throughput: its
            20 ms window per counter would measure the GPU after the job, and hold the job's
            end 40 ms per GPU
        """
        options = self.options
        events = []
        for device in self.devices:
            started = time.perf_counter()
            body = device.sample(options.pcie and not at_exit, options.process_utilization,
                                 options.graphics_processes)
            duration = time.perf_counter() - started
            events.append({"event": "kickstart.inv.gpu.stats", "timestamp": int(time.time()),
                           **body, "sampling_duration": round(duration, 4)})
            self.totals[device.index].add(body, time.monotonic())
        self._mark_job_processes(events)
        self.samples.append(events)
        for event in events:
            self._emit(event)
        return events

    def _mark_job_processes(self, events: list[dict[str, Any]]) -> None:
        lists = [event.get(key) for event in events
                 for key in ("compute_procs", "graphics_procs", "proc_samples")]
        if not any(lists):
            return
        for processes in lists:
            for process in processes or []:
                process["in_job"] = process["pid"] in self._job_processes

    def maxima(self) -> dict[str, Any]:
        ended = self._job_ended or time.monotonic()
        return {"event": "kickstart.inv.gpu.stats.max", "timestamp": int(time.time()),
                "duration": round(ended - self._job_started, 3),  # the job's run, seconds
                "devices": [{**device.identity(), **self.totals[device.index].summary()}
                            for device in self.devices]}

    def _emit(self, event: dict[str, Any]) -> None:
        if self.options.events_file is not None:
            try:
                import json

                if self._events_file is None:
                    self._events_file = open(self.options.events_file, "a")  # noqa: SIM115
                self._events_file.write(json.dumps(event) + "\n")
                self._events_file.flush()
            except OSError as error:
                self.problems.append(f"events file {self.options.events_file}: {error}")
                self.options.events_file = None
        if self.options.sink is not None:
            try:
                self.options.sink(event)
            except Exception as error:  # a monitoring endpoint's trouble is not the job's
                self.problems.append(f"monitoring URL: {error.__class__.__name__}: {error}")
                self.options.sink = None

    def finish(self) -> dict[str, Any]:
        """The three events for the record (call after :meth:`stop`)."""
        if self._nvml is not None and self._nvml.missing:
            self.problems.append("this NVML lacks " + ", ".join(sorted(self._nvml.missing)))
        maxima = self.maxima()
        self._emit(maxima)
        if self._events_file is not None:
            self._events_file.close()
        environment = dict(self.environment)
        if self.problems:
            environment["problems"] = list(self.problems)
        from .block_writer import BYTES_IN_ALL, BYTES_PER_GPU, fit_samples, for_the_record
        from .jsonlite import dumps

        maxima = {**maxima, "devices": [for_the_record(d) for d in maxima["devices"]]}
        # the samples get what the other two events leave of the block's budget
        gpus = max(1, len(environment.get("devices") or ()))
        rest = len(dumps([environment, maxima]))
        budget = min(BYTES_PER_GPU * gpus, BYTES_IN_ALL) - rest - 200
        samples = fit_samples([[for_the_record(e) for e in sample] for sample in self.samples],
                              budget)
        return {"kickstart.inv.gpu.environment": environment,
                "kickstart.inv.gpu.stats": [e for sample in samples for e in sample],
                "kickstart.inv.gpu.stats.max": maxima}

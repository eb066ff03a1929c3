"""pegasus-kickstart-gpu report, and the record parser it shares Pegasus' reading with."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from kickstart_gpu.block_writer import MARKER, render_entries
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.record_reader import read_record
from kickstart_gpu.replay import TraceLibrary, load_trace
from kickstart_gpu.report import main

ROOT = Path(__file__).resolve().parent.parent
TRACE = ROOT / "share" / "kickstart-gpu" / "traces" / "a2x-a100-training.json"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "kickstart"
PEGASUS_KEYS = ("transformation", "derivation", "hostname", "resource", "start", "duration",
                "raw", "exitcode")


def gpu_block(visible: str = "0,1", seconds: range = range(0, 60, 2)) -> str:
    """A real block from the replayed trace, sampled at the given trace seconds."""
    now = [0.0]
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE), clock=lambda: now[0]),
                      Options(), {"CUDA_VISIBLE_DEVICES": visible}, os.getpid())
    monitor._start_monitoring()
    for second in seconds:
        now[0] = float(second)
        monitor.take_sample()
    monitor.stop(0)
    events = monitor.finish()
    stats = events["kickstart.inv.gpu.stats"]
    for index, event in enumerate(stats):  # spread the timestamps as the samples were
        event["timestamp"] = 1_700_000_000 + seconds[index // len(visible.split(","))]
    events["kickstart.inv.gpu.stats.max"]["duration"] = float(seconds[-1] - seconds[0])
    return f"{MARKER}\n{render_entries(events)}"


@pytest.mark.parametrize("fixture", sorted(p.name for p in FIXTURES.glob("*.out")))
@pytest.mark.parametrize("with_block", [False, True])
def test_our_parser_agrees_with_pegasus(tmp_path, fixture, with_block):
    from Pegasus.tools.kickstart_parser import YAMLParser

    path = tmp_path / fixture
    shutil.copy(FIXTURES / fixture, path)
    if with_block:
        with path.open("a") as handle:
            handle.write(gpu_block(seconds=range(0, 6, 2)))
    theirs = YAMLParser(str(path)).parse_stampede()
    ours = read_record(path)
    assert [{k: e.get(k) for k in PEGASUS_KEYS} for e in theirs if e.get("invocation")] == \
        [{k: e.get(k) for k in PEGASUS_KEYS} for e in ours.invocations]
    assert [{k: v for k, v in e.items() if k != "multipart"} for e in theirs
            if e.get("multipart")] == ours.multipart


@pytest.fixture
def submit_dir(tmp_path) -> Path:
    """train: both GPUs, a failed first attempt; eval: GPU 1 only (idle); one damaged, one
    without GPU events."""
    jobs = tmp_path / "submit" / "00" / "00"
    jobs.mkdir(parents=True)
    (jobs / "train_ID01.out.000").write_text((FIXTURES / "failure_exit2_ls.out").read_text())
    (jobs / "train_ID01.out.001").write_text((FIXTURES / "success_ls.out").read_text()
                                             + gpu_block("0,1"))
    (jobs / "eval_ID02.out.000").write_text((FIXTURES / "success_ls.out").read_text()
                                            + gpu_block("1", range(0, 20, 2)))
    (jobs / "ls_ID03.out.000").write_text((FIXTURES / "success_ls.out").read_text())
    broken = (FIXTURES / "success_ls.out").read_text() + gpu_block("0")
    (jobs / "broken_ID04.out.000").write_text(broken[: len(broken) - 200])  # cut mid-JSON
    (jobs / "train_ID01.post.out").write_text("post script output\n")  # none of these is a record
    (tmp_path / "submit" / "w-0.dag.dagman.out").write_text("DAGMan's log\n")
    (tmp_path / "submit" / "w-0.dag.lib.out").write_text("")
    return tmp_path / "submit"


def report_json(capsys, *argv: str) -> dict:
    assert main([*argv, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_report_per_job_and_totals(capsys, submit_dir):
    result = report_json(capsys, str(submit_dir))
    jobs = {job["job"]: job for job in result["jobs"]}
    assert set(jobs) == {"train_ID01", "eval_ID02"}
    train, evaluation = jobs["train_ID01"], jobs["eval_ID02"]
    assert (train["attempts"], train["failed_attempts"], train["gpu_count"]) == (2, 1, 2)
    assert train["wall_s"] == 58.0
    assert train["gpu_hours"] == pytest.approx(58 * 2 / 3600)  # full precision, not rounded
    assert train["energy_j"] > 0 and train["peak_gpu_util"] > 50
    assert train["peak_mem_bytes"] > 30 * 2 ** 30
    assert train["throttled_samples"] == 0  # the trace caps power from t=60 s on
    assert evaluation["avg_gpu_util"] == 0 and evaluation["idle_gpu_hours"] == \
        evaluation["gpu_hours"]  # GPU 1 idles until its first burst at t=20 s
    totals = result["totals"]
    assert totals["records"] == 5 and totals["failed_attempts"] == 1
    assert totals["records_without_gpu_events"] == 3  # failed try, plain ls, broken block
    assert totals["damaged_records"] == 1 and "not valid JSON" in totals["damaged"][0]
    assert totals["top_by_gpu_hours"] == ["train_ID01", "eval_ID02"]
    assert totals["energy_kwh"] == pytest.approx(totals["energy_j"] / 3.6e6, rel=1e-3)


def test_throttling_is_counted(capsys, tmp_path):
    record = tmp_path / "hot_ID01.out"
    record.write_text((FIXTURES / "success_ls.out").read_text()
                      + gpu_block("0", range(58, 78, 2)))
    job = report_json(capsys, str(record))["jobs"][0]
    assert job["throttled_samples"] == 8  # samples at 60, 62, ..., 74 s, in the capped stretch


def test_table_and_csv(capsys, submit_dir):
    assert main([str(submit_dir)]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split()[:3] == ["job", "tries", "gpus"]
    assert "1 failed" in table and "Top by GPU-hours: train_ID01, eval_ID02" in table
    assert main([str(submit_dir), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [row["job"] for row in rows] == ["eval_ID02", "train_ID01"]


def test_events_files_are_reports_too(capsys, tmp_path):
    block = gpu_block("0")
    events = tmp_path / "job.events.jsonl"
    entries = json.loads(json.dumps(__import__("yaml").safe_load(block.split(MARKER + "\n")[1])))
    lines = [entries[0]["kickstart.inv.gpu.environment"], *entries[1]["kickstart.inv.gpu.stats"],
             entries[2]["kickstart.inv.gpu.stats.max"]]
    events.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert report_json(capsys, str(events))["jobs"][0]["gpu_count"] == 1


def test_plot_writes_a_summary_and_time_lines(capsys, submit_dir, tmp_path):
    """Records keep the first and last sample; the time lines come from an --events-file."""
    pytest.importorskip("matplotlib")
    series = tmp_path / "train.events.jsonl"
    now = [0.0]
    monitor = Monitor(lambda: TraceLibrary(load_trace(TRACE), clock=lambda: now[0]),
                      Options(events_file=str(series)), {}, os.getpid())
    monitor._start_monitoring()
    for second in range(0, 60, 2):
        now[0] = float(second)
        monitor.take_sample()
    monitor.stop(0)
    monitor.finish()
    figure = tmp_path / "gpu.png"
    assert main([str(submit_dir), "--plot", str(figure)]) == 0
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (tmp_path / "gpu-timelines.png").exists()  # two samples draw no line
    assert main([str(submit_dir), str(series), "--plot", str(figure)]) == 0
    assert (tmp_path / "gpu-timelines.png").stat().st_size > 10_000


def test_plot_without_matplotlib_says_how_to_install(capsys, submit_dir, tmp_path,
                                                      monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "matplotlib", None)  # import fails
    assert main([str(submit_dir), "--plot", str(tmp_path / "x.png")]) == 2
    assert "pip install 'pegasus-globus[plot]'" in capsys.readouterr().err


def test_a_missing_path_is_a_clear_error(capsys, tmp_path):
    assert main([str(tmp_path / "nowhere")]) == 2
    assert "no such file or directory" in capsys.readouterr().err


@pytest.mark.parametrize("path", ["/etc/passwd", "/dev/null"])
def test_a_file_that_is_no_record_is_an_error(capsys, path):
    assert main([path]) == 2
    assert f"{path} is not a kickstart record" in capsys.readouterr().err


def test_a_plot_into_a_missing_directory_is_a_one_line_error(capsys, tmp_path):
    assert main([str(FIXTURES), "--plot", str(tmp_path / "missing" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and len(err.strip().splitlines()) == 1

"""pegasus-kickstart-gpu report, and the record parser it shares Pegasus' reading with."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from kickstart_gpu.block_writer import MARKER, render_entries
from kickstart_gpu.monitor import Monitor, Options
from kickstart_gpu.record_reader import read_record
from kickstart_gpu.replay import TraceLibrary
from kickstart_gpu.report import main
from kickstart_gpu.trace_file import load_trace

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
    assert [(row["level"], row["job"] or row["transformation"] or row["site"])
            for row in rows] == [("job", "eval_ID02"), ("job", "train_ID01"),
                                 ("transformation", "ls"), ("site", "condorpool")]


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


@pytest.mark.parametrize("path, why", [("/etc/passwd", "is not a kickstart record"),
                                       ("/dev/null", "is not a regular file")])
def test_a_file_that_is_no_record_is_an_error(capsys, path, why):
    assert main([path]) == 2
    assert f"{path} {why}" in capsys.readouterr().err


def test_a_plot_into_a_missing_directory_is_a_one_line_error(capsys, tmp_path):
    assert main([str(FIXTURES), "--plot", str(tmp_path / "missing" / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no such directory" in err and len(err.strip().splitlines()) == 1


CLUSTERED = FIXTURES / "clustered_gpu_tasks.out"


def blocks_of(text: str) -> list[str]:
    """Each GPU block's text in a record (marker and its three lines), in order."""
    lines = text.splitlines(keepends=True)
    return ["".join(lines[i:i + 4]) for i, line in enumerate(lines) if line == MARKER + "\n"]


def durations(text: str) -> list[float]:
    """The sidecars' spans (seconds), block by block."""
    return [json.loads(line.split(": ", 1)[1])["duration"] for line in text.splitlines()
            if line.startswith("- kickstart.inv.gpu.stats.max:")]


def clustered_rows(capsys, tmp_path, text: str) -> tuple[dict, dict]:
    record = tmp_path / "merge_task_PID1_ID1.out.000"
    record.write_text(text)
    result = report_json(capsys, str(record))
    return {row["task"]: row for row in result["jobs"]}, result["totals"]


def test_each_clustered_task_is_a_row_and_no_second_is_counted_twice(capsys, tmp_path):
    """The launcher around pegasus-cluster and around each task: 5 blocks in one record."""
    text = CLUSTERED.read_text()
    *tasks, outer = durations(text)
    rows, totals = clustered_rows(capsys, tmp_path, text)
    assert sorted(rows) == ["(outside tasks)", "task0", "task1", "task2", "task3"]
    assert [rows[f"task{i}"]["wall_s"] for i in range(4)] == tasks
    assert {row["job"] for row in rows.values()} == {"merge_task_PID1_ID1"}
    assert {row["transformation"] for row in rows.values()} == {"task"}
    assert rows["(outside tasks)"]["wall_s"] == pytest.approx(outer - sum(tasks))
    # every second the GPUs were held counted once: the tasks' and the rest add up to the
    # outer block, 2 GPUs for its whole span
    assert totals["gpu_hours"] == pytest.approx(outer * 2 / 3600)
    assert sum(row["energy_j"] for row in rows.values()) == pytest.approx(totals["energy_j"])


def test_a_cluster_whose_tasks_alone_were_wrapped_reports_every_task(capsys, tmp_path):
    text = CLUSTERED.read_text()
    outer = blocks_of(text)[-1]
    rows, totals = clustered_rows(capsys, tmp_path, text.replace(outer, ""))
    assert sorted(rows) == ["task0", "task1", "task2", "task3"]
    assert totals["gpu_hours"] == pytest.approx(sum(durations(text)[:4]) * 2 / 3600)


def test_a_cluster_wrapped_as_a_whole_is_one_row(capsys, tmp_path):
    text = CLUSTERED.read_text()
    for block in blocks_of(text)[:4]:
        text = text.replace(block, "")
    rows, totals = clustered_rows(capsys, tmp_path, text)
    assert list(rows) == [""] and rows[""]["wall_s"] == durations(text)[0]
    assert totals["tasks"] == 4 and totals["task_tries"] == 4


def test_a_sidecar_inside_and_one_around_kickstart_count_once(capsys, tmp_path):
    inner, outer = gpu_block("0", range(0, 10, 2)), gpu_block("0", range(0, 20, 2))
    record = tmp_path / "train_ID01.out.000"
    record.write_text((FIXTURES / "success_ls.out").read_text() + inner + outer)
    (row,) = report_json(capsys, str(record))["jobs"]
    assert (row["task"], row["wall_s"], row["attempts"]) == ("", 18.0, 1)


def test_usage_rolls_up_per_transformation_and_per_site(capsys, submit_dir):
    elsewhere = (FIXTURES / "success_ls.out").read_text().replace(
        'resource: "condorpool"', 'resource: "gpu-cluster"').replace(
        'transformation: "ls"', 'transformation: "train"')
    (submit_dir / "00" / "00" / "train_ID05.out.000").write_text(elsewhere + gpu_block("0"))
    result = report_json(capsys, str(submit_dir))
    by_site = {group["site"]: group for group in result["by_site"]}
    by_transformation = {group["transformation"]: group for group in result["by_transformation"]}
    jobs = {row["job"]: row for row in result["jobs"]}
    assert set(by_site) == {"condorpool", "gpu-cluster"}
    assert by_site["gpu-cluster"]["gpu_hours"] == jobs["train_ID05"]["gpu_hours"]
    assert by_transformation["ls"]["jobs"] == 2 and by_transformation["train"]["jobs"] == 1
    assert by_transformation["ls"]["gpu_hours"] == pytest.approx(
        jobs["train_ID01"]["gpu_hours"] + jobs["eval_ID02"]["gpu_hours"])
    assert by_transformation["ls"]["energy_j"] == pytest.approx(
        jobs["train_ID01"]["energy_j"] + jobs["eval_ID02"]["energy_j"])
    assert by_transformation["ls"]["peak_mem_bytes"] == jobs["train_ID01"]["peak_mem_bytes"]
    assert {"idle_gpu_hours", "throttled_gpu_hours"} <= set(by_site["condorpool"])
    assert main([str(submit_dir)]) == 0
    table = capsys.readouterr().out
    assert "\ntransformation  jobs" in table and "\nsite" in table and "gpu-cluster" in table


def test_pegasus_data_jobs_are_listed_apart(capsys, submit_dir):
    stage_in = (FIXTURES / "success_stage_in.out").read_text()
    assert 'transformation: "pegasus::transfer"' in stage_in
    long_block = gpu_block("0", range(0, 600, 2))  # idles longest of all
    (submit_dir / "00" / "00" / "stage_in_local_local_1_0.out.000").write_text(
        stage_in + long_block)
    result = report_json(capsys, str(submit_dir))
    rows = {row["job"]: row for row in result["jobs"]}
    assert rows["stage_in_local_local_1_0"]["data_job"] is True
    assert rows["train_ID01"]["data_job"] is False
    assert "stage_in_local_local_1_0" not in result["totals"]["top_by_idle_gpu_hours"]
    assert result["totals"]["data_jobs_gpu_hours"] == rows["stage_in_local_local_1_0"][
        "gpu_hours"]
    assert main([str(submit_dir)]) == 0
    compute, data = capsys.readouterr().out.split("Pegasus' data jobs")
    assert "stage_in_local_local_1_0" in data and "stage_in_local" not in compute.split(
        "\n\n")[0]


def test_a_run_read_in_chunks_by_several_processes_reports_the_same(capsys, submit_dir,
                                                                    monkeypatch):
    shutil.copy(CLUSTERED, submit_dir / "00" / "00" / "merge_task_PID1_ID1.out.000")
    whole = report_json(capsys, str(submit_dir))
    monkeypatch.setattr("kickstart_gpu.report.CHUNK", 1)  # a process per record, merged
    assert report_json(capsys, str(submit_dir)) == whole


def test_clustered_blocks_printed_apart_from_their_records_go_to_the_task_they_name(
        capsys, tmp_path):
    """PegasusLite prints $PEGASUS_MULTIPART_DIR after the job, so every task's block comes
    after the cluster's summary: the sidecar names the kickstart -N it wrapped, and the block
    goes to that task."""
    text = CLUSTERED.read_text()
    blocks = blocks_of(text)
    for block in blocks:
        text = text.replace(block, "")
    named = [block.replace('"context":{', f'"context":{{"derivation":"task{i}",', 1)
             for i, block in enumerate(blocks[:4])]
    rows, _ = clustered_rows(capsys, tmp_path, text + "".join(named) + blocks[4])
    assert sorted(rows) == ["(outside tasks)", "task0", "task1", "task2", "task3"]
    assert [rows[f"task{i}"]["wall_s"] for i in range(4)] == durations(CLUSTERED.read_text())[:4]


HOSTILE_LINES = {
    "environment a list": '- kickstart.inv.gpu.environment: []',
    "maxima a list": '- kickstart.inv.gpu.stats.max: []',
    "a device a number": '- kickstart.inv.gpu.stats.max: {"duration":1,"devices":[1]}',
    "errors a string": '- kickstart.inv.gpu.stats: [{"timestamp":1,"errors":"x"}]',
    "memory a string": '- kickstart.inv.gpu.stats.max: {"duration":1,"devices":[{"max_mem_usage'
                       '":"big"}]}',
    "an infinite duration": '- kickstart.inv.gpu.stats.max: {"duration":1e400,"devices":[]}',
    "JSON nested deeper than Python goes": '- kickstart.inv.gpu.stats: ' + "[" * 100_000,
}


@pytest.mark.parametrize("line", HOSTILE_LINES.values(), ids=HOSTILE_LINES.keys())
def test_a_damaged_block_is_counted_never_fatal(capsys, tmp_path, line):
    good = gpu_block("0").splitlines()
    key = line.split(":", 1)[0]
    damaged = "\n".join(line if entry.startswith(key + ":") else entry for entry in good) + "\n"
    jobs = tmp_path / "submit"
    jobs.mkdir()
    (jobs / "bad_ID1.out.000").write_text((FIXTURES / "success_ls.out").read_text() + damaged)
    (jobs / "good_ID2.out.000").write_text((FIXTURES / "success_ls.out").read_text()
                                           + gpu_block("0"))
    assert main([str(jobs), "--format", "json"]) == 0
    result = json.loads(capsys.readouterr().out)  # valid JSON: no Infinity
    assert [row["job"] for row in result["jobs"]] == ["good_ID2"]
    assert result["totals"]["damaged_records"] == 1


def test_a_multipart_block_that_is_no_list_of_entries_is_passed_over(capsys, tmp_path):
    record = tmp_path / "odd_ID1.out"
    record.write_text((FIXTURES / "success_ls.out").read_text() + MARKER + "\n-1\n")
    assert report_json(capsys, str(record))["totals"]["records"] == 1


def test_only_regular_files_are_read_and_each_once(capsys, submit_dir):
    os.mkfifo(submit_dir / "00" / "00" / "stuck_ID9.out.000")  # reading it would block
    again = submit_dir / "00" / "00" / "train_ID01.out.001"
    totals = report_json(capsys, str(submit_dir), str(again))["totals"]
    assert totals["records"] == 5  # the FIFO skipped, train's second try read once
    assert main([str(submit_dir / "00" / "00" / "stuck_ID9.out.000")]) == 2
    assert "is not a regular file" in capsys.readouterr().err


def test_an_empty_record_named_on_the_command_line_is_a_try_without_gpu_events(capsys, tmp_path):
    """A job killed before kickstart wrote anything leaves an empty .out: not an error."""
    empty = tmp_path / "killed_ID1.out.000"
    empty.write_text("")
    totals = report_json(capsys, str(empty), str(CLUSTERED))["totals"]
    assert (totals["records"], totals["records_without_gpu_events"]) == (2, 1)


def test_jobs_of_the_same_name_in_two_sub_workflows_are_two_jobs(capsys, tmp_path):
    for sub in ("sub_a.000", "sub_b.000"):
        directory = tmp_path / "submit" / sub / "00" / "00"
        directory.mkdir(parents=True)
        (directory / "ls_ID0000001.out.000").write_text(
            (FIXTURES / "success_ls.out").read_text() + gpu_block("0"))
    result = report_json(capsys, str(tmp_path / "submit"))
    assert (result["totals"]["jobs"], result["totals"]["retries"]) == (2, 0)
    assert [row["attempts"] for row in result["jobs"]] == [1, 1]


def test_quoted_names_read_as_pegasus_reads_them(tmp_path):
    from Pegasus.tools.kickstart_parser import YAMLParser

    record = tmp_path / "odd_ID1.out"
    record.write_text((FIXTURES / "success_ls.out").read_text().replace(
        'transformation: "ls"', 'transformation: "caf\\"\\u00e9\\tx"'))
    (theirs,) = [e for e in YAMLParser(str(record)).parse_stampede() if e.get("invocation")]
    assert read_record(record).invocations[0]["transformation"] == theirs["transformation"] \
        == 'caf"\u00e9\tx'


def events_of(run_seconds: range) -> str:
    """An --events-file run's lines, as the sidecar appends them."""
    entries = yaml.safe_load(gpu_block("0", run_seconds).split(MARKER + "\n")[1])
    lines = [entries[0]["kickstart.inv.gpu.environment"], *entries[1]["kickstart.inv.gpu.stats"],
             entries[2]["kickstart.inv.gpu.stats.max"]]
    return "".join(json.dumps(line) + "\n" for line in lines)


def test_runs_appended_to_one_events_file_are_tries_each(capsys, tmp_path):
    events = tmp_path / "train.events.jsonl"
    events.write_text(events_of(range(0, 10, 2)) + events_of(range(0, 20, 2)))
    (row,) = report_json(capsys, str(events))["jobs"]
    assert (row["attempts"], row["wall_s"]) == (2, 8.0 + 18.0)


def test_an_events_file_given_with_its_record_adds_no_usage(capsys, tmp_path):
    """The README tells to give --events-file outputs with the records for time lines: the
    run is in the record already, and is counted once."""
    record = tmp_path / "train_ID1.out"
    record.write_text((FIXTURES / "success_ls.out").read_text() + gpu_block("0"))
    events = tmp_path / "train.events.jsonl"
    events.write_text(events_of(range(0, 60, 2)))
    alone = report_json(capsys, str(record))
    assert report_json(capsys, str(record), str(events)) == alone

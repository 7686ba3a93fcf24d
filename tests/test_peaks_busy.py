"""Machine peaks (bench.peaks): a peak measured while other work ran is never cached as quiet,
even when the machine was quiet just before the measurement started."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edgeship.bench import peaks

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")


def test_a_peak_measured_while_a_cpu_hog_ran_is_not_cached_as_quiet(tmp_path, monkeypatch):
    # a cache held "quiet": true, 178 GFLOP/s where a quiet run gives ~248, load average 4.79 on 2 CPUs:
    # quiet just before the run, other work during it
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(peaks, "machine_busy", lambda window=0.5: 0.0)  # quiet before the measurement
    hogs: list[subprocess.Popen] = []

    def progress(msg: str) -> None:
        if msg.startswith("measuring"):  # the measurement starts: so does other work, on every CPU
            hogs.extend(subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(peaks.os.cpu_count() or 1))

    try:
        got = peaks.machine_peaks(1, [0], 60, progress, seconds_per_size=0.05)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    assert hogs and "error" not in got, got
    assert got["quiet"] is False and got["busy_before"] == 0.0 and got["busy_during"] > peaks.QUIET_BUSY
    assert "while it ran" in got["note"] and "not cached" in got["note"]
    assert not (tmp_path / peaks.PEAKS_FILE).exists()


def test_the_measuring_process_is_not_counted_as_other_work(monkeypatch):
    """Over one second of a 2-CPU machine (200 ticks at 100 Hz), the measuring child spins one CPU
    (1 s of its CPU time): that is not other work; a second busy CPU is, half the machine."""
    import resource
    import types

    ticks = iter([(1000, 300), (1200, 400), (1000, 300), (1200, 500)])
    usage = iter([0.0, 1.0, 0.0, 1.0])
    clock = iter([10.0, 11.0, 10.0, 11.0])
    monkeypatch.setattr(peaks, "_cpu_ticks", lambda cpus: next(ticks))
    monkeypatch.setattr(resource, "getrusage", lambda who: types.SimpleNamespace(ru_utime=next(usage), ru_stime=0.0))
    monkeypatch.setattr("time.monotonic", lambda: next(clock))
    monkeypatch.setattr(peaks.os, "sysconf", lambda name: 100)
    monkeypatch.setattr(peaks.os, "cpu_count", lambda: 2)
    assert peaks.others_during(threads=1).share() == 0.0
    assert peaks.others_during(threads=1).share() == pytest.approx(0.5)


def test_an_entry_cached_quiet_by_an_older_edgeship_under_load_is_measured_again(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path))
    key = peaks._key(1)
    cpus = peaks.os.cpu_count() or 1
    entry = {"fp32_gops": 178.0, "int8_gops": 300.0, "threads": 1, "quiet": True, "busy_before": 0.02,
             "load_average": [2.4 * cpus, 2.0, 1.5]}  # judged before the run only; the run itself was busy
    (tmp_path / peaks.PEAKS_FILE).write_text(json.dumps({"schema": peaks.SCHEMA, "entries": {key: entry}}))
    assert not peaks._quiet_enough(entry)
    assert peaks._quiet_enough({**entry, "load_average": [0.1, 0.1, 0.1]})  # an older quiet entry stays
    assert peaks._quiet_enough({**entry, "busy_during": 0.05}) and not peaks._quiet_enough({**entry, "quiet": False,
                                                                                          "busy_during": 0.5})

"""An internal error in the isolated child is one typed line on the terminal; its traceback goes to a
log file named in the hint, and to the terminal only with EDGESHIP_DEBUG=1 (edgeship --debug)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from edgeship.isolate import IsolatedInternalError, run_isolated

EDGESHIP = str(Path(sys.executable).parent / "edgeship")
GARBAGE_TFLITE = b"\x00\x00\x00\x00TFL3"  # 8 bytes: the TFLite identifier, no flatbuffer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGESHIP_DEBUG", raising=False)
    return tmp_path / "cache"


def test_an_internal_error_logs_its_traceback_instead_of_printing_it(cache, capfd):
    with pytest.raises(IsolatedInternalError, match="internal error") as ei:
        run_isolated("edgeship.testing:echo_missing_function_does_not_exist", {})
    err = capfd.readouterr().err
    assert "Traceback" not in err
    [log] = (cache / "logs").glob("child-*.log")
    assert str(log) in ei.value.hint and ei.value.details["log"] == str(log)
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "AttributeError" in text


def test_a_log_folder_can_be_given(cache, tmp_path, capfd):
    with pytest.raises(IsolatedInternalError) as ei:
        run_isolated("edgeship.testing:echo_missing_function_does_not_exist", {}, log_dir=tmp_path / "out")
    [log] = (tmp_path / "out").glob("child-*.log")
    assert str(log) in ei.value.hint and not (cache / "logs").exists()


def test_edgeship_debug_prints_the_child_traceback(cache, monkeypatch, capfd):
    monkeypatch.setenv("EDGESHIP_DEBUG", "1")
    with pytest.raises(IsolatedInternalError):
        run_isolated("edgeship.testing:echo_missing_function_does_not_exist", {})
    assert "Traceback (most recent call last)" in capfd.readouterr().err


@pytest.mark.parametrize("command", ["analyze", "benchmark"])
def test_a_garbage_tflite_file_is_one_typed_line(tmp_path, cli_env, command):
    pytest.importorskip("ai_edge_litert")
    path = tmp_path / "x.tflite"
    path.write_bytes(GARBAGE_TFLITE)
    env = dict(cli_env, EDGESHIP_CACHE_DIR=str(tmp_path / "cache"))
    env.pop("EDGESHIP_DEBUG", None)
    args = [EDGESHIP, command, str(path), *(["--runs", "5", "--rounds", "1", "--warmup", "1"] if command == "benchmark" else [])]
    r = subprocess.run(args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300, check=False)
    assert r.returncode == 3, r.stderr  # FormatError: the file, not a bug
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert "x.tflite" in line and "flatbuffer" in line.lower()
    r = subprocess.run(args, capture_output=True, text=True, env=dict(env, EDGESHIP_DEBUG="1"), cwd=tmp_path,
                       timeout=300, check=False)
    assert r.returncode == 3 and "Traceback (most recent call last)" in r.stderr


def _children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_the_isolated_child_dies_with_the_process_that_started_it():
    """A parent killed outright (the OOM killer, a sweep's Ray worker killed) takes its isolated
    child along: the child runs in a session of its own and would otherwise work on for no one."""
    import os
    import signal
    import time

    parent = subprocess.Popen([sys.executable, "-c", "from edgeship.isolate import run_isolated; "
                               "run_isolated('edgeship.testing:hang', {'seconds': 60})"])
    try:
        deadline = time.monotonic() + 30
        while not (kids := _children(parent.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert kids, "the isolated child did not start"
        time.sleep(1.0)  # past its start-up: it is in hang()
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while Path(f"/proc/{kids[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        alive = Path(f"/proc/{kids[0]}/stat").exists() and ") Z " not in Path(f"/proc/{kids[0]}/stat").read_text()
        assert not alive, "the isolated child outlived its parent"
    finally:
        if parent.poll() is None:
            parent.kill()

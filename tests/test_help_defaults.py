"""--help says each default once: in the [default: ...] typer adds, not again in the help text."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

COMMANDS = [["compare-cloud"], ["serve"], ["serve-updates"], ["publish"], ["agent"], ["agent", "init"], ["agent", "status"],
            ["repo", "init"], ["repo", "refresh"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_a_default_is_shown_once(command, cli_env):
    run = subprocess.run([sys.executable, "-m", "edgeship", *command, "--help"], env={**cli_env, "COLUMNS": "400"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    for line in run.stdout.splitlines():  # at 400 columns each option's help is one line
        said = re.search(r"\(default:? ([^)]+)\)", line)
        shown = re.search(r"\[default: ([^\]]+)\]", line)
        assert not (said and shown), line.strip()
    if command == ["compare-cloud"]:
        assert run.stdout.count("edgeship-out") == 1, run.stdout

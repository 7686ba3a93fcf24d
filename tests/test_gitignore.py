"""The folders README.md's examples make in the project folder are not committed by accident:
keys/ (edgeship keygen) and repo/ (a TUF repository's role keys) hold private keys."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# the folder options of the commands in the README, and the sweep file's out:
_MADE = re.compile(r"(?:--out|--dest|--state|repo init|--repo|serve-updates|^out:)[ \t]+([A-Za-z0-9_.-]+)/?", re.M)


def _readme_folders() -> set[str]:
    text = (ROOT / "README.md").read_text()
    return {m.group(1).split("/")[0] for m in _MADE.finditer(text)} - {"FILE", "OUT", "OUTDIR", "DIR", "REPO", "REPO_DIR"}


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and the repository")
def test_every_example_folder_of_the_readme_is_ignored():
    folders = _readme_folders() | {"keys", "repo", "m", "out3", "sweep-out", "edgeship-out", "edgeship-out2", "dev1", "dev2"}
    assert {"keys", "repo", "m", "out3", "sweep-out", "out1", "dev1"} <= _readme_folders(), _readme_folders()
    paths = [f"{d}/x" for d in sorted(folders)] + ["repo/keys/root.pem", "keys/signing-key.pem"]
    run = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=ROOT, capture_output=True, text=True)
    ignored = set(run.stdout.split())
    missing = [p.split("/")[0] + "/" for p in paths if p not in ignored]
    assert not missing, f"README.md makes {missing} in the project folder: add them to .gitignore"
    # the source tree itself is not: tests and the package keep their files
    run = subprocess.run(["git", "check-ignore", "--no-index", "src/edgeship/updates/repo.py", "tests/test_updates.py"],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.stdout == ""

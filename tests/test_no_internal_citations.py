"""Users do not have the team's shared/FACTS.md: nothing edgeship installs or prints cites it (the
benchmark's profile notes and module docs once did)."""

from __future__ import annotations

from pathlib import Path

import edgeship

PKG = Path(edgeship.__file__).parent


def test_nothing_installed_cites_the_teams_facts_file():
    cited = [str(p.relative_to(PKG)) for p in sorted(PKG.rglob("*"))
             if p.suffix in {".py", ".json", ".txt", ".md"} and "FACTS.md" in p.read_text(errors="replace")]
    assert cited == []

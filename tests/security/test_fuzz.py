"""Every reader of outside files holds the property under a seeded structure-aware fuzz run
(:mod:`fuzz` beside this file): each of >= 200 cases per reader returns a value (the one the reader
documents) or raises an EdgeshipError of exit code 2-6; never another exception, never past its
wall-clock limit, never a file written outside its scratch folder or an input changed (a planted
pickle that runs writes one). ``benchmarks/fuzz_readers.py`` runs the same cases by the thousand.

``EDGESHIP_FUZZ_SEED`` changes the seed (a failing case is reproducible from the seed, the target
and its index: ``fuzz.make_case``); the reproducers of failures are kept under the test's tmp_path.
"""

from __future__ import annotations

import os

import pytest

from . import fuzz

SEED = int(os.environ.get("EDGESHIP_FUZZ_SEED", "0"))
CASES = {**dict.fromkeys(fuzz.TARGETS, 200), "arrays": 300, "artifact": 300, "images": 300, "onnx": 500, "tar": 300,
         "text": 300}


@pytest.mark.parametrize("name", list(fuzz.TARGETS))
def test_reader_gives_a_value_or_a_typed_error(name: str, tmp_path) -> None:
    target = fuzz.TARGETS[name]
    rep = fuzz.run_target(target, CASES[name], SEED, tmp_path / "scratch", repro=tmp_path / "repro")
    print(f"{name}: {rep.cases} cases in {rep.seconds:.1f} s (seeds {rep.seed_seconds:.1f} s): "
          + ", ".join(f"{k} {rep.counts[k]}" for k in fuzz.OUTCOMES))
    failures = "\n".join(f"{n} x {kind}\n  {rep.firsts[kind].line()}" for kind, n in rep.kinds.most_common())
    assert rep.cases >= 200
    assert rep.counts["crash"] == 0 and rep.counts["hang"] == 0 and rep.counts["escape"] == 0, \
        f"{name} (seed {SEED}): {rep.failed} of {rep.cases} cases failed; reproducers in {tmp_path / 'repro'}\n{failures}"
    assert rep.counts["wrong"] == 0, f"{name} returned values it does not document:\n{failures}"
    # the fuzzer itself: it reaches both ends (values and refusals), and its mutations apply
    assert rep.counts["ok"] > 0 and rep.counts["typed"] > 0, dict(rep.counts)
    assert sum(rep.mutator_errors.values()) < rep.cases // 10, rep.mutator_errors.most_common(5)


def test_the_checker_tells_each_outcome(tmp_path) -> None:
    """The property checker itself, on stand-in readers: a value, a typed error, another exception,
    a wrong exit code, a hang (the alarm interrupts it), a write beside the case folder, an input changed."""
    import time
    from pathlib import Path

    from edgeship.errors import EdgeshipError, FormatError

    def escape(folder: Path, p: Path) -> None:
        Path("../written-by-the-reader").write_text("x")  # the cwd is the case folder

    behaviours = {
        "ok": lambda folder, p: p.read_bytes(),
        "typed": lambda folder, p: (_ for _ in ()).throw(FormatError("bad")),
        "crash": lambda folder, p: {}["missing"],
        "exit code 1": lambda folder, p: (_ for _ in ()).throw(EdgeshipError("base class")),
        "hang": lambda folder, p: time.sleep(10),
        "escape": escape,
        "input changed": lambda folder, p: p.write_bytes(b"changed"),
    }
    expected = {"ok": "ok", "typed": "typed", "crash": "crash", "exit code 1": "crash", "hang": "hang",
                "escape": "escape", "input changed": "escape"}
    for name, behave in behaviours.items():
        target = fuzz.Target(name, "a stand-in", lambda folder: [], lambda folder, p, case, b=behave: [
            ("stand-in", lambda: b(folder, p), None)])
        case = fuzz.Case(name, 0, "seed", ["none"], {"input.bin": b"data"}, "input.bin")
        out = fuzz.run_case(target, case, tmp_path / name.replace(" ", "-"), limit=0.5)
        assert out.outcome == expected[name], (name, out.outcome, out.error)
        assert out.seconds < 2
    assert not (tmp_path / "escape" / "written-by-the-reader").exists()  # removed before the next case

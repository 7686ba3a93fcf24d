"""Fuzz every reader of outside files (edgeship.readers and what reads through it), in process.

    .venv/bin/python benchmarks/fuzz_readers.py [--cases 10000] [--seed 0] [--only TARGET] [--json]
                                                [--limit 5] [--repro DIR] [--deploy]
    .venv/bin/python benchmarks/fuzz_readers.py --replay DIR/TARGET-NNNNN-OUTCOME

Runs ``--cases`` cases per target (tests/security/fuzz.py: seeds made in code, mutated by structure
and by bytes), each under a wall-clock limit, in a scratch folder, with the address space capped
a few GB above what the process maps. Prints per target the cases, seconds and how they ended: ok
(a value), typed (an EdgeshipError of exit code 2-6), wrong (a value that is not what the reader
documents), crash (any other exception), hang (past the limit), escape (a file written outside the
case folder, or the input changed). Every failure is written to the reproducer folder it names
(the case's files and case.json: mutations, error, traceback); ``--replay`` runs one with nothing
caught. ``--deploy`` adds the manifest and artifact.json of a real deploy of the tiny classifier
to the JSON seeds (8 s more).

Done when: no crash, hang, wrong or escape in 10,000 cases per target. Exit code 1 otherwise.
A script, not a test (tests/security/test_fuzz.py runs 200+ cases per target).

Measured here (2 cores, 2026-12-07):
- --cases 1000 on the readers as first written: 287 failures of 20 kinds, none in artifact or zip:
  pickles run by torch.export.load past the .pt2 vetting (39 escapes: a member twice; an opaque
  object marked raw), BadZipFile/OSError/RecursionError out of _check_pt2_pickles, TokenError out of
  read_arrays, KeyError/IndexError/AttributeError out of read_structured (YAML tags), config keys
  that are not strings, NotImplementedError from Pillow plugins, MAX_PIXELS doubled, ONNX tensors of
  > 64 dims, a quadratic scan of unterminated strings and slow YAML (hangs). All fixed.
- --cases 10000 after those fixes: 100,000 cases in 635 s, 9 crashes (lone surrogates in records,
  file names past the system's length, an empty --preprocess size, a zip member without a name).
  Fixed.
- --cases 10000 again: 100,000 cases in 571 s (json 23, manifest 29, artifact 25, config 129,
  profile 56, arrays 17, images 56, zip 145, pt2 67, onnx 24 s): crash 0, hang 0, escape 0, wrong 0.
- two targets added: tar (_archive.safe_extract, the release-bundle extraction) and text (read_text,
  read_labels). --cases 2000 --only text: 44 s, no failures; --cases 10000 --only text: 367 s
  (5,050 ok, 4,950 typed), no failures. --cases 2000 --only tar: 134 s (70 of them in 14 hangs),
  311 failures of 24 kinds on Python 3.11.7: escapes through the PATH_MAX link chain of
  CVE-2025-4517 (the data filter's realpath gives up; files written one or two levels above the
  extraction folder, a file outside overwritten through a hard link even when the extraction is
  refused after), tarfile's quadratic pax regexes (CVE-2024-6232: hangs), and exceptions that are
  not EdgeshipError: OSErrors of the member layout re-raised as if of the disk (EISDIR, ENOTDIR,
  EEXIST, ENOENT, ENAMETOOLONG, EINVAL), KeyError (a hard link to a missing name), LZMAError,
  EOFError/ValueError/OverflowError/MemoryError out of tarfile.is_tarfile, RecursionError (a name
  of 5,000 folders); and names returned that are not paths in dest ('a.txt/').
- target wav added (readers.audio: read_wav, decode_wav, read_audio_folder resampling to 16 kHz,
  write_wav read back; seeds from wave, write_wav and by hand; RIFF chunk, fmt field and sample
  mutations), 2026-12-08: --cases 10000 with seeds 0, 1 and 2: 15, 21 and 18 s, 41-42% ok, the
  rest typed, no failures; the reader as first committed had none to fix. The target finds a
  check taken out (1,000 cases each): the data size not cut to the file (101 crashes, ValueError
  from np.frombuffer), the 0-channel check (11 ZeroDivisionError), the bits check (22), the NaN
  check and the clip of floats (wrong values). Not a fuzz finding but a measurement: resampling
  a declared 767,999 Hz to 16 kHz designed a 15-million-tap filter (3 s, under the 5 s limit,
  so no hang was counted); resample now refuses factors past 2**16 (0.15 s at most).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "security"))
os.environ.setdefault("EDGESHIP_NO_CACHE", "1")
os.environ.setdefault("EDGESHIP_JOBS", "1")

import fuzz  # noqa: E402

COLS = ("ok", "typed", "wrong", "crash", "hang", "escape")


def row(name: str, cases: object, secs: object, counts: dict) -> str:
    return f"{name:<9}{cases:>7}{secs:>9}" + "".join(f"{counts.get(c, 0):>9}" for c in COLS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=10_000, help="cases per target")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", action="append", choices=sorted(fuzz.TARGETS), help="this target only (repeatable)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--limit", type=float, default=fuzz.DEFAULT_LIMIT, help="wall-clock seconds per case")
    ap.add_argument("--memory-gb", type=float, default=fuzz.DEFAULT_MEMORY_GB,
                    help="address space a case may add (0: no cap)")
    ap.add_argument("--repro", type=Path, default=None, help="folder for reproducers (default: a new temp folder)")
    ap.add_argument("--deploy", action="store_true", help="add a real deploy's manifest and artifact.json to the seeds")
    ap.add_argument("--replay", type=Path, default=None, help="run one reproducer folder, nothing caught")
    args = ap.parse_args()

    if args.replay:
        info = json.loads((args.replay / "case.json").read_text())
        os.environ["EDGESHIP_ISOLATED"] = "1"
        os.chdir(args.replay)
        print(fuzz.replay(fuzz.TARGETS[info["target"]], args.replay.resolve()))
        return 0

    repro = args.repro or Path(tempfile.mkdtemp(prefix="edgeship-fuzz-repro-"))
    names = args.only or list(fuzz.TARGETS)
    reports = []
    with tempfile.TemporaryDirectory(prefix="edgeship-fuzz-") as tmp:
        if args.deploy:
            import edgeship

            out = Path(tmp) / "deploy"
            edgeship.deploy("tinymodels:tiny_classifier", out=out, isolate=False, package=False)
            fuzz.REAL_RECORDS = out
        if not args.json:
            print(f"{args.cases:,} cases per target, seed {args.seed}, {args.limit:g} s per case; reproducers: {repro}")
            print(row("target", "cases", "seconds", {c: c for c in COLS}))
        for name in names:
            t0 = time.time()

            def progress(i: int, rep: fuzz.Report, t0: float = t0, name: str = name) -> None:
                if i % 500 == 0 and not args.json:
                    print(f"  {name} {i}/{args.cases} cases, {time.time() - t0:.0f} s, "
                          f"{rep.failed} failed", file=sys.stderr, flush=True)

            rep = fuzz.run_target(fuzz.TARGETS[name], args.cases, args.seed, Path(tmp) / name, repro=repro,
                                  limit=args.limit, memory_gb=args.memory_gb or None, progress=progress)
            reports.append(rep)
            if not args.json:
                print(row(name, rep.cases, f"{rep.seconds:.1f}", dict(rep.counts)), flush=True)
    failed = sum(r.failed for r in reports)
    if args.json:
        print(json.dumps({"seed": args.seed, "cases": args.cases, "reproducers": str(repro),
                          "targets": [r.as_dict() for r in reports]}, indent=2))
    else:
        total = {c: sum(r.counts[c] for r in reports) for c in COLS}
        print(row("total", sum(r.cases for r in reports), f"{sum(r.seconds for r in reports):.1f}", total))
        for r in reports:
            for kind, n in r.kinds.most_common():
                print(f"{n} x {kind}\n  {r.firsts[kind].line()}")
            if r.mutator_errors:
                print(f"({r.target}: {sum(r.mutator_errors.values())} mutations the fuzzer could not apply)", file=sys.stderr)
        print(f"{failed} failures; reproducers in {repro}" if failed else "no failures")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

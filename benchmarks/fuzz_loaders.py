"""Fuzz the isolated model loader with mutated ONNX and TFLite files.

    python benchmarks/fuzz_loaders.py [--cases 2000] [--seed 0] [--workers 2]

Builds two small valid seeds (a tiny CNN exported to ONNX by edgeship, and the same model converted
to .tflite by litert-torch when the tflite extra is installed), mutates them (bit flips, byte
overwrites with interesting values, truncation, chunk duplication and deletion, random tails), and
runs every case through ``edgeship.probe.probe`` in an isolated child (parse + one inference).

Prints the count of successes, typed errors, contained child crashes, internal errors (a bug to
fix), hangs (the wall limit hit) and parent crashes (the goal for the last two is 0).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, 0xFE, 0x10, 0x20, 0x40]


def make_seeds(folder: Path) -> dict[str, bytes]:
    import edgeship

    seeds = {}
    res = edgeship.deploy("tinymodels:tiny_classifier", out=folder / "onnx", isolate=False)
    seeds["onnx"] = res.artifacts[0].model_path.read_bytes()
    try:
        import litert_torch

        import tinymodels

        tm = tinymodels.tiny_classifier()
        path = folder / "tiny.tflite"
        litert_torch.convert(tm.module, tuple(tm.example_inputs)).export(str(path))
        seeds["tflite"] = path.read_bytes()
    except Exception as e:  # the tflite extra is optional
        print(f"(no TFLite seed: {type(e).__name__}: {e})", file=sys.stderr)
    return seeds


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.choice(["flip", "byte", "truncate", "dup", "delete", "tail", "int32"])
        if not b:
            b = bytearray(rng.randbytes(16))
        i = rng.randrange(len(b))
        if op == "flip":
            b[i] ^= 1 << rng.randrange(8)
        elif op == "byte":
            b[i] = rng.choice(INTERESTING)
        elif op == "truncate":
            b = b[: rng.randrange(len(b) + 1)]
        elif op == "dup":
            j = min(len(b), i + rng.randint(1, 256))
            b[i:i] = b[i:j]
        elif op == "delete":
            del b[i : i + rng.randint(1, 64)]
        elif op == "tail":
            b += rng.randbytes(rng.randint(1, 512))
        elif op == "int32" and i + 4 <= len(b):
            b[i : i + 4] = rng.choice([b"\xff\xff\xff\x7f", b"\x00\x00\x00\x80", b"\xff\xff\xff\xff", b"\x00\x00\x01\x00"])
    return bytes(b)


def run_case(path: Path, wall: float) -> str:
    from edgeship.errors import EdgeshipError
    from edgeship.isolate import IsolatedInternalError, Limits, ResourceLimitError, run_isolated

    try:
        run_isolated("edgeship.probe:probe", {"path": str(path)}, limits=Limits(memory_gb=8, cpu_seconds=60, wall_seconds=wall))
        return "success"
    except IsolatedInternalError:
        return "internal error"
    except ResourceLimitError as e:
        return "hang" if "longer than" in e.message else "limit hit (typed)"
    except EdgeshipError as e:
        return "child crash (contained)" if e.details.get("signal") else "typed error"
    except Exception as e:  # anything else escaped into the parent
        print(f"PARENT CRASH on {path}: {type(e).__name__}: {e}", file=sys.stderr)
        return "parent crash"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--wall", type=float, default=30.0, help="wall-clock limit per case, s")
    ap.add_argument("--keep", type=Path, default=None, help="copy cases that crash or hang here")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        seeds = make_seeds(tmpd)
        kinds = sorted(seeds)
        cases = []
        for n in range(args.cases):
            kind = kinds[n % len(kinds)]
            p = tmpd / f"case{n:05d}.{kind}"
            p.write_bytes(mutate(seeds[kind], rng))
            cases.append((kind, p))
        counts: dict[str, collections.Counter] = {k: collections.Counter() for k in kinds}
        t0 = time.time()
        with cf.ThreadPoolExecutor(args.workers) as pool:
            futs = {pool.submit(run_case, p, args.wall): (k, p) for k, p in cases}
            for i, f in enumerate(cf.as_completed(futs), 1):
                kind, p = futs[f]
                outcome = f.result()
                counts[kind][outcome] += 1
                if args.keep and outcome in ("hang", "parent crash", "internal error", "child crash (contained)"):
                    args.keep.mkdir(parents=True, exist_ok=True)
                    (args.keep / p.name).write_bytes(p.read_bytes())
                if i % 100 == 0:
                    print(f"  {i}/{len(cases)} cases, {time.time() - t0:.0f} s", file=sys.stderr)
        elapsed = time.time() - t0
    outcomes = ["success", "typed error", "limit hit (typed)", "child crash (contained)", "internal error", "hang", "parent crash"]
    print(f"\nfuzzed {len(cases)} cases in {elapsed:.0f} s ({args.workers} workers, wall limit {args.wall:g} s)")
    print(f"{'seed':8}" + "".join(f"{o:>26}" for o in outcomes))
    for k in kinds:
        print(f"{k:8}" + "".join(f"{counts[k][o]:>26}" for o in outcomes))
    total = sum((counts[k] for k in kinds), collections.Counter())
    print(f"{'total':8}" + "".join(f"{total[o]:>26}" for o in outcomes))
    return 1 if total["parent crash"] or total["hang"] else 0


if __name__ == "__main__":
    sys.exit(main())

"""A pipeline release on the device (:class:`Pipeline`: OCR's detection, direction, recognition)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import load_image
from ..errors import EdgeshipError, FormatError, UnsupportedError
from .golden import check_golden
from .model import _Model

PIPELINE_JSON = "pipeline.json"
GOLDEN_PIPELINE = "golden/pipeline.json"


class Pipeline:
    """A release bundle's pipeline (``pipeline.json``: text detection, direction, recognition),
    on this device: the first artifact set of its ``set_order`` (each measured end to end when it
    was packaged) whose every artifact loads here and passes its golden vectors serves
    (``served_by`` {stage: artifact}; ``skipped`` names each artifact passed over, its stage and
    why), and the glue (:mod:`edgeship.tasks.ocr`) runs between them.

    ``Pipeline.from_bundle(folder).read(image)`` -> :class:`edgeship.tasks.ocr.OcrResult`: each text
    line's box (in the image's pixels), text and score."""

    def __init__(self, folder: Path, doc: dict[str, Any], runners: dict[str, Any], served_by: dict[str, str],
                 skipped: list[dict[str, str]], characters: tuple[str, ...]) -> None:
        self.folder, self.doc, self._runners = folder, doc, runners
        self.served_by, self.skipped, self.characters = served_by, skipped, characters
        self.kind = str(doc.get("kind"))

    @classmethod
    def from_bundle(cls, folder: str | Path, threads: int = 1, artifacts: dict[str, str] | None = None,
                    check: bool = True) -> Pipeline:
        """Open the pipeline of a bundle folder (verify its signature first: ``edgeship verify``).
        ``artifacts`` ({stage: id}) names which serves instead of the set order; ``check`` runs each
        artifact's golden vectors before it serves. When no set serves, an UnsupportedError names
        the stage and every artifact's reason."""
        from .._util import confined
        from ..readers import read_json, read_text
        from ..tasks.ocr import read_characters

        folder = Path(folder)
        doc = read_json(folder / PIPELINE_JSON, "pipeline record", links=False,
                        hint="give a pipeline bundle written by edgeship deploy PIPELINE.yaml")
        try:
            kind, stages, tasks = doc["kind"], list(doc["stages"]), dict(doc["tasks"])
            if kind != "ocr" or not {"det", "rec"} <= set(stages):
                raise ValueError(f"kind {kind!r} with stages {stages}")
        except (KeyError, TypeError, ValueError) as e:
            raise FormatError(f"{folder / PIPELINE_JSON} is not a pipeline record this runtime reads: {str(e)[:200]}",
                              hint="package it again with this edgeship") from None
        chars_file = str(tasks["rec"].get("characters") or "characters.txt")
        characters = read_characters(read_text(confined(folder, chars_file, f"{folder / PIPELINE_JSON}: characters"),
                                               "character list", links=False))
        if artifacts:
            sets = [dict(artifacts)]
        else:
            sets = [dict(x["artifacts"]) for x in doc.get("set_order") or [] if isinstance(x, dict)]
            if not sets:
                raise FormatError(f"{folder / PIPELINE_JSON} ships no artifact set", hint="package it again")
        opened: dict[str, Any] = {}
        skipped: list[dict[str, str]] = []
        failed: set[str] = set()
        runners: dict[str, Any] = {}

        def open_one(stage: str, aid: str) -> Any:
            if aid in opened or aid in failed:
                return opened.get(aid)
            reason = None
            try:
                r = _Model(confined(folder, f"artifacts/{aid}", f"{folder / PIPELINE_JSON}: an artifact"), threads)
            except EdgeshipError as e:
                reason = f"does not load here: {e.message}"
            except ImportError as e:
                reason = f"its runtime does not import here: {e}"
            else:
                golden = check_golden(folder, aid, r.run) if check else {"passed": True}
                if golden["passed"] is False:
                    r.close()
                    reason = "fails its golden vectors: " + "; ".join(golden["failures"][:3])
                else:
                    opened[aid] = r
                    return r
            failed.add(aid)
            skipped.append({"stage": stage, "artifact": aid, "reason": reason})
            return None

        try:
            for chosen in sets:
                if set(chosen) != set(stages) or not all(open_one(n, chosen[n]) for n in stages):
                    continue
                runners = {n: opened[chosen[n]] for n in stages}
                break
            else:
                stuck = next((n for n in stages if any(s["stage"] == n for s in skipped)), stages[0])
                why = "; ".join(f"{s['artifact']} {s['reason']}" for s in skipped) or "no set names every stage"
                raise UnsupportedError(f"no artifact set of {folder} serves here (the {stuck} stage: {why})",
                                       hint="check the bundle with edgeship verify; install the runtime of one of "
                                            "them, or package another target", skipped=skipped, stage=stuck)
        finally:
            for r in opened.values():
                if r not in runners.values():
                    r.close()
        served = {n: next(a for a, r in opened.items() if r is runners[n]) for n in stages}
        p = cls(folder, doc, runners, served, skipped, characters)
        p._tasks = tasks
        return p

    def _model(self, stage: str) -> Any:
        r = self._runners[stage]
        return lambda x: r.run([x])[0]

    def stages(self) -> Any:
        from ..tasks.ocr import Stages

        return Stages(det=self._model("det"), rec=self._model("rec"),
                      cls=self._model("cls") if "cls" in self._runners else None,
                      det_task=self._tasks["det"], rec_task=self._tasks["rec"], cls_task=self._tasks.get("cls"),
                      characters=self.characters)

    def read(self, image: Any, trace: bool = False) -> Any:
        """Every text line of ``image`` (a path, encoded bytes, a PIL image or an RGB array)."""
        from ..tasks.ocr import read_page

        return read_page(load_image(image), self.stages(), trace=trace)

    def check_golden(self) -> dict[str, Any]:
        """The bundle's golden pages through this pipeline: the text against the expected within
        the tolerance (exactly for fp32), boxes by IoU: ``{"passed", "checked", "failures"}``."""
        from .._util import confined
        from ..readers import read_json
        from ..tasks.ocr import edits, match_lines

        doc = read_json(self.folder / GOLDEN_PIPELINE, "pipeline golden vectors", links=False)
        tol = doc.get("tolerance") or {}
        key = ",".join(f"{n}={a}" for n, a in sorted(self.served_by.items()))  # bundle.pipeline.set_key
        own = (doc.get("sets") or {}).get(key)
        limit = float(tol.get("cer_same_set", 0.0)) if own is not None else float(tol.get("cer_max", 0.0))
        failures: list[str] = []
        images = doc.get("images") or []
        n_edits = n_chars = 0
        for k, im in enumerate(images):
            got = self.read(confined(self.folder, im["file"], f"{self.folder / GOLDEN_PIPELINE}: a page")).to_dict()
            want = own[k] if own is not None else im["expected"]["lines"]
            for i, j, iou in match_lines(want, got["lines"]):
                wt = want[i]["text"] if i is not None else ""
                gt = got["lines"][j]["text"] if j is not None else ""
                n_edits += edits(wt, gt)
                n_chars += len(wt)
                if i is not None and j is not None and iou < float(tol.get("iou_min", 0.5)):
                    failures.append(f"{im['name']}: box of {wt!r} IoU {iou:.2f}")
        if n_chars and n_edits / n_chars > limit:
            failures.append(f"{n_edits} character edits of {n_chars} on {len(images)} pages, against "
                            f"{'this set' if own is not None else 'the fp32 set'}'s reading "
                            f"(limit {100 * limit:.1f}%)")
        return {"passed": not failures, "checked": len(images), "failures": failures}

    def close(self) -> None:
        for r in self._runners.values():
            r.close()

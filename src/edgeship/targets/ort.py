"""ORT target: the ONNX Runtime *ORT format* for ONNX Runtime Mobile, with the operator list for a
reduced build.

The model is the onnx target's export (``OnnxTarget`` — one exporter, not two), converted by
``python -m onnxruntime.tools.convert_onnx_models_to_ort`` (optimisation style Fixed, target
platform ARM) in a child process. The artifact holds ``model.ort`` and
``required_operators.config``, the operator list to pass to an ONNX Runtime minimal build
(``build.sh --minimal_build --include_ops_by_config required_operators.config``).

The ORT format is for ARM phones and boards: its ARM-targeted optimisations drop the x86 NCHWc
layout transforms, so on an x86 host it runs about 3× slower than the ``.onnx``. Use the
onnx artifact on x86; every ORT artifact says so in its notes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from .._util import native_stderr_silenced, quiet
from ..artifact import Artifact, Format
from ..errors import FormatError, UnsupportedError, first_line
from ..formats.onnx import OnnxRunner
from ..isolate import in_child, run_isolated
from ..runner import Runner
from .base import Built, Target
from .onnx import MODEL_FILE as ONNX_FILE

if TYPE_CHECKING:
    from ..config import DeployConfig
    from ..sources import Source

__all__ = ["OrtTarget", "OrtRunner", "ARM_NOTE"]

MODEL_FILE = "model.ort"
OPS_FILE = "required_operators.config"
ARM_NOTE = ("ORT format is meant for ARM devices (ONNX Runtime Mobile); on x86 it runs about 3x slower "
            "than the .onnx because the x86 layout optimisations are left out: use the onnx artifact there")


#: measured: the same .onnx converted four times in fresh processes (fixed PYTHONHASHSEED, no ASLR)
#: gave three different files of the same size: the converter's table order varies, not the content
VARIABLE_BYTES_NOTE = ("model.ort: onnxruntime's ORT-format converter lays out its tables in an order that varies "
                       "from run to run (the same operators and weights, verified the same): the file's bytes and the "
                       "artifact's digest differ between builds of the same model; a re-run reuses the cached one")


class OrtRunner(OnnxRunner):
    """An .ort file on ONNX Runtime's CPU provider (the format is read from the file)."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        if Path(path).suffix != ".ort":  # ORT picks the format by extension; say it when it is not .ort
            raise FormatError(f"{path} is not an .ort file", hint="the ort runner loads ORT-format models (model.ort)")
        super().__init__(path, threads)


class OrtTarget(Target):
    name: ClassVar[str] = "ort"
    format: ClassVar[Format] = Format.ort
    description: ClassVar[str] = ("ONNX Runtime Mobile ORT format + required_operators.config for a reduced build "
                                  "(for ARM devices; ~3x slower than .onnx on x86)")
    requires: ClassVar[tuple[str, ...]] = ("onnx", "onnxruntime", "onnxscript", "onnxslim")
    runtime_modules: ClassVar[tuple[str, ...]] = ("onnxruntime",)
    precisions: ClassVar[tuple[str, ...]] = ("fp32",)
    accepts: ClassVar[tuple[str, ...]] = ("torch", "pt2", "onnx")
    derives_from: ClassVar[str | None] = "onnx"  # deploy passes the onnx fp32 of the same run as parent

    def export(self, source: Source, out_dir: Path, cfg: DeployConfig, precision: str = "fp32",
               base: Artifact | None = None) -> Built:
        assert base is not None  # the onnx fp32 of the same run (the base class builds one if none was given)
        self._to_ort(base.model_path, out_dir)
        ops = [ln.strip() for ln in (out_dir / OPS_FILE).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
        return Built(
            files=(MODEL_FILE, OPS_FILE), inputs=base.inputs, outputs=base.outputs, stage="ort.convert",
            preprocess=base.preprocess,
            config={**base.provenance.config, "optimization_style": "Fixed", "target_platform": "arm",
                    "onnx_digest": base.digest},
            tools=("torch", "onnx", "onnxscript", "onnxslim", "onnxruntime"),
            notes=(ARM_NOTE, VARIABLE_BYTES_NOTE,
                   f"{OPS_FILE}: the operators this model needs ({'; '.join(ops)[:300]}), for an ONNX Runtime "
                   "minimal build (--minimal_build --include_ops_by_config)", *base.notes),
        )

    @staticmethod
    def _to_ort(onnx_path: Path, out_dir: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="edgeship-ort-in-") as tmp:
            src = Path(tmp) / ONNX_FILE  # the tool converts every .onnx in the folder: give it one
            src.write_bytes(onnx_path.read_bytes())
            # onnxruntime's converter parses the (possibly untrusted) model natively: in the limited child
            if in_child():
                convert_to_ort(str(src), str(out_dir))
            else:
                run_isolated("edgeship.targets.ort:convert_to_ort", {"src": str(src), "out_dir": str(out_dir)},
                             what=str(onnx_path))
        produced = out_dir / MODEL_FILE
        for cfg_file in out_dir.glob("*required_operators*.config"):  # named after the model by the tool
            if cfg_file.name != OPS_FILE:
                cfg_file.replace(out_dir / OPS_FILE)
                break
        if not produced.is_file() or not (out_dir / OPS_FILE).is_file():
            raise UnsupportedError("onnxruntime's ORT-format converter wrote no model.ort and operator list",
                                   hint="the onnx artifact still runs on ONNX Runtime everywhere")
        ops_file = out_dir / OPS_FILE  # its header names the temp path it was built in: name the artifact's file
        lines = [ln for ln in ops_file.read_text().splitlines() if not ln.startswith("# - ")]
        header = [ln for ln in lines if ln.startswith("#")]
        body = [ln for ln in lines if not ln.startswith("#")]
        ops_file.write_text("\n".join([*header, f"# - {MODEL_FILE}", *body]) + "\n")
        for extra in out_dir.iterdir():  # keep only what the artifact lists
            if extra.name not in (MODEL_FILE, OPS_FILE):
                if extra.is_dir():
                    shutil.rmtree(extra, ignore_errors=True)
                else:
                    extra.unlink(missing_ok=True)

    def runner(self, artifact: Artifact, threads: int = 1) -> Runner:
        return OrtRunner(artifact.model_path, threads=threads)


def convert_to_ort(src: str, out_dir: str) -> dict[str, str]:
    """onnxruntime's ORT-format converter on one model (fixed optimisations, ARM), run in the isolated
    child; its prints stay off the terminal and its failure is an UnsupportedError with its reason."""
    from onnxruntime.tools.convert_onnx_models_to_ort import OptimizationStyle, convert_onnx_models_to_ort

    with quiet(stdout=True, stderr=True) as log, native_stderr_silenced():
        try:
            convert_onnx_models_to_ort(Path(src), output_dir=Path(out_dir), optimization_styles=[OptimizationStyle.Fixed],
                                       target_platform="arm")
            failure = None
        except Exception as e:  # noqa: BLE001 - the converter's own message is the reason
            failure = e
    if failure is not None:
        said = [ln for ln in log.getvalue().splitlines() if ln.strip().startswith("Error converting")]
        raise UnsupportedError(f"onnxruntime could not convert the model to ORT format: {first_line(failure)}"
                               + (f" ({said[-1].strip()[:300]})" if said else ""),
                               hint="the onnx artifact still runs on ONNX Runtime everywhere")
    return {"out_dir": out_dir}


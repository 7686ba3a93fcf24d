"""An artifact of any task opened on the device, its inputs in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UsageError

#: formats whose runner the light path opens itself (the .ort format is read by the same session)
LIGHT_FORMATS = ("onnx", "ort")
_MAX_RECORD = 16 << 20


class _Model:
    """An artifact of any task, run with its inputs in order: an ONNX or ORT artifact opened here
    with ONNX Runtime (its session settings from artifact.json; its input names from the record,
    no pydantic), any other format by the full loader."""

    def __init__(self, path: Path, threads: int) -> None:
        from .._util import confined
        from ..readers import read_json

        data = read_json(path / "artifact.json", "artifact record", max_bytes=_MAX_RECORD, links=False)
        details = data.get("details") if isinstance(data, dict) and isinstance(data.get("details"), dict) else {}
        config = details.get("session_config")
        inputs = data.get("inputs") if isinstance(data, dict) else None
        names = [i.get("name") for i in inputs] if isinstance(inputs, list) and all(isinstance(i, dict) for i in inputs) \
            else None
        if (isinstance(data, dict) and data.get("format") in LIGHT_FORMATS and isinstance(data.get("model_file"), str)
                and names and all(isinstance(n, str) for n in names)
                and (config is None or (isinstance(config, dict) and all(isinstance(v, str) for v in config.values())))):
            from ..formats.onnx import OnnxRunner

            self.runner = OnnxRunner(confined(path, data["model_file"], f"{path}/artifact.json: model_file"),
                                     threads=threads, session_config=config)
            self._names: list[str] | None = names
        else:
            from ..targets import load_artifact, runner_for

            self.runner, self._names = runner_for(load_artifact(path), threads=threads), None

    def run(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        if self._names is None:
            return self.runner.run(inputs)
        if len(inputs) != len(self._names):
            raise UsageError(f"the model takes {len(self._names)} inputs, got {len(inputs)}")
        return self.runner.run_prepared(dict(zip(self._names, inputs)))

    def close(self) -> None:
        self.runner.close()

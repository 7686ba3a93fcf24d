from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
# every test builds what it checks: edgeship's cache of task results is off (the cache's own tests
# turn it on in a folder of their own); the rest of the cache folder (onnxruntime-web, peaks) is shared
os.environ["EDGESHIP_NO_CACHE"] = "1"
# pytest-xdist already runs a test per CPU: a deploy builds in its own process unless a test asks for workers
os.environ["EDGESHIP_JOBS"] = "1"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Lanes (``make test-fast`` leaves them out; CI runs every test): ``browser`` for a test that
    needs Chromium (a skip reason naming it, or the web target in its name or parameters),
    ``kotlin`` for one that needs kotlinc."""
    for item in items:
        reasons = " ".join(str(m.kwargs.get("reason", "")) for m in item.iter_markers("skipif"))
        if "Chromium" in reasons or "web" in item.nodeid.split("::", 1)[-1] or item.path.name == "test_web.py":
            item.add_marker(pytest.mark.browser)
        if "kotlinc" in reasons:
            item.add_marker(pytest.mark.kotlin)


@pytest.fixture(scope="session")
def tests_dir() -> Path:
    return TESTS


@pytest.fixture
def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    return env


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """A verified ONNX artifact of the tiny classifier, built once per session."""
    import edgeship

    out = tmp_path_factory.mktemp("tiny")
    res = edgeship.deploy("tinymodels:tiny_classifier", out=out)
    return res.artifacts[0].root


@pytest.fixture(scope="session")
def tiny_ocr(tmp_path_factory) -> dict:
    """The tiny two-stage OCR pipeline (tests/tinyocr.py: detection, recognition) deployed once per
    test process to onnx fp32 and fp16, one signed release: ``{"root", "spec", "out", "record",
    "bundle", "key"}``. Shared: a test that changes a file works on a copy."""
    from edgeship import api
    from tinyocr import write_tiny_ocr

    root = tmp_path_factory.mktemp("tiny-ocr")
    spec = write_tiny_ocr(root / "models", stages=("det", "rec"))
    record = api.deploy(str(spec), out=root / "out", targets=["onnx"], quantize=["fp16"]).record
    return {"root": root, "spec": spec, "out": root / "out", "record": record,
            "bundle": root / "out" / record["bundle"]["folder"], "key": root / "out" / record["bundle"]["public_key"]}


@pytest.fixture(scope="session")
def photo_file(tmp_path_factory) -> Path:
    import skimage.data
    from PIL import Image

    p = tmp_path_factory.mktemp("photos") / "coffee.png"
    Image.fromarray(skimage.data.coffee()).save(p)
    return p


@pytest.fixture(scope="session")
def relu6():
    """The ReLU6 classifier (tinymodels), loaded once: the int8 tests of several targets use it."""
    import edgeship

    return edgeship.load("tinymodels:relu6_classifier")


@pytest.fixture(scope="session")
def relu6_cfg():
    # the random tiny net has near-tied logits: int8 fixes are judged on cosine, where a collapse shows
    import edgeship

    return edgeship.DeployConfig.build(model="tinymodels:relu6_classifier", max_drop=0.2)


@pytest.fixture(autouse=True)
def _restore_target_registry():
    """A test that registers a target leaves the registry as it found it."""
    from edgeship.targets import registry as targets

    saved = dict(targets._REGISTRY)
    yield
    targets._REGISTRY.clear()
    targets._REGISTRY.update(saved)

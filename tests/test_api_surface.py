"""The public surface and the error tree are pinned: changing them is a decision, not an accident."""

import edgeship
from edgeship import errors


def test_all_is_pinned():
    expected = {
        "__version__", "Artifact", "Classifier", "DeployConfig", "DeployResult", "EdgeshipError", "Format",
        "FormatError", "InputError", "MissingExtraError", "Plan", "Prediction", "Preprocess", "Runner",
        "SecurityError", "Source", "Target", "TensorSpec", "TorchModel", "UnsupportedError", "UsageError",
        "ValidationError", "analyze", "available_targets", "benchmark", "classify", "convert", "deploy", "get_target", "load",
        "load_artifact", "plan", "quantize", "register_target", "runner_for",
        "package", "verify_bundle", "keygen",  # the release bundle (issue 13)
        "report",  # the HTML report and the comparison of two deploys (issue 15)
        "compress",  # pruning: a new torch source (issue 17)
        "Stream", "Embedder",  # the light runtime of streams and embeddings (issue 38)
    }
    assert set(edgeship.__all__) == expected and len(edgeship.__all__) == len(expected)  # ==: additions are decisions too
    for name in edgeship.__all__:
        assert hasattr(edgeship, name), name


def test_exit_codes():
    assert errors.UsageError("x").exit_code == 2
    assert errors.InputError("x").exit_code == 3
    assert errors.FormatError("x").exit_code == 3
    assert errors.UnsupportedError("x").exit_code == 4
    assert errors.MissingExtraError("x").exit_code == 4
    assert errors.ValidationError("x").exit_code == 5
    assert errors.SecurityError("x").exit_code == 6
    assert issubclass(errors.FormatError, errors.InputError)
    e = errors.SecurityError("refused", hint="add --allow-pickle", path="a.pt")
    assert e.to_dict() == {"type": "SecurityError", "message": "refused", "exit_code": 6,
                           "hint": "add --allow-pickle", "details": {"path": "a.pt"}}
    assert "--allow-pickle" in str(e)


def test_cli_flags_come_from_the_config():
    """Every DeployConfig field is a deploy flag, with its description as help: no drift."""
    import click
    import typer.main

    from edgeship.cli import app
    from edgeship.config import DeployConfig

    cmd = typer.main.get_command(app).commands["deploy"]
    params = {p.name: p for p in cmd.params}
    for name, field in DeployConfig.model_fields.items():
        assert name in params, name
        if isinstance(params[name], click.Option):
            assert params[name].help == field.description


def test_config_rejects_bad_values_as_usage_errors():
    import pytest

    from edgeship.config import DeployConfig

    with pytest.raises(errors.UsageError, match="--atol"):
        DeployConfig.build(atol=-1)
    with pytest.raises(errors.UsageError):
        DeployConfig.build(targets=[])
    with pytest.raises(errors.UsageError, match="--input-shape"):
        DeployConfig.build(input_shape=["1,a,3"]).shapes()
    cfg = DeployConfig.build(targets="onnx, fake", input_dtype="int64")
    assert cfg.targets == ["onnx", "fake"] and cfg.input_dtype == ["int64"]


def test_every_public_function_stays_callable_after_every_part_is_imported():
    # a part named like an API function (edgeship.report was one) replaced the function with the
    # module once anything imported it, e.g. after a deploy: edgeship.report(out) -> not callable
    import importlib
    import pkgutil

    for name in edgeship.__all__:
        getattr(edgeship, name)
    for mod in pkgutil.iter_modules(edgeship.__path__):
        if mod.name.startswith("_"):  # __main__ runs the CLI, _child serves its parent; neither is a public part
            continue
        try:
            importlib.import_module(f"edgeship.{mod.name}")
        except ImportError:  # an optional extra's part
            continue
    for name in edgeship.__all__:
        if name[0].islower() and name != "__version__":
            assert callable(getattr(edgeship, name)), name

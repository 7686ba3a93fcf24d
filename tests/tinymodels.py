"""Tiny models for the tests, built on the fly (no downloads). Importable as factories:
``tinymodels:tiny_classifier`` etc. (tests put this folder on the path)."""

from __future__ import annotations

import torch
from torch import nn

from edgeship import Preprocess, TorchModel

LABELS = tuple(f"class_{i}" for i in range(10))


class TinyCNN(nn.Module):
    def __init__(self, classes: int = 10, size: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU6(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
            nn.Conv2d(8, 16, 1), nn.ReLU(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def _seeded(module: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    for p in module.parameters():
        nn.init.normal_(p, std=0.3)
    return module.eval()


def tiny_classifier() -> TorchModel:
    """An image classifier with preprocessing and labels, like the default model but tiny."""
    torch.manual_seed(0)
    m = _seeded(TinyCNN())
    return TorchModel(
        module=m, example_inputs=(torch.zeros(1, 3, 32, 32),), input_names=("image",), output_names=("logits",),
        preprocess=Preprocess(input="image", height=32, width=32, mean=(127.0,) * 3, std=(128.0,) * 3),
        labels=LABELS, name="tiny-classifier",
    )


def tiny_classifier_48() -> TorchModel:
    """Another resolution, NHWC input."""
    class NHWC(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = TinyCNN()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.permute(0, 3, 1, 2))

    m = _seeded(NHWC())
    return TorchModel(
        module=m, example_inputs=(torch.zeros(1, 48, 48, 3),), input_names=("pixels",),
        preprocess=Preprocess(input="pixels", height=48, width=48, layout="NHWC",
                              mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375)),
        labels=LABELS, name="tiny-nhwc-48",
    )


def plain_cnn() -> nn.Module:
    """A bare nn.Module: the example input comes from --input-shape."""
    return _seeded(TinyCNN())


def cnn_with_example():
    return _seeded(TinyCNN()), (torch.randn(1, 3, 16, 16),)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 4)
        self.b = nn.Linear(3, 4)

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        h = torch.relu(self.a(x)) + self.b(y)
        return {"sum": h, "prod": h * 2.0}


def two_inputs():
    return _seeded(TwoInputs()), (torch.randn(1, 6), torch.randn(1, 3))


class TokenEncoder(nn.Module):
    """A small transformer encoder taking int64 token ids."""

    def __init__(self, vocab: int = 50, dim: int = 32, seq: int = 12) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.pos = nn.Parameter(torch.randn(1, seq, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=64, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.encoder(self.emb(ids) + self.pos)
        return self.head(h.mean(dim=1))


def token_encoder():
    torch.manual_seed(0)
    m = TokenEncoder().eval()
    return m, (torch.randint(0, 50, (1, 12), dtype=torch.int64),)


class DataDependent(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: torch.export cannot take it
            return x * 2
        return x - 1


def not_exportable():
    return DataDependent(), (torch.randn(1, 4),)


def returns_string():
    return "not a model"

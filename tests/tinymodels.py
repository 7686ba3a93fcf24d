"""Tiny models for the tests, built on the fly (no downloads). Importable as factories:
``tinymodels:tiny_classifier`` etc. (tests put this folder on the path)."""

from __future__ import annotations

import zlib

import numpy as np
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


def kills_its_worker() -> TorchModel:
    """In an isolated child (a sweep's task): kills the process that started it (the sweep's Ray
    worker), then itself, as an out-of-memory killer or an operator would; elsewhere a tiny model."""
    import os
    import signal

    from edgeship.isolate import in_child

    if in_child():
        os.kill(os.getppid(), signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
    return tiny_classifier()


# ---- analysis (tests/test_analyze.py) -------------------------------------------------------

def seed_example():
    """The seed's worked example: a standard 3x3 conv, 224x224x32 in, 64 channels out."""
    torch.manual_seed(0)
    return nn.Conv2d(32, 64, 3, padding=1, bias=False).eval(), (torch.zeros(1, 32, 224, 224),)


class Bucketizer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("edges", torch.tensor([-1.0, 0.0, 1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.bucketize(x, self.edges).to(x.dtype)


class WithBucketize(nn.Module):
    """A conv whose output goes through torch.bucketize: Core ML and TFLite have no such op."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.quantizer = Bucketizer()
        self.head = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.quantizer(self.conv(x)), 1))


def unsupported_op():
    return _seeded(WithBucketize()), (torch.randn(1, 3, 8, 8),)


# ---- tflite / ort (tests/test_tflite.py, tests/test_ort.py) -----------------------------------

class WideMLP(nn.Module):
    """Mostly weights (~200k parameters): file sizes reflect the weight precision."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(64, 384), nn.ReLU(), nn.Linear(384, 384), nn.ReLU(), nn.Linear(384, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def wide_mlp():
    torch.manual_seed(0)
    return WideMLP().eval(), (torch.randn(1, 64),)


class BesselHead(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.special.i0(x)


class WithBessel(nn.Module):
    """A conv followed by torch.special.i0, which LiteRT has no lowering for."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bessel = BesselHead()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bessel(self.conv(x))


def tflite_unsupported():
    return _seeded(WithBessel()), (torch.randn(1, 3, 8, 8),)


# ---- openvino / executorch / coreml (tests/test_openvino.py, test_executorch.py, test_coreml.py) ---

class ReLU6Net(nn.Module):
    """A small ReLU6 (hardtanh) classifier whose convolutions reach far beyond [0, 6] before the
    clamp, as in EfficientNet-Lite/MobileNet: int8 that quantises the conv output before the clamp
    loses most of the resolution inside [0, 6]."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.ReLU6(),
            nn.Conv2d(16, 24, 1), nn.ReLU6(),
            nn.Conv2d(24, 24, 3, padding=1, groups=24), nn.ReLU6(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(24, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.features(x)), 1))


def relu6_classifier() -> TorchModel:
    torch.manual_seed(0)
    m = ReLU6Net().eval()
    with torch.no_grad():
        for mod in m.features:
            if isinstance(mod, nn.Conv2d):
                nn.init.normal_(mod.weight, std=4.0)
                nn.init.normal_(mod.bias, mean=-10.0, std=10.0)
        nn.init.normal_(m.fc.weight, std=1.0)
    return TorchModel(
        module=m, example_inputs=(torch.zeros(1, 3, 32, 32),), input_names=("image",), output_names=("logits",),
        preprocess=Preprocess(input="image", height=32, width=32), labels=LABELS, name="relu6-classifier",
    )


class BagOfWords(nn.Module):
    """Token ids -> mean embedding -> logits: the vocabulary is the embedding's row count."""

    def __init__(self, vocab: int, dim: int = 16, classes: int = 4) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.emb(ids).mean(dim=1))


def small_vocab() -> nn.Module:
    """20 tokens: random ids up to 99 would index past the table."""
    torch.manual_seed(0)
    return BagOfWords(20).eval()


def big_vocab() -> nn.Module:
    torch.manual_seed(0)
    return BagOfWords(30000).eval()


class SentenceEmbedder(nn.Module):
    """Token ids -> a unit-length sentence embedding (mean-pooled transformer states): an output
    whose argmax means nothing, judged by cosine."""

    def __init__(self, vocab: int = 1000, dim: int = 64, seq: int = 16) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=128, batch_first=True, dropout=0.0)
        self.encoder = nn.TransformerEncoder(layer, num_layers=1, enable_nested_tensor=False)
        self.proj = nn.Linear(dim, dim)
        self.seq = seq

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.proj(self.encoder(self.emb(ids)).mean(dim=1))
        return torch.nn.functional.normalize(h, dim=-1)


def toy_tokenize(texts: list[str], vocab: int = 1000, seq: int = 16) -> tuple[np.ndarray]:
    """Words to ids by a stable hash (1..vocab-1), padded with 0 to ``seq``: a tokenizer for tests."""
    ids = np.zeros((len(texts), seq), dtype=np.int64)
    for i, t in enumerate(texts):
        words = [1 + zlib.crc32(w.lower().encode()) % (vocab - 1) for w in t.split()][:seq]
        ids[i, :len(words)] = words
    return (ids,)


def sentence_embedder() -> TorchModel:
    torch.manual_seed(0)
    m = SentenceEmbedder().eval()
    return TorchModel(module=m, example_inputs=(torch.randint(0, 1000, (1, 16), dtype=torch.int64),),
                      input_names=("ids",), output_names=("embedding",), name="sentence-embedder",
                      tokenize=toy_tokenize)


class UnbalancedNet(nn.Module):
    """conv -> BN -> ReLU -> depthwise -> BN -> ReLU -> 1x1 -> ReLU: the first batch norm spreads
    its channels over three decades and the depthwise weights undo it, so the float function is
    ordinary but one int8 scale cannot serve the activation between them: what cross-layer
    equalisation is for."""

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=2, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pw = nn.Conv2d(16, 16, 1)
        self.fc = nn.Linear(16, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn2(self.dw(torch.relu(self.bn1(self.conv1(x))))))
        return self.fc(torch.relu(self.pw(h)).mean(dim=(2, 3)))


def unbalanced_classifier() -> TorchModel:
    torch.manual_seed(0)
    m = UnbalancedNet()
    spread = torch.logspace(-2, 1, 16)
    with torch.no_grad():
        m.bn1.weight.copy_(spread)
        m.bn1.bias.copy_(spread * 0.1)
        m.dw.weight.mul_((1 / spread).reshape(-1, 1, 1, 1))
    m.eval()
    return TorchModel(
        module=m, example_inputs=(torch.zeros(1, 3, 32, 32),), input_names=("image",), output_names=("logits",),
        preprocess=Preprocess(input="image", height=32, width=32, mean=(127.0,) * 3, std=(128.0,) * 3),
        labels=LABELS, name="unbalanced-classifier",
    )


def labelled_pairs():
    """Training data as a callable: (x, y) pairs for tiny_classifier."""
    for i in range(5):
        yield np.full((3, 32, 32), i / 5, np.float32), i


class DigitsCNN(nn.Module):
    """A small CNN for scikit-learn's 8x8 digits (1 channel, values 0..1)."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        )
        self.fc = nn.Linear(2 * width * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.features(x), 1))


def digits_arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (x [N,1,8,8] float32 in 0..1, y); 'train' the first 1400, 'test' the rest."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    sl = slice(0, 1400) if split == "train" else slice(1400, None)
    return x[sl], d.target[sl].astype(np.int64)


_DIGITS: dict[str, dict] = {}


def digits_classifier() -> TorchModel:
    """DigitsCNN trained for a few seconds on the digits' training split (deterministic)."""
    torch.manual_seed(0)
    m = DigitsCNN()
    if "sd" not in _DIGITS:  # one thread: the same weights in every process (the checkpoint key holds the digest)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        torch.manual_seed(0)
        x, y = (torch.from_numpy(a) for a in digits_arrays("train"))
        opt = torch.optim.Adam(m.parameters(), lr=3e-3)
        m.train()
        for epoch in range(6):
            order = torch.from_numpy(np.random.default_rng(epoch).permutation(len(x)))
            for i in range(0, len(x), 64):
                idx = order[i:i + 64]
                loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        torch.set_num_threads(threads)
        _DIGITS["sd"] = {k: v.clone() for k, v in m.state_dict().items()}
    m.load_state_dict(_DIGITS["sd"])
    return TorchModel(module=m.eval(), example_inputs=(torch.zeros(1, 1, 8, 8),), input_names=("digit",),
                      output_names=("logits",), labels=tuple(str(i) for i in range(10)), name="digits-cnn")

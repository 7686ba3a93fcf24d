"""A small CNN on scikit-learn's 8x8 digits, as an edgeship factory (the pruning benchmark's model).

    python benchmarks/digits.py DIR      # trains it (seeded, ~1 min), writes DIR/weights.pt,
                                         # DIR/train.npz and DIR/test.npz (x, y)
    edgeship compress benchmarks/digits.py:model --weights DIR/weights.pt --prune 0.5 \\
        --train-data DIR/train.npz --eval-data DIR/test.npz

The digits ship with scikit-learn (1797 images, no download); the first 1400 train, the last 397
test (other writers). The input is upsampled 4x to 32x32 (``torch.nn.functional.interpolate`` in
the model), so the convolutions do the work a small mobile vision model does, not call overhead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

WIDTH = 32


class DigitsNet(nn.Module):
    def __init__(self, width: int = WIDTH) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(1, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(),
        )
        self.head = nn.Linear(4 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.interpolate(x, scale_factor=4.0, mode="nearest")
        return self.head(self.features(x).mean((2, 3)))


def arrays(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(x [N,1,8,8] float32 in 0..1, y int64): 'train' the first 1400 digits, 'test' the other 397."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0).astype(np.float32)[:, None]
    sl = slice(0, 1400) if split == "train" else slice(1400, None)
    return x[sl], d.target[sl].astype(np.int64)


def model():
    """The factory: the architecture (give the trained weights with --weights)."""
    from edgeship import TorchModel

    return TorchModel(module=DigitsNet().eval(), example_inputs=(torch.zeros(1, 1, 8, 8),), input_names=("digit",),
                      output_names=("logits",), labels=tuple(str(i) for i in range(10)), name="digits-cnn")


def train(out: Path, epochs: int = 15, seed: int = 0) -> float:
    """Train DigitsNet on the training split (seeded); write weights and data to ``out``; return
    its test accuracy."""
    torch.manual_seed(seed)
    m = DigitsNet()
    x, y = (torch.from_numpy(a) for a in arrays("train"))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    steps = epochs * ((len(x) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=4e-3, total_steps=steps)
    for epoch in range(epochs):
        m.train()
        order = torch.from_numpy(np.random.default_rng([seed, epoch]).permutation(len(x)))
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            loss = nn.functional.cross_entropy(m(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    m.eval()
    out.mkdir(parents=True, exist_ok=True)
    torch.save(m.state_dict(), out / "weights.pt")
    for split in ("train", "test"):
        xs, ys = arrays(split)
        np.savez(out / f"{split}.npz", x=xs, y=ys)
    xt, yt = arrays("test")
    with torch.no_grad():
        return float((m(torch.from_numpy(xt)).argmax(1).numpy() == yt).mean())


if __name__ == "__main__":
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "digits")
    print(f"test accuracy {train(folder):.1%}; written: {folder}/weights.pt, train.npz, test.npz")

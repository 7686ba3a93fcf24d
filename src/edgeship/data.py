"""Real inputs: the sample photos shipped by scikit-image, and image preprocessing.

Preprocessing follows an artifact's :class:`~edgeship.artifact.Preprocess` spec exactly, so the
Python classifier, verification and (later) the generated app code agree on one definition.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .artifact import Preprocess
from .errors import FormatError, InputError

# Colour photos that scikit-image ships inside its wheel (no download needed).
SAMPLE_PHOTOS = ("coffee", "chelsea", "astronaut", "rocket", "motorcycle")


def sample_photos() -> dict[str, np.ndarray]:
    """name -> HxWx3 uint8 RGB photo, from scikit-image's bundled data."""
    try:
        import skimage.data as d
    except ImportError as e:  # pragma: no cover - core dependency
        raise InputError("scikit-image is needed for the sample photos",
                         hint="pip install scikit-image") from e
    out = {}
    for name in SAMPLE_PHOTOS:
        img = d.stereo_motorcycle()[0] if name == "motorcycle" else getattr(d, name)()
        out[name] = np.ascontiguousarray(img[..., :3])
    return out


def load_image(image: Any) -> np.ndarray:
    """A path, a PIL image or an HxWx{1,3,4} array -> HxWx3 uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, (str, Path)):
        p = Path(image)
        if not p.is_file():
            raise InputError(f"no such image: {p}", hint="give the path of a JPEG or PNG file")
        try:
            with Image.open(p) as im:
                im.draft("RGB", (1024, 1024))  # cheap downscale for huge JPEGs
                return np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as e:
            raise FormatError(f"{p} is not a readable image: {e}",
                              hint="give a JPEG, PNG, BMP or WebP file") from None
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise InputError(f"an image array must be HxW or HxWxC (C=1,3,4), got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype != np.uint8:
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr[..., :3])


def preprocess_image(image: Any, spec: Preprocess) -> np.ndarray:
    """One image -> the model input tensor with a batch axis of 1, as ``spec`` says."""
    from PIL import Image

    rgb = load_image(image)
    im = Image.fromarray(rgb)
    w, h = im.size
    # resize so the centre crop of size (height, width) is crop_fraction of the shorter side
    scale = max(spec.height / (h * spec.crop_fraction), spec.width / (w * spec.crop_fraction))
    resample = {"bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC, "nearest": Image.NEAREST}[spec.resample]
    nw, nh = max(spec.width, round(w * scale)), max(spec.height, round(h * scale))
    im = im.resize((nw, nh), resample)
    left, top = (nw - spec.width) // 2, (nh - spec.height) // 2
    im = im.crop((left, top, left + spec.width, top + spec.height))
    x = np.asarray(im, dtype=np.float32)
    if spec.color == "BGR":
        x = x[..., ::-1]
    if spec.dtype == "uint8":
        x = x.astype(np.uint8)
    else:
        x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x[None])


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def augmented_crops(spec: Preprocess, n: int, seed: int) -> list[np.ndarray]:
    """``n`` model inputs from random crops of the sample photos (area 25–100 %, aspect 3:4–4:3,
    horizontal flips), preprocessed by ``spec``. Different seeds give disjoint-in-practice sets:
    calibration uses one seed, evaluation another."""
    photos = list(sample_photos().values())
    rng = np.random.default_rng(seed)
    full = spec.model_copy(update={"crop_fraction": 1.0})
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        area = rng.uniform(0.25, 1.0) * h * w
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch = int(min(h, round(np.sqrt(area / aspect))))
        cw = int(min(w, round(np.sqrt(area * aspect))))
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
        crop = img[top:top + ch, left:left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out.append(preprocess_image(np.ascontiguousarray(crop), full))
    return out


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Arrays from a .npy or .npz file, never unpickling: object arrays are refused."""
    from .errors import SecurityError

    p = Path(path)
    if not p.is_file():
        raise InputError(f"no such data file: {p}", hint="give a .npy or .npz file, or an image folder")
    with open(p, "rb") as fh:
        head = fh.read(6)
    try:
        if head.startswith(b"\x93NUMPY"):
            return {p.stem: np.load(p, allow_pickle=False)}
        if head.startswith(b"PK\x03\x04"):
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
    except ValueError as e:
        if "allow_pickle" in str(e) or "Object arrays" in str(e):
            raise SecurityError(f"{p} holds Python objects (a pickle), not plain arrays",
                                hint="save plain numeric arrays: np.save(path, array.astype(np.float32))") from None
        raise FormatError(f"{p} is not a readable numpy file: {e}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise FormatError(f"{p} is not a readable numpy file: {e}") from None
    raise FormatError(f"{p} is not a .npy or .npz file", hint="numpy files start with \\x93NUMPY (npy) or are zip (npz)")

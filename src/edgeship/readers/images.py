"""Images from outside (classify, calibration and evaluation folders, serve's request bodies):
decoded only here, the same way everywhere.

Any format Pillow reads; the EXIF orientation applied (a phone photo stored sideways is classified
upright, as every photo viewer shows it); 16-bit and 32-bit greys scaled to 8 bits by their range
(not clipped white); palettes and CMYK converted; alpha dropped (composited on nothing: the colour
channels as stored). A file that is not a readable image (damaged, truncated where Pillow
notices, of a format outside :data:`FORMATS`, more than :data:`MAX_PIXELS`) is a FormatError
naming it.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from ..errors import FormatError

__all__ = ["decode_image", "to_rgb", "MAX_PIXELS", "IMAGE_LIMIT", "FORMATS"]

MAX_PIXELS = 178_956_970  # Pillow's own decompression-bomb limit (2 x its warning size)
IMAGE_LIMIT = 512 << 20  # bytes of one image file
#: the formats an image may be in (what cameras, phones and the web write)
FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF", "GIF", "PPM")  # JPEG opens MPO (phones) too


def to_rgb(im: Any) -> Any:
    """A PIL image -> HxWx3 uint8 RGB array (orientation, bit depth and mode handled as above)."""
    import numpy as np
    from PIL import ImageOps

    im = ImageOps.exif_transpose(im) or im
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        top = float(np.nanmax(a)) if a.size else 0.0
        hi = 65535.0 if im.mode.startswith("I;16") else next((m for m in (255.0, 65535.0) if top <= m), max(top, 1.0))
        a = np.clip(np.nan_to_num(a) / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(a[..., None], 3, axis=2))
    return np.asarray(im.convert("RGB"))


def decode_image(src: Any, what: str) -> Any:
    """Decode an encoded image (a path or a file object) to HxWx3 uint8 RGB. Only the formats of
    :data:`FORMATS` are tried (Pillow's others include EPS, which runs Ghostscript); a picture of
    more than :data:`MAX_PIXELS` is refused from its header, before it is decoded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src, formats=FORMATS) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise Image.DecompressionBombError(f"{w}x{h} pixels, more than {MAX_PIXELS:,}")
            im.draft("RGB", (1024, 1024))  # cheap downscale for huge JPEGs
            return to_rgb(im)  # decodes it whole: a truncated file fails here, where Pillow notices
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error,
            IndexError, KeyError, TypeError, ZeroDivisionError, NotImplementedError, MemoryError,
            Image.DecompressionBombError) as e:
        # Pillow's plugins raise any of these on a damaged file
        why = (f"not an image in a format edgeship reads ({', '.join(FORMATS)})" if isinstance(e, UnidentifiedImageError)
               else f"{type(e).__name__}: {str(e)[:200]}")  # Pillow's own text names the file object's repr
        raise FormatError(f"{what} is not a readable image: {why}", hint="give a JPEG, PNG, BMP or WebP file",
                          reason=why) from None

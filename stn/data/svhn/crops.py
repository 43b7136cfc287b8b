"""The Goodfellow et al. (2013) crops and labels of SVHN format 1.

:func:`crop_box` and :func:`crop_and_resize` make the 64x64 crops: the union of the digit boxes,
enlarged by 30% in x and in y about its centre, cropped (zeros where it leaves the image) and
resized. :func:`all_sequence_labels` makes the 5-position labels (10 = no digit); :func:`length_filter`
drops the sequences longer than 5 digits.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

from stn.data.prepared import UndecodableImage, decode_image
from stn.data.svhn.digit_struct import DigitStruct, SVHNFormatError

MAX_DIGITS = 5
NO_DIGIT = 10
ENLARGE = 1.3
CROP_SIZE = 64


def decode_png(
    data: bytes, where: str, fix: str = "the archive is broken: delete it and rerun to download it again"
) -> np.ndarray:
    """A PNG's bytes as RGB uint8 ``[H, W, 3]``; an error naming ``where`` and ``fix`` if not a PNG."""
    try:
        return decode_image(data, "RGB")
    except UndecodableImage as err:
        raise SVHNFormatError(f"{where}: the image does not decode ({err}); {fix}") from err


def crop_box(boxes: np.ndarray, image_width: int, image_height: int) -> tuple[int, int, int, int]:
    """Goodfellow et al. (2013)'s crop of one image as integer pixel bounds ``(x0, y0, x1, y1)``,
    ``x1`` and ``y1`` exclusive, which may reach outside the image.

    The union of the digit boxes (``boxes``: ``[k, 4]`` left, top, width, height, as in
    :meth:`DigitStruct.boxes`) is enlarged by 30% in x and in y about its centre, then widened to
    whole pixels (``floor`` of the low edge, ``ceil`` of the high edge).

    Raises:
        ValueError: no boxes, a box of no area, or a crop not overlapping the image.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(b) == 0:
        raise ValueError("no boxes")
    if np.any(b[:, 2:] <= 0):
        raise ValueError(f"a box of no area: {b.tolist()}")
    lo_x, lo_y = b[:, 0].min(), b[:, 1].min()
    hi_x, hi_y = (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()
    cx, cy = (lo_x + hi_x) / 2, (lo_y + hi_y) / 2
    hw, hh = (hi_x - lo_x) * ENLARGE / 2, (hi_y - lo_y) * ENLARGE / 2
    eps = 1e-6  # so that 9.9999999 from rounding errors stays 10
    x0, y0 = math.floor(cx - hw + eps), math.floor(cy - hh + eps)
    x1, y1 = math.ceil(cx + hw - eps), math.ceil(cy + hh - eps)
    if x1 <= 0 or y1 <= 0 or x0 >= image_width or y0 >= image_height:
        raise ValueError(f"crop {(x0, y0, x1, y1)} lies outside the {image_width}x{image_height} image")
    return x0, y0, x1, y1


def crop(image: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels ``image[y0:y1, x0:x1]`` of a uint8 ``[H, W, C]`` image, zeros outside it."""
    x0, y0, x1, y1 = box
    h, w = image.shape[:2]
    out = np.zeros((y1 - y0, x1 - x0, *image.shape[2:]), dtype=image.dtype)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if sx1 > sx0 and sy1 > sy0:
        out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return out


def crop_and_resize(image: np.ndarray, box: tuple[int, int, int, int], size: int = CROP_SIZE) -> np.ndarray:
    """Crop ``box`` out of a uint8 ``[H, W, 3]`` image (zero padding outside it) and resize it to
    uint8 ``[size, size, 3]`` with PIL's bilinear filter (antialiased when shrinking)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    patch = Image.fromarray(crop(image, box), mode="RGB")
    return np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def length_filter(counts: np.ndarray | DigitStruct, max_digits: int = MAX_DIGITS) -> tuple[np.ndarray, int]:
    """Which images to keep: ``(keep, dropped)``, ``keep`` a bool mask of the images with 1 to
    ``max_digits`` digits and ``dropped`` how many have more (Goodfellow et al. drop them)."""
    if isinstance(counts, DigitStruct):
        counts = counts.counts
    counts = np.asarray(counts)
    keep = (counts >= 1) & (counts <= max_digits)
    return keep, int(np.count_nonzero(counts > max_digits))


def all_sequence_labels(digit_struct: DigitStruct, max_digits: int = MAX_DIGITS) -> np.ndarray:
    """Every image's digits (0-9; the file's 10 for 0 becomes 0) in ``max_digits`` positions,
    padded with 10 (no digit): int64 ``[N, max_digits]``; the digits past ``max_digits`` of a
    longer sequence are cut (such images are dropped by :func:`length_filter`)."""
    n = len(digit_struct)
    counts = digit_struct.counts
    out = np.full((n, max_digits), NO_DIGIT, np.int64)
    row = np.repeat(np.arange(n), counts)
    pos = np.arange(len(digit_struct.label)) - np.repeat(digit_struct.start[:-1], counts)
    sel = pos < max_digits
    out[row[sel], pos[sel]] = digit_struct.label[sel]
    return out

"""Images arrive inline as `data:image/...;base64,` URLs. The server fetches nothing; every image is bounded in
bytes before it is decoded from base64 and in pixels before its pixels are decoded (decompression bombs: a tiny
file that claims a huge canvas is refused from its header alone)."""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from typing import Any

from tinyllava.serving.errors import ApiError

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(;[\w.+-]+=[^;,]*)*);base64,(?P<data>.*)$",
                       re.DOTALL)


def decode_data_url(url: str, *, max_bytes: int, max_pixels: int, param: str) -> Any:
    """The RGB PIL image in `url`, or ApiError(400) saying what is wrong with it."""
    from PIL import Image, UnidentifiedImageError

    head = url[:64].lower()
    if head.startswith(("http://", "https://")):
        raise ApiError(400, "remote image URLs are not supported: this server fetches nothing; send the image "
                            "inline as a data URL (data:image/png;base64,...)", param=param, code="invalid_image_url")
    match = _DATA_URL.match(url)
    if match is None:
        raise ApiError(400, "image_url must be a base64 data URL such as data:image/png;base64,iVBOR...",
                       param=param, code="invalid_image_url")
    mime = (match["mime"] or "image/*").lower()
    if not mime.startswith("image/"):
        raise ApiError(400, f"the data URL holds {mime}, not an image", param=param, code="invalid_image_format")
    data = match["data"].strip()
    approx = len(data) * 3 // 4
    if approx > max_bytes:
        raise ApiError(400, f"the image is {approx} bytes; this server takes at most {max_bytes} bytes per image "
                            f"(resize it or raise --max-image-bytes)", param=param, code="image_too_large")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "the image data URL is not valid base64", param=param,
                       code="invalid_image_url") from None
    if len(raw) > max_bytes:
        raise ApiError(400, f"the image is {len(raw)} bytes; this server takes at most {max_bytes} bytes per image "
                            f"(resize it or raise --max-image-bytes)", param=param, code="image_too_large")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(raw))
            width, height = image.size
            if width * height > max_pixels:
                raise ApiError(400, f"the image is {width}x{height} = {width * height} pixels; this server takes at "
                                    f"most {max_pixels} pixels (resize it or raise --max-image-pixels)",
                               param=param, code="image_too_large")
            image.load()
            return image if image.mode == "RGB" else image.convert("RGB")
    except ApiError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ApiError(400, f"the image is too large to decode safely ({exc}); this server takes at most "
                            f"{max_pixels} pixels", param=param, code="image_too_large") from None
    except UnidentifiedImageError:
        raise ApiError(400, f"the {mime} data is not an image format this server can read (PNG, JPEG, WebP, GIF, "
                            f"BMP...)", param=param, code="invalid_image_format") from None
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise ApiError(400, f"the image could not be decoded: {exc}", param=param,
                       code="invalid_image_format") from None

"""Minimal safetensors reader and writer for torch tensors (stdlib + torch only).

Debian ships no `safetensors` Python package, so this follows the approach of
tests/Core.Tests/Checkpoints/interop/check_safetensors.py (struct + json from the spec) but
decodes straight into torch tensors with torch.frombuffer instead of Python lists:

  8-byte little-endian header length N, N bytes of UTF-8 JSON
  {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
  then the data buffer (little-endian, tensors tiling it without holes or overlaps).

    tensors, metadata = read("model.safetensors")     # {name: torch.Tensor}, {str: str}
    write("out.safetensors", tensors, metadata)

Only the dtypes BnDist and this comparison use are supported (F32, F64, I64, I32, U8).
"""
import json
import struct
import sys

import torch

_DTYPES = {
    "F32": (torch.float32, 4),
    "F64": (torch.float64, 8),
    "I64": (torch.int64, 8),
    "I32": (torch.int32, 4),
    "U8": (torch.uint8, 1),
}
_NAMES = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


class FormatError(ValueError):
    """The file breaks the safetensors format; the message starts with the path."""


def _unique(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"name {key!r} appears twice")
        seen[key] = value
    return seen


def read(path):
    """Returns ({name: tensor}, metadata). Tensors are independent copies, in file order."""
    if sys.byteorder != "little":
        raise RuntimeError("safetensors_io assumes a little-endian host")
    with open(path, "rb") as f:
        blob = f.read()

    def fail(message):
        return FormatError(f"{path}: {message}")

    if len(blob) < 8:
        raise fail(f"file is {len(blob)} bytes, shorter than the header length")
    (n,) = struct.unpack_from("<Q", blob, 0)
    if n > 100_000_000 or n > len(blob) - 8:
        raise fail(f"header length {n} is over the limit or past the end of the file")
    if blob[8:9] != b"{":
        raise fail("header does not start with '{'")
    try:
        header = json.loads(blob[8:8 + n].decode("utf-8"), object_pairs_hook=_unique)
    except (UnicodeDecodeError, ValueError) as e:
        raise fail(f"header is not valid JSON: {e}") from e
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(blob)[8 + n:]

    entries = []
    for name, info in header.items():
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _DTYPES:
            raise fail(f"tensor {name}: dtype {dtype!r} is not supported here (expected one of {', '.join(_DTYPES)})")
        count = 1
        for d in shape:
            count *= d
        begin, end = offsets
        if end - begin != count * _DTYPES[dtype][1] or end > len(data):
            raise fail(f"tensor {name}: data_offsets {offsets} do not fit {dtype} {shape}")
        entries.append((begin, end, name, dtype, shape))
    entries.sort()
    covered = 0
    for begin, end, name, _, _ in entries:
        if begin != covered:
            raise fail(f"tensor {name}: starts at {begin}, expected {covered} (hole or overlap)")
        covered = end
    if covered != len(data):
        raise fail(f"data buffer is {len(data)} bytes, tensors cover {covered}")

    tensors = {}
    for begin, end, name, dtype, shape in entries:
        torch_dtype = _DTYPES[dtype][0]
        if end == begin:
            t = torch.empty(shape, dtype=torch_dtype)
        else:
            # bytearray: frombuffer wants a writable buffer; clone detaches it from the blob.
            t = torch.frombuffer(bytearray(data[begin:end]), dtype=torch_dtype).reshape(shape).clone()
        tensors[name] = t
    return tensors, metadata


def write(path, tensors, metadata=None):
    """Writes {name: tensor} (F32, F64, I64, I32 or U8), sorted by name, with string metadata."""
    header, chunks, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        if t.dtype not in _NAMES:
            raise ValueError(f"tensor {name}: dtype {t.dtype} is not supported")
        raw = bytearray(t.numel() * t.element_size())
        if raw:  # copy through a tensor view of the bytes (no numpy needed)
            torch.frombuffer(raw, dtype=t.dtype).copy_(t.reshape(-1))
        header[name] = {"dtype": _NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # pad so the data starts 8-byte aligned, as the reference writer does
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in chunks:
            f.write(raw)

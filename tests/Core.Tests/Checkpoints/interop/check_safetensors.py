#!/usr/bin/env python3
"""Independent safetensors reader used to cross-check BnDist's C# writer.

Usage: check_safetensors.py FILE

Reads FILE with the standard library only (struct + json), written from the format spec
and sharing no code with the C# side: 8-byte little-endian header length N, N bytes of UTF-8
JSON {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}},
then the data buffer. It checks the spec's rules (header size, '{' first, known dtypes,
end - begin == prod(shape) * size, tensors tiling the buffer with no hole or overlap, unique
names), decodes every tensor little-endian, and prints one JSON object:

  {"reader": ..., "header_length": N, "metadata": {...},
   "tensors": [{"name", "dtype", "shape", "data_offsets", "count", "sum", "wsum"}, ...]}

in file order, where sum = v[0] + v[1] + ... and wsum = 1*v[0] + 2*v[1] + ..., accumulated
left to right in Python floats (exact Python ints for integer dtypes); F8 tensors get null.

If the `safetensors` package happens to be importable, the file is also loaded with
safetensors.numpy.load_file and every array is compared with the values decoded here, and
"reader" says so. Debian bookworm ships no python3-safetensors, hence the pure reader.
A format violation prints "FILE: problem" to stderr and exits 1.
"""
import json
import struct
import sys

# dtype -> (bytes per element, struct code or None when struct cannot decode it)
DTYPES = {
    "BOOL": (1, "?"), "U8": (1, "B"), "I8": (1, "b"), "F8_E5M2": (1, None), "F8_E4M3": (1, None),
    "I16": (2, "h"), "U16": (2, "H"), "F16": (2, "e"), "BF16": (2, None),
    "I32": (4, "i"), "U32": (4, "I"), "F32": (4, "f"),
    "I64": (8, "q"), "U64": (8, "Q"), "F64": (8, "d"),
}
FLOATS = {"F16", "BF16", "F32", "F64"}


class FormatError(Exception):
    pass


def unique_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise FormatError(f"name {key!r} appears twice")
        seen[key] = value
    return seen


def is_count(x):
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def decode(dtype, raw):
    size, code = DTYPES[dtype]
    n = len(raw) // size
    if dtype == "BF16":  # bfloat16 = the upper half of an IEEE single
        halves = struct.unpack(f"<{n}H", raw)
        return list(struct.unpack(f"<{n}f", struct.pack(f"<{n}I", *(h << 16 for h in halves))))
    if code is None:
        return None
    values = list(struct.unpack(f"<{n}{code}", raw))
    return [int(v) for v in values] if dtype == "BOOL" else values


def load(path):
    with open(path, "rb") as f:
        blob = f.read()
    if len(blob) < 8:
        raise FormatError(f"file is {len(blob)} bytes, shorter than the header length")
    (n,) = struct.unpack_from("<Q", blob, 0)
    if n > 100_000_000 or n > len(blob) - 8:
        raise FormatError(f"header length {n} is over the limit or past the end of the file")
    raw = blob[8:8 + n]
    if raw[:1] != b"{":
        raise FormatError("header does not start with '{'")
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=unique_keys)
    except (UnicodeDecodeError, ValueError) as e:
        raise FormatError(f"header is not valid JSON: {e}") from e
    if not isinstance(header, dict):
        raise FormatError("header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise FormatError("__metadata__ must map strings to strings")
    data = blob[8 + n:]
    entries = []
    for name, info in header.items():
        if not isinstance(info, dict):
            raise FormatError(f"tensor {name}: entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in DTYPES:
            raise FormatError(f"tensor {name}: unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(is_count(d) for d in shape):
            raise FormatError(f"tensor {name}: bad shape {shape!r}")
        if not isinstance(offsets, list) or len(offsets) != 2 or not all(is_count(o) for o in offsets):
            raise FormatError(f"tensor {name}: bad data_offsets {offsets!r}")
        count = 1
        for d in shape:
            count *= d
        begin, end = offsets
        if end - begin != count * DTYPES[dtype][0] or end > len(data):
            raise FormatError(f"tensor {name}: data_offsets {offsets} do not fit {dtype} {shape}")
        entries.append((begin, end, name, dtype, shape, count))
    entries.sort()
    covered = 0
    for begin, end, name, *_ in entries:
        if begin != covered:
            raise FormatError(f"tensor {name}: starts at {begin}, expected {covered} (hole or overlap)")
        covered = end
    if covered != len(data):
        raise FormatError(f"data buffer is {len(data)} bytes, tensors cover {covered}")

    tensors = []
    for begin, end, name, dtype, shape, count in entries:
        values = decode(dtype, data[begin:end])
        total = weighted = None
        if values is not None:
            total, weighted = (0.0, 0.0) if dtype in FLOATS else (0, 0)
            for i, v in enumerate(values):
                total += v
                weighted += (i + 1) * v
        tensors.append({"name": name, "dtype": dtype, "shape": shape, "data_offsets": [begin, end],
                        "count": count, "sum": total, "wsum": weighted, "_values": values})
    return {"reader": "pure-python", "header_length": n, "metadata": metadata, "tensors": tensors}


def compare_with_library(path, result):
    try:
        import safetensors
        from safetensors.numpy import load_file
    except ImportError:
        return
    arrays = load_file(path)
    for t in result["tensors"]:
        if t["dtype"] == "BF16" or t["_values"] is None:
            continue  # numpy has no bfloat16 / float8
        arr = arrays[t["name"]]
        if list(arr.shape) != t["shape"] or [v.item() for v in arr.ravel()] != t["_values"]:
            raise FormatError(f"tensor {t['name']}: safetensors library disagrees with the pure reader")
    result["reader"] = f"pure-python, checked against safetensors {safetensors.__version__}"


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = sys.argv[1]
    try:
        result = load(path)
        compare_with_library(path, result)
    except FormatError as e:
        print(f"{path}: {e}", file=sys.stderr)
        return 1
    def dump(value):
        return json.dumps(value, ensure_ascii=False, allow_nan=False)

    print("{")
    for key in ("reader", "header_length", "metadata"):
        print(f" {dump(key)}: {dump(result[key])},")
    rows = [dump({k: v for k, v in t.items() if k != "_values"}) for t in result["tensors"]]
    print(' "tensors": [\n  ' + ",\n  ".join(rows) + "\n ]\n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

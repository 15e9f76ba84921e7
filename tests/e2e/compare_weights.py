#!/usr/bin/python3
"""compare_weights.py A.safetensors B.safetensors [TOL]: the same tensors, and
every one within TOL (default 1e-5) of its scale: max|a - b| / max(max|b|, 1e-12).
Prints the worst tensor and its difference; exit status 1 when they differ."""
import json
import struct
import sys

import numpy as np


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            sys.exit(f"{path}: {name} is {t['dtype']}, not F32")
        b, e = t["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype="<f4").reshape(t["shape"])
    return out


def main():
    a, b = load(sys.argv[1]), load(sys.argv[2])
    tol = float(sys.argv[3]) if len(sys.argv) > 3 else 1e-5
    if sorted(a) != sorted(b):
        sys.exit(f"different tensors: {sorted(set(a) ^ set(b))}")
    worst, where, identical = 0.0, "", True
    for name in sorted(a):
        x, y = a[name].astype(np.float64), b[name].astype(np.float64)
        if x.shape != y.shape:
            sys.exit(f"{name}: shape {x.shape} against {y.shape}")
        identical &= a[name].tobytes() == b[name].tobytes()
        d = float(np.max(np.abs(x - y))) / max(float(np.max(np.abs(y))), 1e-12) if x.size else 0.0
        if not d <= worst:  # NaN counts as the worst
            worst, where = d, name
    print(f"{len(a)} tensors, {'bit-identical' if identical else 'not bit-identical'}, "
          f"worst relative difference {worst:.3g}{' (' + where + ')' if where else ''}")
    sys.exit(0 if worst <= tol else 1)


if __name__ == "__main__":
    main()

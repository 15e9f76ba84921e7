"""Writes a safetensors file of random weights for a model, from the listing
`nnc check MODEL.nn --params` prints (NAME [SHAPE] param|buffer) on standard
input. Batchnorm statistics get values far from init's (mean 0, variance 1),
so that folding them has something to fold: running_mean ~ N(0, 0.5),
running_var ~ U(0.3, 3), weight (gamma) ~ U(0.5, 1.5), bias ~ U(-0.5, 0.5);
other tensors ~ U(-0.4, 0.4).

usage: nnc check M.nn --params | python3 random_weights.py OUT.safetensors [SEED]
"""
import json
import re
import struct
import sys

import numpy as np


def main():
    out = sys.argv[1]
    rng = np.random.default_rng(int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    tensors = []
    for line in sys.stdin:
        m = re.match(r"(\S+) \[([0-9, ]*)\] (param|buffer)", line)
        if not m:
            continue
        name, shape = m.group(1), [int(d) for d in m.group(2).split(",") if d.strip()]
        tensors.append((name, shape))
    names = {n for n, _ in tensors}
    header, blobs, at = {}, [], 0
    for name, shape in tensors:
        stem, leaf = name.rsplit(".", 1) if "." in name else ("", name)
        is_bn = stem + ".running_mean" in names
        if leaf == "running_mean":
            v = rng.normal(0, 0.5, shape)
        elif leaf == "running_var":
            v = rng.uniform(0.3, 3, shape)
        elif is_bn and leaf == "weight":
            v = rng.uniform(0.5, 1.5, shape)
        elif is_bn and leaf == "bias":
            v = rng.uniform(-0.5, 0.5, shape)
        else:
            v = rng.uniform(-0.4, 0.4, shape)
        b = np.asarray(v, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": shape, "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


main()

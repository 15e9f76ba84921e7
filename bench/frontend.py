#!/usr/bin/env python3
"""How long `nnc check` takes on a large model: generates a 200-layer CNN
(conv, batchnorm, relu, residual blocks, then a classifier) and reports the
median wall time of `nnc check` over repeated runs, process start included.
Not a test: machines are shared and noisy, so it reports, it asserts nothing.

usage: python3 bench/frontend.py [path/to/nnc] [layers]
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time


def model(layers):
    lines = ["block res(x, c) {",
             "    h = x -> conv2d(c, kernel=3, pad=1) -> batchnorm -> relu",
             "    return relu(h + x)",
             "}",
             "model big {",
             "    input x: [3, 32, 32]",
             "    target y: class(10)",
             "    h = x -> conv2d(16, kernel=3, pad=1) -> relu"]
    n = 2
    while n + 5 <= layers - 3:
        lines.append("    h = h -> res(16)")      # conv, batchnorm, relu, add, relu
        n += 5
    while n < layers - 3:
        lines.append("    h = h -> relu")
        n += 1
    lines += ["    logits = h -> global_avgpool -> dense(32) -> dense(10)",
              "    output logits",
              "    loss cross_entropy(logits, y)",
              "}"]
    return "\n".join(lines) + "\n", n + 3


def main():
    nnc = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "nnc")
    layers = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    text, count = model(layers)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "big.nn")
        open(path, "w").write(text)
        out = subprocess.run([nnc, "check", path], capture_output=True, text=True, check=True).stdout
        rows = sum(1 for l in out.splitlines() if "(" in l and ")" in l and "[" in l)
        times = []
        for _ in range(30):
            t = time.perf_counter()
            subprocess.run([nnc, "check", path], capture_output=True, check=True)
            times.append((time.perf_counter() - t) * 1000)
        t0 = []
        for _ in range(30):
            t = time.perf_counter()
            subprocess.run(["true"], capture_output=True, check=True)
            t0.append((time.perf_counter() - t) * 1000)
    print(f"nnc check on a {count}-layer model ({rows} summary rows, {len(text.splitlines())} lines):")
    print(f"  median {statistics.median(times):.2f} ms, min {min(times):.2f} ms over {len(times)} runs "
          f"(starting /bin/true costs {statistics.median(t0):.2f} ms here)")


if __name__ == "__main__":
    main()

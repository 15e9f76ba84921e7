#!/usr/bin/python3
"""PyTorch's side of bench/train.py: the training speed of one example model.

The model is the example's PyTorch twin (tests/torch/param_counts.py, whose
names and shapes are checked against nnc), trained as a user would write it
(zero_grad, forward, loss, backward, step) on batches gathered from tensors
already in memory, in a shuffled order, as nnc's driver does with --bench:
the same number of untimed warm-up steps (a tenth, at least 2), then the
timed steps (fewer if they pass CAP). Prints one line: "torch: S samples/s, M ms/step ...".

The caller holds PyTorch to T threads: torch.set_num_threads(T) here, and
OMP_NUM_THREADS / MKL_NUM_THREADS / OPENBLAS_NUM_THREADS in the environment
(they must be set before torch is imported, so bench/train.py sets them).

usage: /usr/bin/python3 bench/torch_train.py MODEL OPTIMIZER THREADS STEPS BATCH
       MODEL: mlp, lenet, resnet_mini, unet_tiny; OPTIMIZER: adam or sgd-momentum
"""
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "torch"))
from param_counts import EXAMPLES  # noqa: E402

FASHION = "/usr/share/datasets/fashion-mnist"
CAP = 30  # seconds: the timed steps stop early past this, so a run starved by other jobs cannot stall the bench


def idx(name, offset):
    with gzip.open(os.path.join(FASHION, name)) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def data(model):
    """the whole training set as float32 tensors, scaled as nnc's loader does"""
    if model == "unet_tiny":
        d = os.path.join(ROOT, "examples", "shapes")
        return (torch.from_numpy(np.load(os.path.join(d, "train-x.npy"))),
                torch.from_numpy(np.load(os.path.join(d, "train-y.npy"))))
    x = idx("train-images-idx3-ubyte.gz", 16).astype(np.float32) / 255
    y = idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64)
    shape = (-1, 784) if model == "mlp" else (-1, 1, 28, 28)
    return torch.from_numpy(x.reshape(shape)), torch.from_numpy(y)


def main():
    model_name, opt_name, threads, steps, batch = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    torch.set_num_threads(threads)
    torch.manual_seed(1)
    x, y = data(model_name)
    model = EXAMPLES[model_name]()
    model.train()
    if opt_name == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = F.binary_cross_entropy_with_logits if model_name == "unet_tiny" else F.cross_entropy
    warm = max(2, steps // 10)
    order, at, samples = torch.randperm(len(x)), 0, 0
    timed, t0 = 0, time.perf_counter()
    for s in range(warm + steps):
        if s > warm and time.perf_counter() - t0 > CAP:
            break
        if at >= len(x):
            order, at = torch.randperm(len(x)), 0
        if s == warm:
            t0 = time.perf_counter()
        i = order[at:at + batch]
        at += batch
        opt.zero_grad()
        loss = loss_fn(model(x[i]), y[i])
        loss.backward()
        opt.step()
        samples += len(i) if s >= warm else 0
        timed += s >= warm
    loss = loss.item()  # the last step's loss, which also waits for its work
    secs = time.perf_counter() - t0
    print(f"torch: {samples / secs:.1f} samples/s, {1000 * secs / timed:.3f} ms/step, threads "
          f"{torch.get_num_threads()} (last loss {loss:.4f})")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch parity of training: nnc's emitted C against torch 1.13.

For each case, the same model is built in PyTorch and in the nn language;
PyTorch's initial weights are written as safetensors, both sides train the
same batches in the same order for a few steps (the generated program with
--init, --no-shuffle, --save), and every parameter must agree afterwards:

    max |nnc - torch| / max |torch|  <  1e-5      for each tensor

(relative to the tensor's scale: an element-wise ratio would divide by
numbers near zero). The distances of nnc and of PyTorch
float32 to PyTorch float64 are printed beside it (see OPTIMIZERS on eps). The cases: the example MLP with every optimizer, with
L1/L2 regularization off and on; then each activation and each loss alone in
a small network.

usage: /usr/bin/python3 tests/torch/parity.py path/to/nnc path/to/libnnrt.a [filter]
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOL = 1e-5
CC = os.environ.get("CC", "cc")
# the sanitized suite passes its flags, so generated programs link with the sanitized runtime
EXTRA = os.environ.get("PARITY_CFLAGS", "").split()


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        data = t.detach().to(torch.float32).contiguous().numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [at, at + len(data)]}
        blobs.append(data)
        at += len(data)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def read_safetensors(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(raw[8 + n + b:8 + n + e], dtype="<f4").reshape(info["shape"])
    return out


def build(tmp, name, source, nnc, lib):
    nn_path = os.path.join(tmp, name + ".nn")
    open(nn_path, "w").write(source)
    c_path = os.path.join(tmp, name + ".c")
    r = subprocess.run([nnc, nn_path, "-o", c_path, "--main"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"nnc failed on {name}:\n{r.stderr}")
    exe = os.path.join(tmp, name)
    r = subprocess.run([CC, "-std=c99", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", *EXTRA,
                        "-I" + os.path.join(ROOT, "runtime"), c_path, lib, "-lz", "-lm", "-o", exe],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"cc failed on {name}:\n{r.stderr}")
    return exe


def fashion_mnist(n):
    """the first n training images of Fashion-MNIST, scaled to [0, 1] as nnc's loader does"""
    import gzip
    with gzip.open("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") as f:
        raw = f.read(16 + 784 * n)
    pixels = np.frombuffer(raw[16:], dtype=np.uint8).reshape(n, 784)
    return torch.from_numpy(pixels.astype(np.float32) / 255)


class Net(nn.Module):
    """dense layers named dense1, dense2, ... with a function between them"""

    def __init__(self, sizes, act):
        super().__init__()
        for i in range(len(sizes) - 1):
            setattr(self, f"dense{i + 1}", nn.Linear(sizes[i], sizes[i + 1]))
        self.n = len(sizes) - 1
        self.act = act

    def forward(self, x):
        for i in range(self.n):
            x = getattr(self, f"dense{i + 1}")(x)
            if i < self.n - 1:
                x = self.act(x)
        return x


def torch_optimizer(spec, params):
    kind, args = spec
    if kind == "sgd":
        return torch.optim.SGD(params, **args)
    if kind == "adagrad":
        return torch.optim.Adagrad(params, **args)
    if kind == "rmsprop":
        return torch.optim.RMSprop(params, **args)
    if kind == "adam":
        return torch.optim.Adam(params, lr=args["lr"], betas=(args.get("beta1", 0.9), args.get("beta2", 0.999)),
                                eps=args.get("eps", 1e-8))
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=args["lr"], weight_decay=args.get("weight_decay", 0.01),
                                 eps=args.get("eps", 1e-8))
    raise ValueError(kind)


def nn_optimizer(spec):
    kind, args = spec
    parts = [f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in args.items()]
    return f"{kind}({', '.join(parts)})"


def run_case(tmp, name, sizes, act_nn, act_torch, loss_nn, loss_torch, target, opt, l1=0.0, l2=0.0,
             steps=5, batch=16, nnc=None, lib=None):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    model = Net(sizes, act_torch)
    k = sizes[-1]
    n = steps * batch
    x = fashion_mnist(n) if sizes[0] == 784 else torch.randn(n, sizes[0])
    if target == "class":
        y = torch.randint(0, k, (n,))
        target_decl = f"class({k})"
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.int64))
    elif target == "prob":
        y = torch.softmax(torch.randn(n, k), 1)
        target_decl = f"[{k}]"
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.float32))
    elif target == "binary":
        y = (torch.rand(n, k) > 0.5).float()
        target_decl = f"[{k}]"
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.float32))
    else:
        y = torch.randn(n, k)
        target_decl = f"[{k}]"
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.float32))
    np.save(os.path.join(tmp, name + "_x.npy"), x.numpy().astype(np.float32))
    chain = " -> ".join(f"dense({s})" + (f" -> {act_nn}" if i < len(sizes) - 2 else "")
                        for i, s in enumerate(sizes[1:]))
    reg = (f"\n    l1 = {l1!r}" if l1 else "") + (f"\n    l2 = {l2!r}" if l2 else "")
    source = (f"model {name} {{\n    input x: [{sizes[0]}]\n    target y: {target_decl}\n"
              f"    p = x -> {chain}\n    output p\n    loss {loss_nn}\n}}\n"
              f"train {{\n    optimizer = {nn_optimizer(opt)}\n    batch = {batch}{reg}\n}}\n")
    exe = build(tmp, name, source, nnc, lib)
    w0, w1 = os.path.join(tmp, name + "_w0.st"), os.path.join(tmp, name + "_w1.st")
    write_safetensors(w0, model.state_dict())
    data = os.path.join(tmp, name + "_x.npy") + "," + os.path.join(tmp, name + "_y.npy")
    r = subprocess.run([exe, "--data", data, "--init", w0, "--save", w1, "--no-shuffle", "--epochs", "1",
                        "--batch", str(batch), "--quiet"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{name}: the generated program failed:\n{r.stdout}{r.stderr}")

    init = {k: v.clone() for k, v in model.state_dict().items()}
    ref32 = torch_train(model, init, x, y, loss_torch, opt, l1, l2, steps, batch, torch.float32)
    ref64 = torch_train(model, init, x, y, loss_torch, opt, l1, l2, steps, batch, torch.float64)
    ours = read_safetensors(w1)
    worst = (0.0, 0.0, 0.0, "")
    for key in ref32:
        a, b, c = ours[key].astype(np.float64), ref32[key], ref64[key]
        scale = max(np.max(np.abs(b)), 1e-30)
        vs32 = float(np.max(np.abs(a - b)) / scale)
        if vs32 > worst[0]:
            worst = (vs32, float(np.max(np.abs(a - c)) / scale), float(np.max(np.abs(b - c)) / scale), key)
    return worst


def torch_train(model, init, x, y, loss_torch, opt, l1, l2, steps, batch, dtype):
    """trains a copy of model in dtype; returns its final state_dict as float64 arrays"""
    model.load_state_dict(init)
    model.to(dtype)
    x = x.to(dtype)
    y = y if y.dtype == torch.int64 else y.to(dtype)
    optim = torch_optimizer(opt, model.parameters())
    for s in range(steps):
        xb, yb = x[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
        optim.zero_grad()
        loss = loss_torch(model(xb), yb)
        weights = [p for nm, p in model.named_parameters() if nm.endswith("weight")]
        if l2:
            loss = loss + l2 / 2 * sum((w * w).sum() for w in weights)
        if l1:
            loss = loss + l1 * sum(w.abs().sum() for w in weights)
        loss.backward()
        optim.step()
    out = {k: v.detach().to(torch.float64).numpy().copy() for k, v in model.state_dict().items()}
    model.to(torch.float32)
    return out


ACTS = {
    "relu": ("relu", F.relu),
    "leaky_relu": ("leaky_relu(slope=0.2)", lambda v: F.leaky_relu(v, 0.2)),
    "elu": ("elu(alpha=0.7)", lambda v: F.elu(v, 0.7)),
    "sigmoid": ("sigmoid", torch.sigmoid),
    "tanh": ("tanh", torch.tanh),
    "softplus": ("softplus", F.softplus),
    "gelu": ("gelu", F.gelu),
    "softmax": ("softmax", lambda v: F.softmax(v, 1)),
    "log_softmax": ("log_softmax", lambda v: F.log_softmax(v, 1)),
}

LOSSES = {
    "cross_entropy": ("cross_entropy(p, y)", F.cross_entropy, "class"),
    "cross_entropy_prob": ("cross_entropy(p, y)", F.cross_entropy, "prob"),
    "bce": ("bce(p, y)", F.binary_cross_entropy_with_logits, "binary"),
    "mse": ("mse(p, y)", F.mse_loss, "real"),
    "mae": ("mae(p, y)", F.l1_loss, "real"),
    "rmse": ("rmse(p, y)", lambda p, t: torch.sqrt(F.mse_loss(p, t)), "real"),
    "sum_of_losses": ("mse(p, y) + 0.5 * mae(p, y)", lambda p, t: F.mse_loss(p, t) + 0.5 * F.l1_loss(p, t), "real"),
}

# Adaptive methods divide by sqrt(v) + eps. With the default eps (1e-8, 1e-10)
# an element whose exact gradient is ~0 gets an update decided by rounding
# noise: there PyTorch float32 differs from PyTorch float64 by up to 1e-3..0.5
# of the tensor's scale (measured), so no float32 implementation can match it
# to 1e-5. With eps = 1e-3 (adagrad 1e-2, whose sum is not averaged) every
# update is well conditioned, and a misplaced eps would show at once.
OPTIMIZERS = {
    "sgd": ("sgd", {"lr": 0.05}),
    "sgd_momentum": ("sgd", {"lr": 0.05, "momentum": 0.9}),
    "nesterov": ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    "adagrad": ("adagrad", {"lr": 0.01, "eps": 1e-2}),
    "rmsprop": ("rmsprop", {"lr": 0.001, "eps": 1e-3}),
    "rmsprop_momentum": ("rmsprop", {"lr": 0.001, "momentum": 0.8, "eps": 1e-3}),
    "adam": ("adam", {"lr": 0.001, "eps": 1e-3}),
    "adamw": ("adamw", {"lr": 0.001, "weight_decay": 0.05, "eps": 1e-3}),
}


def cases():
    mlp = [784, 256, 128, 10]
    for oname, opt in OPTIMIZERS.items():
        for reg in (False, True):
            l1, l2 = (1e-4, 1e-3) if reg else (0.0, 0.0)
            yield (f"mlp_{oname}{'_l1l2' if reg else ''}", dict(
                sizes=mlp, act_nn="relu", act_torch=F.relu, loss_nn="cross_entropy(p, y)",
                loss_torch=F.cross_entropy, target="class", opt=opt, l1=l1, l2=l2))
    for aname, (a_nn, a_t) in ACTS.items():
        yield (f"act_{aname}", dict(sizes=[12, 8, 4], act_nn=a_nn, act_torch=a_t, loss_nn="mse(p, y)",
                                    loss_torch=F.mse_loss, target="real", opt=("sgd", {"lr": 0.1}), steps=3))
    for lname, (l_nn, l_t, tgt) in LOSSES.items():
        yield (f"loss_{lname}", dict(sizes=[12, 6, 5], act_nn="tanh", act_torch=torch.tanh, loss_nn=l_nn,
                                     loss_torch=l_t, target=tgt, opt=("sgd", {"lr": 0.1}), steps=3))


def run_all(label, runs, only, width=26):
    """Runs each (name, run) whose name holds `only`; run(tmp) returns the
    distances (nnc vs torch f32, nnc vs f64, torch f32 vs f64, worst tensor).
    Prints a line per case and 'LABEL: N passed, M failed', and exits."""
    passed = failed = 0
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs:
            if only not in name:
                continue
            try:
                vs32, vs64, t32, where = run(tmp)
            except RuntimeError as e:
                print(f"FAIL {name}: {e}")
                failed += 1
                continue
            ok = vs32 < TOL
            print(f"{'ok  ' if ok else 'FAIL'} {name:{width}s} vs torch f32 {vs32:.1e}   vs f64: nnc {vs64:.1e}, "
                  f"torch f32 {t32:.1e}  ({where})")
            passed += ok
            failed += not ok
    print(f"{label}: {passed} passed, {failed} failed ({time.time() - start:.0f} s)")
    sys.exit(1 if failed else 0)


def main():
    nnc = os.path.abspath(sys.argv[1])
    lib = os.path.abspath(sys.argv[2])
    only = sys.argv[3] if len(sys.argv) > 3 else ""
    torch.set_num_threads(1)
    run_all("parity", ((name, lambda tmp, name=name, kw=kw: run_case(tmp, name, nnc=nnc, lib=lib, **kw))
                       for name, kw in cases()), only)

if __name__ == "__main__":
    main()

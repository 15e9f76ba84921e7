#!/usr/bin/python3
"""PyTorch parity of the example CNNs, whole: nnc's emitted C against torch 1.13.

lenet, resnet_mini and unet_tiny, compiled from examples/*.nn as they are (only
the train section is replaced: adam with the eps below, the batch size), and
their PyTorch twins from tests/torch/param_counts.py, whose state_dict names
and shapes param_counts.py checks against nnc. PyTorch's initial weights go to
safetensors; both sides take 5 adam steps (lr 1e-3) on the same batches in
order (the generated program with --init --no-shuffle --save --quiet):
Fashion-MNIST images and labels for lenet and resnet_mini, the synthetic
shapes set (examples/shapes.c, built here) for unet_tiny. PyTorch trains
twice, in float32 and in float64, and afterwards every parameter and every
batchnorm running_mean and running_var of nnc must agree with PyTorch
float64:

    max |nnc - torch f64| / max |torch f64|  <  max(1e-4, 2 * floor)   for each tensor

where floor is how far float64 itself moves when its initial weights are
perturbed by one float32 rounding (see NOISE): 0 for most tensors, about 1e-3
for some batchnorm biases of resnet_mini, whose 5-step trajectory is that
sensitive. The distances of nnc to PyTorch float32 and of PyTorch float32 to
float64 are printed beside it. Why float64 is the oracle here, and why eps is
1e-3: see EPS.

usage: /usr/bin/python3 tests/torch/parity_models.py path/to/nnc path/to/libnnrt.a [filter]
"""
import gzip
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from param_counts import LeNet, ResNetMini, UNetTiny  # noqa: E402
from parity import CC, ROOT, build, fashion_mnist, read_safetensors, write_safetensors  # noqa: E402

TOL = 1e-4
STEPS, LR = 5, 1e-3

# Adam divides by sqrt(v) + eps. With the default eps (1e-8) an element whose
# exact gradient is ~0 gets an update of about lr * sign(rounding noise): every
# convolution bias of resnet_mini is followed by batchnorm, which cancels it,
# so its exact gradient is 0 (1e-15 in float64) while float32 gets 1e-6..4e-6 of
# noise. Measured with this script (PARITY_EPS=1e-8), the worst tensor's
# distance to PyTorch float64 after 5 steps, relative to its scale:
#     eps 1e-8:  lenet   torch f32 3.0e-5, nnc 4.1e-5  (dense1.weight)
#                resnet  torch f32 5.6e-2, nnc 2.0e-2  (conv2.bias of the bottlenecks)
#                unet    torch f32 4.9e-7, nnc 1.9e-7
#     eps 1e-3:  lenet   torch f32 1.6e-7, nnc 1.7e-7
#                resnet  torch f32 2.0e-3, nnc 1.6e-5  (bottleneck1.bn2.bias, .bn1.bias)
#                unet    torch f32 1.7e-7, nnc 1.7e-7
# So the default eps is ill-conditioned (no float32 implementation can be
# held to 1e-4 on resnet_mini), and the asserted runs use eps 1e-3. Even then PyTorch
# float32 drifts from float64 on resnet_mini: the float32 noise in the
# cancelled conv-bias gradients moves those biases by ~3e-6 per step, and the
# batchnorm biases, which start at 0 and have moved only a few lr steps
# (scale 4e-3), differ by as much, 1e-3 of their scale (the drift is the
# trajectory's, not one step's: from the same parameters PyTorch float32's
# gradients of those biases are within 2e-8 of float64's). nnc stays within
# 2e-5 of float64, so float64 is the reference every tensor is held to.
EPS = 1e-3

# Even at eps 1e-3 a few tensors of resnet_mini are ill-conditioned after 5
# steps: PyTorch float64 started from weights multiplied by (1 + 1e-7 r), r
# standard normal (one float32 rounding), ends 0.9e-3 and 2.0e-3 of their
# scale away from the unperturbed run on bottleneck1's batchnorm biases in two
# of three trials (measured). A different but equally exact float32 summation
# order (nnc's convolution weight gradients summed per thread slot) lands as
# far. So each tensor's tolerance is widened to twice that floor, measured
# here by NOISE perturbed float64 runs; every other tensor stays at 1e-4.
# Three runs were too few to find the floor: with the dot products summing
# 16 lanes instead of 8 (k >= 256, AVX-512), nnc landed 2.1e-3 from float64
# on bn1.bias, whose floor three runs put at 0.9e-3 and ten at 1.5e-3.
NOISE, NOISE_REL = 10, 1e-7

FASHION = "/usr/share/datasets/fashion-mnist"


def fashion_labels(n):
    with gzip.open(os.path.join(FASHION, "train-labels-idx1-ubyte.gz")) as f:
        raw = f.read(8 + n)
    return torch.from_numpy(np.frombuffer(raw[8:], dtype=np.uint8).astype(np.int64))


def fashion(tmp, n):
    x = fashion_mnist(n).reshape(n, 1, 28, 28)
    y = fashion_labels(n)
    return x, y, y.numpy()


def shapes(tmp, n):
    """n samples of the synthetic set, from the project's own generator"""
    exe = os.path.join(tmp, "gen-shapes")
    if not os.path.exists(exe):
        r = subprocess.run([CC, "-std=c99", "-O2", os.path.join(ROOT, "examples", "shapes.c"), "-o", exe],
                           capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(f"cannot build examples/shapes.c:\n{r.stderr}")
    out = os.path.join(tmp, "shapes")
    subprocess.run([exe, "--out", out, "--train", str(n), "--test", "1", "--seed", "3"], check=True,
                   capture_output=True)
    x = torch.from_numpy(np.load(os.path.join(out, "train-x.npy")))
    y = torch.from_numpy(np.load(os.path.join(out, "train-y.npy")))
    return x, y, y.numpy()


MODELS = {  # example, PyTorch twin, data, loss, batch
    "lenet": (LeNet, fashion, F.cross_entropy, 16),
    "resnet_mini": (ResNetMini, fashion, F.cross_entropy, 16),
    "unet_tiny": (UNetTiny, shapes, F.binary_cross_entropy_with_logits, 16),
}


def state(model):
    """the state_dict nnc reads and writes: parameters and running statistics"""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def torch_train(model, init, x, y, loss_fn, eps, batch, dtype):
    model.load_state_dict(init, strict=False)
    model.to(dtype).train()
    x = x.to(dtype)
    y = y if y.dtype == torch.int64 else y.to(dtype)
    opt = torch.optim.Adam(model.parameters(), lr=LR, eps=eps)
    for s in range(STEPS):
        opt.zero_grad()
        loss_fn(model(x[s * batch:(s + 1) * batch]), y[s * batch:(s + 1) * batch]).backward()
        opt.step()
    out = {k: v.detach().to(torch.float64).numpy().copy() for k, v in state(model).items()}
    model.to(torch.float32)
    return out


def source(name, eps, batch):
    """the example with its train section replaced"""
    text = open(os.path.join(ROOT, "examples", name + ".nn")).read()
    train = f"train {{\n    optimizer = adam(lr={LR}, eps={eps})\n    batch = {batch}\n}}\n"
    text, n = re.subn(r"^train\s*\{.*?^\}\s*", train, text, flags=re.S | re.M)
    if n != 1:
        raise RuntimeError(f"examples/{name}.nn: expected one train section, found {n}")
    return text


def run_case(tmp, name, eps, nnc, lib):
    twin, data, loss_fn, batch = MODELS[name]
    torch.manual_seed(11)
    model = twin()
    n = STEPS * batch
    x, y, y_np = data(tmp, n)
    tag = f"{name}_eps{eps:g}"
    xp, yp = os.path.join(tmp, tag + "_x.npy"), os.path.join(tmp, tag + "_y.npy")
    np.save(xp, x.numpy().astype(np.float32))
    np.save(yp, y_np)
    exe = build(tmp, tag, source(name, eps, batch), nnc, lib)
    w0, w1 = os.path.join(tmp, tag + "_w0.st"), os.path.join(tmp, tag + "_w1.st")
    start = {k: v.clone() for k, v in state(model).items()}
    write_safetensors(w0, start)
    r = subprocess.run([exe, "--data", xp + "," + yp, "--init", w0, "--save", w1, "--no-shuffle", "--epochs", "1",
                        "--batch", str(batch), "--quiet", "--checkpoint", os.path.join(tmp, tag + ".ckpt")],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{tag}: the generated program failed:\n{r.stdout}{r.stderr}")
    ref32 = torch_train(model, start, x, y, loss_fn, eps, batch, torch.float32)
    ref64 = torch_train(model, start, x, y, loss_fn, eps, batch, torch.float64)
    floor = {k: 0.0 for k in ref64}
    g = torch.Generator().manual_seed(5)
    for _ in range(NOISE):
        pert = {k: (v.double() * (1 + NOISE_REL * torch.randn(v.shape, generator=g, dtype=torch.float64))).to(v.dtype)
                for k, v in start.items()}
        r = torch_train(model, pert, x, y, loss_fn, eps, batch, torch.float64)
        for k in ref64:
            floor[k] = max(floor[k], float(np.max(np.abs(r[k] - ref64[k]))))
    ours = read_safetensors(w1)
    if set(ours) != set(ref32):
        raise RuntimeError(f"{tag}: nnc saved {sorted(ours)}, PyTorch has {sorted(ref32)}")
    worst = {"nnc_vs_f32": (0.0, ""), "nnc_vs_f64": (0.0, ""), "f32_vs_f64": (0.0, ""), "floor": (0.0, "")}
    bad = []
    for key in ref32:
        a, b, c = ours[key].astype(np.float64), ref32[key], ref64[key]
        if np.max(np.abs(b - start[key].numpy())) == 0:
            raise RuntimeError(f"{tag}: {key} did not change in PyTorch: the case checks nothing there")
        scale = max(np.max(np.abs(b)), 1e-30)
        for what, d in (("nnc_vs_f32", a - b), ("nnc_vs_f64", a - c), ("f32_vs_f64", b - c)):
            v = float(np.max(np.abs(d)) / scale)
            if v >= worst[what][0]:
                worst[what] = (v, key)
        fl = floor[key] / scale
        worst["floor"] = max(worst["floor"], (fl, key))
        if float(np.max(np.abs(a - c)) / scale) >= max(TOL, 2 * fl):
            bad.append(f"{key} {float(np.max(np.abs(a - c)) / scale):.1e} (floor {fl:.1e})")
    worst["bad"] = bad
    return worst


def main():
    nnc = os.path.abspath(sys.argv[1])
    lib = os.path.abspath(sys.argv[2])
    only = sys.argv[3] if len(sys.argv) > 3 else ""
    eps = float(os.environ.get("PARITY_EPS", EPS))  # PARITY_EPS=1e-8 measures the default (see EPS)
    torch.set_num_threads(1)
    passed = failed = 0
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for name in MODELS:
            if only not in name:
                continue
            t0 = time.time()
            try:
                w = run_case(tmp, name, eps, nnc, lib)
            except RuntimeError as e:
                print(f"FAIL {name}: {e}")
                failed += 1
                continue
            ok = not w["bad"]
            print(f"{'ok  ' if ok else 'FAIL'} {name:12s} eps {eps:g}: vs torch f64 {w['nnc_vs_f64'][0]:.1e} "
                  f"({w['nnc_vs_f64'][1]});  torch f32 vs f64 {w['f32_vs_f64'][0]:.1e} ({w['f32_vs_f64'][1]}), "
                  f"nnc vs torch f32 {w['nnc_vs_f32'][0]:.1e};  float64 noise floor {w['floor'][0]:.1e} ({w['floor'][1]});  "
                  f"{time.time() - t0:.0f} s" + "".join("\n     beyond tolerance: " + b for b in w["bad"]))
            passed += ok
            failed += not ok
    print(f"parity_models: {passed} passed, {failed} failed ({time.time() - start:.0f} s)")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""PyTorch parity of pooling, batchnorm, concat and up-sampling: nnc's emitted C against torch 1.13.

As tests/torch/parity.py (whose helpers this imports): per case a tiny model in
the nn language and its PyTorch twin with the same state_dict names; PyTorch's
initial weights go to safetensors, both sides train the same batches in order
for a few SGD steps (the generated program with --init --no-shuffle --save),
and afterwards every parameter and every batchnorm running_mean and
running_var must agree:

    max |nnc - torch| / max |torch|  <  1e-5      for each tensor

Each op sits between parameters (a convolution or dense layer before it, a
dense layer after it), so the parameters before it see its backward and those
after it its forward. The batchnorm cases compare the running statistics after
the steps (momentum, unbiased variance). The maxpool "ties" case starts from
integer weights on integer images, so many windows hold several exact maxima
and the gradient must go to the first of them, as PyTorch's CPU kernel does.

usage: /usr/bin/python3 tests/torch/parity_cnn.py path/to/nnc path/to/libnnrt.a [filter]
"""
import os
import subprocess
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity import build, read_safetensors, run_all, write_safetensors  # noqa: E402


class Twin(nn.Module):
    """named layers, and a forward function of (model, x)"""

    def __init__(self, fwd, **layers):
        super().__init__()
        for name, layer in layers.items():
            setattr(self, name, layer)
        self.fwd = fwd

    def forward(self, x):
        return self.fwd(self, x)


def state(model):
    """the state_dict nnc reads and writes: parameters and running statistics"""
    return {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def torch_train(model, init, x, y, loss_fn, lr, steps, batch, dtype):
    model.load_state_dict(init, strict=False)
    model.to(dtype).train()
    x = x.to(dtype)
    y = y if y.dtype == torch.int64 else y.to(dtype)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    for s in range(steps):
        opt.zero_grad()
        loss_fn(model(x[s * batch:(s + 1) * batch]), y[s * batch:(s + 1) * batch]).backward()
        opt.step()
    out = {k: v.detach().to(torch.float64).numpy().copy() for k, v in state(model).items()}
    model.to(torch.float32)
    return out


def run_case(tmp, name, body, twin, shape, classes, nnc, lib, lr=0.1, steps=3, batch=8, data=None, init=None):
    """body: the model's statements defining p from x; twin: the PyTorch model;
    classes: K for class labels and cross_entropy, or None for mse on [4] targets"""
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    model = twin()
    if init:
        init(model)
    n = steps * batch
    x = data(n) if data else torch.randn(n, *shape)
    if classes:
        y = torch.randint(0, classes, (n,))
        decl, loss_nn, loss_fn = f"class({classes})", "cross_entropy(p, y)", F.cross_entropy
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.int64))
    else:
        y = torch.randn(n, 4)
        decl, loss_nn, loss_fn = "[4]", "mse(p, y)", F.mse_loss
        np.save(os.path.join(tmp, name + "_y.npy"), y.numpy().astype(np.float32))
    np.save(os.path.join(tmp, name + "_x.npy"), x.numpy().astype(np.float32))
    dims = ", ".join(str(d) for d in shape)
    source = (f"model {name} {{\n    input x: [{dims}]\n    target y: {decl}\n{body}"
              f"    output p\n    loss {loss_nn}\n}}\n"
              f"train {{\n    optimizer = sgd(lr={lr})\n    batch = {batch}\n}}\n")
    exe = build(tmp, name, source, nnc, lib)
    w0, w1 = os.path.join(tmp, name + "_w0.st"), os.path.join(tmp, name + "_w1.st")
    start = state(model)
    write_safetensors(w0, start)
    data_arg = os.path.join(tmp, name + "_x.npy") + "," + os.path.join(tmp, name + "_y.npy")
    r = subprocess.run([exe, "--data", data_arg, "--init", w0, "--save", w1, "--no-shuffle", "--epochs", "1",
                        "--batch", str(batch), "--quiet"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{name}: the generated program failed:\n{r.stdout}{r.stderr}")
    start = {k: v.clone() for k, v in start.items()}
    ref32 = torch_train(model, start, x, y, loss_fn, lr, steps, batch, torch.float32)
    ref64 = torch_train(model, start, x, y, loss_fn, lr, steps, batch, torch.float64)
    ours = read_safetensors(w1)
    if set(ours) != set(ref32):
        raise RuntimeError(f"{name}: nnc saved {sorted(ours)}, PyTorch has {sorted(ref32)}")
    worst = (0.0, 0.0, 0.0, "")
    for key in ref32:
        a, b, c = ours[key].astype(np.float64), ref32[key], ref64[key]
        if np.max(np.abs(b - start[key].numpy())) == 0:
            raise RuntimeError(f"{name}: {key} did not change in PyTorch: the case checks nothing there")
        scale = max(np.max(np.abs(b)), 1e-30)
        vs32 = float(np.max(np.abs(a - b)) / scale)
        if vs32 > worst[0] or not worst[3]:
            worst = (vs32, float(np.max(np.abs(a - c)) / scale), float(np.max(np.abs(b - c)) / scale), key)
    return worst


# ---- the cases ----

def conv(cin, cout, k=3, pad=1, bias=True):
    return nn.Conv2d(cin, cout, k, padding=pad, bias=bias)


def image_case(op_nn, op_torch, out_hw, shape=(2, 8, 8), filters=3):
    """x -> conv1 (3x3, pad 1) -> relu -> OP -> flatten -> dense1, cross_entropy over 5 classes"""
    body = (f"    p = x -> conv2d({filters}, kernel=3, pad=1) -> relu -> {op_nn} -> flatten -> dense(5)\n")
    feats = filters * out_hw[0] * out_hw[1]

    def twin():
        return Twin(lambda m, x: m.dense1(torch.flatten(op_torch(F.relu(m.conv1(x))), 1)),
                    conv1=conv(shape[0], filters), dense1=nn.Linear(feats, 5))
    return dict(body=body, twin=twin, shape=shape, classes=5)


POOLS = [  # nn arguments, PyTorch kernel, stride, padding, output size on 8x8
    ("2", 2, 2, 0, (4, 4)),
    ("3, stride=1", 3, 1, 0, (6, 6)),
    ("3, stride=2, pad=1", 3, 2, 1, (4, 4)),
    ("2, stride=3", 2, 3, 0, (3, 3)),
    ("[3, 2], stride=[2, 1], pad=[1, 0]", (3, 2), (2, 1), (1, 0), (4, 7)),
]


def ties_data(n):
    return torch.randint(0, 3, (n, 1, 8, 8)).float()


def ties_init(model):
    """integer weights: every window sum is exact, so equal maxima are exactly equal"""
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        model.conv1.weight.copy_(torch.randint(-1, 2, model.conv1.weight.shape, generator=g).float())
        model.conv1.bias.zero_()


def cases():
    for i, (args, k, s, pad, hw) in enumerate(POOLS):
        yield f"maxpool{i}", image_case(f"maxpool({args})", lambda v, k=k, s=s, p=pad: F.max_pool2d(v, k, s, p), hw)
    for i, (args, k, s, pad, hw) in enumerate(POOLS):
        yield f"avgpool{i}", image_case(f"avgpool({args})", lambda v, k=k, s=s, p=pad: F.avg_pool2d(v, k, s, p), hw)
    for i, (args, k, s, pad, hw) in enumerate(POOLS[:3]):
        case = image_case(f"maxpool({args})", lambda v, k=k, s=s, p=pad: F.max_pool2d(v, k, s, p), hw,
                          shape=(1, 8, 8), filters=2)
        yield f"maxpool_ties{i}", dict(case, data=ties_data, init=ties_init)
    # rows of 11 and 20 windows: lower.c runs them in chunks of 8 that overlap (chunked_open)
    for i, (args, k, s, hw) in enumerate([("2", 2, 2, (2, 11)), ("3, stride=1", 3, 1, (2, 20))]):
        yield f"maxpool_wide{i}", image_case(f"maxpool({args})", lambda v, k=k, s=s: F.max_pool2d(v, k, s), hw,
                                             shape=(2, 4, 22))
        yield f"avgpool_wide{i}", image_case(f"avgpool({args})", lambda v, k=k, s=s: F.avg_pool2d(v, k, s), hw,
                                             shape=(2, 4, 22))
        case = image_case(f"maxpool({args})", lambda v, k=k, s=s: F.max_pool2d(v, k, s), hw,
                          shape=(1, 4, 22), filters=2)
        yield f"maxpool_wide_ties{i}", dict(case, data=lambda n: torch.randint(0, 3, (n, 1, 4, 22)).float(),
                                            init=ties_init)

    yield "global_avgpool", dict(
        body="    p = x -> conv2d(4, kernel=3, pad=1) -> relu -> global_avgpool -> dense(4)\n",
        twin=lambda: Twin(lambda m, x: m.dense1(F.relu(m.conv1(x)).mean((2, 3))),
                          conv1=conv(2, 4), dense1=nn.Linear(4, 4)),
        shape=(2, 6, 5), classes=None)

    for tag, args, kw in (("", "", {}), ("_momentum_eps", "(momentum=0.3, eps=0.01)", dict(momentum=0.3, eps=0.01))):
        yield f"batchnorm_image{tag}", dict(
            body=f"    p = x -> conv2d(3, kernel=3, pad=1, bias=false) -> batchnorm{args} -> relu -> flatten -> dense(5)\n",
            twin=lambda kw=kw: Twin(lambda m, x: m.dense1(torch.flatten(F.relu(m.bn1(m.conv1(x))), 1)),
                                    conv1=conv(2, 3, bias=False), bn1=nn.BatchNorm2d(3, **kw),
                                    dense1=nn.Linear(3 * 6 * 5, 5)),
            shape=(2, 6, 5), classes=5)
        yield f"batchnorm_vector{tag}", dict(
            body=f"    p = x -> dense(6, bias=false) -> batchnorm{args} -> tanh -> dense(4)\n",
            twin=lambda kw=kw: Twin(lambda m, x: m.dense2(torch.tanh(m.bn1(m.dense1(x)))),
                                    dense1=nn.Linear(7, 6, bias=False), bn1=nn.BatchNorm1d(6, **kw),
                                    dense2=nn.Linear(6, 4)),
            shape=(7,), classes=None)

    yield "concat_vector2", dict(
        body="    a = x -> dense(3)\n    b = x -> dense(4) -> tanh\n    p = concat(a, b) -> tanh -> dense(4)\n",
        twin=lambda: Twin(lambda m, x: m.dense3(torch.tanh(torch.cat([m.dense1(x), torch.tanh(m.dense2(x))], 1))),
                          dense1=nn.Linear(6, 3), dense2=nn.Linear(6, 4), dense3=nn.Linear(7, 4)),
        shape=(6,), classes=None)
    yield "concat_vector3", dict(
        body=("    a = x -> dense(3)\n    b = x -> dense(2) -> tanh\n"
              "    p = concat(b, a, b) -> tanh -> dense(4)\n"),
        twin=lambda: Twin(lambda m, x: m.dense3(torch.tanh(torch.cat([torch.tanh(m.dense2(x)), m.dense1(x),
                                                                      torch.tanh(m.dense2(x))], 1))),
                          dense1=nn.Linear(6, 3), dense2=nn.Linear(6, 2), dense3=nn.Linear(7, 4)),
        shape=(6,), classes=None)
    yield "concat_image2", dict(
        body=("    a = x -> conv2d(3, kernel=3, pad=1)\n    b = x -> conv2d(2, kernel=1) -> relu\n"
              "    p = concat(a, b) -> relu -> flatten -> dense(5)\n"),
        twin=lambda: Twin(lambda m, x: m.dense1(torch.flatten(F.relu(torch.cat([m.conv1(x), F.relu(m.conv2(x))], 1)), 1)),
                          conv1=conv(2, 3), conv2=conv(2, 2, k=1, pad=0), dense1=nn.Linear(5 * 5 * 6, 5)),
        shape=(2, 5, 6), classes=5)
    yield "concat_image3", dict(
        body=("    a = x -> conv2d(3, kernel=3, pad=1)\n    b = x -> conv2d(2, kernel=1) -> relu\n"
              "    c = x -> conv2d(1, kernel=3, pad=1) -> tanh\n"
              "    p = concat(c, a, b) -> relu -> flatten -> dense(5)\n"),
        twin=lambda: Twin(lambda m, x: m.dense1(torch.flatten(F.relu(torch.cat(
            [torch.tanh(m.conv3(x)), m.conv1(x), F.relu(m.conv2(x))], 1)), 1)),
            conv1=conv(2, 3), conv2=conv(2, 2, k=1, pad=0), conv3=conv(2, 1), dense1=nn.Linear(6 * 5 * 6, 5)),
        shape=(2, 5, 6), classes=5)

    # a concat that only convolutions read is never copied together: im2col reads its inputs
    # one by one, and the input gradient's GEMM writes each slice of the concat's gradient
    yield "concat_conv_same", dict(
        body=("    a = x -> conv2d(3, kernel=3, pad=1) -> relu\n    b = x -> conv2d(2, kernel=1)\n"
              "    p = concat(b, a, b) -> conv2d(4, kernel=3, pad=1) -> relu -> flatten -> dense(5)\n"),
        twin=lambda: Twin(lambda m, x: m.dense1(torch.flatten(F.relu(m.conv3(torch.cat(
            [m.conv2(x), F.relu(m.conv1(x)), m.conv2(x)], 1))), 1)),
            conv1=conv(2, 3), conv2=conv(2, 2, k=1, pad=0), conv3=conv(7, 4), dense1=nn.Linear(4 * 5 * 6, 5)),
        shape=(2, 5, 6), classes=5)
    yield "concat_conv_valid", dict(
        body=("    a = x -> conv2d(3, kernel=3, pad=1) -> relu\n"
              "    p = concat(a, x) -> conv2d(4, kernel=3) -> relu -> flatten -> dense(5)\n"),
        twin=lambda: Twin(lambda m, x: m.dense1(torch.flatten(F.relu(m.conv2(torch.cat([F.relu(m.conv1(x)), x], 1))), 1)),
                          conv1=conv(2, 3), conv2=conv(5, 4, pad=0), dense1=nn.Linear(4 * 3 * 4, 5)),
        shape=(2, 5, 6), classes=5)

    for mode in ("nearest", "bilinear"):
        for scale in (2, (2, 3)):
            tag = f"{scale}" if isinstance(scale, int) else f"{scale[0]}x{scale[1]}"
            sh, sw = (scale, scale) if isinstance(scale, int) else scale
            arg = f"{scale}" if isinstance(scale, int) else f"[{sh}, {sw}]"
            up = nn.Upsample(scale_factor=scale if isinstance(scale, int) else (float(sh), float(sw)), mode=mode,
                             **({"align_corners": False} if mode == "bilinear" else {}))
            yield f"upsample_{mode}_{tag}", dict(
                body=(f"    p = x -> conv2d(2, kernel=3, pad=1) -> tanh -> upsample({arg}, mode=\"{mode}\")"
                      f" -> conv2d(2, kernel=3, pad=1) -> relu -> flatten -> dense(4)\n"),
                twin=lambda up=up, f=2 * 4 * sh * 5 * sw: Twin(
                    lambda m, x: m.dense1(torch.flatten(F.relu(m.conv2(m.up(torch.tanh(m.conv1(x))))), 1)),
                    conv1=conv(2, 2), up=up, conv2=conv(2, 2), dense1=nn.Linear(f, 4)),
                shape=(2, 4, 5), classes=None)


def main():
    nnc = os.path.abspath(sys.argv[1])
    lib = os.path.abspath(sys.argv[2])
    only = sys.argv[3] if len(sys.argv) > 3 else ""
    torch.set_num_threads(1)
    run_all("parity_cnn", ((name, lambda tmp, name=name, kw=kw: run_case(tmp, name, nnc=nnc, lib=lib, **kw))
                           for name, kw in cases()), only, width=30)

if __name__ == "__main__":
    main()

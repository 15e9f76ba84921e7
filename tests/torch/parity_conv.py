#!/usr/bin/python3
"""PyTorch parity of convolutions: nnc's emitted C against torch 1.13.

Each case is a small network of two convolution layers (conv2d and/or
conv_transpose2d) with tanh between them, then flatten -> dense -> mse. The
second layer's data gradient feeds the first layer's weight gradient, so one
case checks forward, data gradient (conv2d's is a transposed convolution and
conversely), weight gradient and bias gradient of its geometry. As in
parity.py: PyTorch's initial weights go to safetensors, both sides train the
same batches in order for a few SGD steps, and every parameter must agree:

    max |nnc - torch| / max |torch|  <  1e-5      for each tensor

usage: /usr/bin/python3 tests/torch/parity_conv.py path/to/nnc path/to/libnnrt.a [filter]
"""
import importlib.util
import os
import subprocess
import sys
import warnings
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

_spec = importlib.util.spec_from_file_location("parity", os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                                      "parity.py"))
parity = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(parity)

TOL = parity.TOL
STEPS, BATCH, LR, K = 3, 8, 0.1, 3


def pair(v):
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


def nn_args(kw):
    """keyword arguments in the nn language: lists as [a, b], strings quoted, booleans lower case"""
    out = []
    for k, v in kw.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, str):
            v = f'"{v}"'
        elif isinstance(v, (list, tuple)):
            v = f"[{v[0]}, {v[1]}]"
        out.append(f"{k}={v}")
    return out


class Layer:
    """one convolution layer, written both ways"""

    def __init__(self, kind, filters, **kw):
        self.kind, self.filters, self.kw = kind, filters, kw

    def nn(self):
        name = "conv2d" if self.kind == "conv" else "conv_transpose2d"
        return f"{name}({', '.join([str(self.filters)] + nn_args(self.kw))})"

    def torch(self, cin):
        kw = self.kw
        common = dict(kernel_size=tuple(pair(kw["kernel"])), stride=tuple(pair(kw.get("stride", 1))),
                      bias=kw.get("bias", True))
        if self.kind == "conv":
            pad = kw.get("pad", 0)
            return nn.Conv2d(cin, self.filters, padding=pad if pad == "same" else tuple(pair(pad)),
                             dilation=tuple(pair(kw.get("dilation", 1))), groups=kw.get("groups", 1), **common)
        return nn.ConvTranspose2d(cin, self.filters, padding=tuple(pair(kw.get("pad", 0))),
                                  output_padding=tuple(pair(kw.get("output_pad", 0))), **common)


class Net(nn.Module):
    """layers named as nnc names them (conv1, deconv1, ...), tanh between, then dense1"""

    def __init__(self, in_shape, layers):
        super().__init__()
        self.names, counts, c = [], {}, in_shape[0]
        for layer in layers:
            counts[layer.kind] = counts.get(layer.kind, 0) + 1
            name = f"{layer.kind}{counts[layer.kind]}"
            setattr(self, name, layer.torch(c))
            self.names.append(name)
            c = layer.filters
        with torch.no_grad():
            flat = self.features(torch.zeros(1, *in_shape)).shape[1]
        self.dense1 = nn.Linear(flat, K)

    def features(self, x):
        for i, name in enumerate(self.names):
            x = getattr(self, name)(x)
            if i < len(self.names) - 1:
                x = torch.tanh(x)
        return x.flatten(1)

    def forward(self, x):
        return self.dense1(self.features(x))


def run_case(tmp, name, in_shape, layers, nnc, lib):
    torch.manual_seed(zlib.crc32(name.encode()) % 1000)
    model = Net(in_shape, layers)
    n = STEPS * BATCH
    x = torch.randn(n, *in_shape)
    y = torch.randn(n, K)
    xp, yp = os.path.join(tmp, name + "_x.npy"), os.path.join(tmp, name + "_y.npy")
    np.save(xp, x.numpy().astype(np.float32))
    np.save(yp, y.numpy().astype(np.float32))
    chain = " -> tanh -> ".join(layer.nn() for layer in layers)
    shape = ", ".join(str(d) for d in in_shape)
    source = (f"model {name} {{\n    input x: [{shape}]\n    target y: [{K}]\n"
              f"    p = x -> {chain} -> flatten -> dense({K})\n    output p\n    loss mse(p, y)\n}}\n"
              f"train {{\n    optimizer = sgd(lr={LR})\n    batch = {BATCH}\n}}\n")
    exe = parity.build(tmp, name, source, nnc, lib)
    w0, w1 = os.path.join(tmp, name + "_w0.st"), os.path.join(tmp, name + "_w1.st")
    parity.write_safetensors(w0, model.state_dict())
    r = subprocess.run([exe, "--data", xp + "," + yp, "--init", w0, "--save", w1, "--no-shuffle", "--epochs", "1",
                        "--batch", str(BATCH), "--quiet"], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{name}: the generated program failed:\n{r.stdout}{r.stderr}")
    init = {k: v.clone() for k, v in model.state_dict().items()}
    opt = ("sgd", {"lr": LR})
    ref32 = parity.torch_train(model, init, x, y, F.mse_loss, opt, 0.0, 0.0, STEPS, BATCH, torch.float32)
    ref64 = parity.torch_train(model, init, x, y, F.mse_loss, opt, 0.0, 0.0, STEPS, BATCH, torch.float64)
    ours = parity.read_safetensors(w1)
    if set(ours) != set(ref32):
        raise RuntimeError(f"{name}: nnc saved {sorted(ours)}, PyTorch has {sorted(ref32)}")
    worst = (0.0, 0.0, 0.0, "")
    for key in ref32:
        a, b, c = ours[key].astype(np.float64), ref32[key], ref64[key]
        if a.shape != b.shape:
            raise RuntimeError(f"{name}: {key} has shape {list(a.shape)} in nnc, {list(b.shape)} in PyTorch")
        moved = float(np.max(np.abs(b - init[key].double().numpy())))
        if moved == 0:
            raise RuntimeError(f"{name}: {key} did not move in PyTorch: the case checks nothing")
        scale = max(np.max(np.abs(b)), 1e-30)
        vs32 = float(np.max(np.abs(a - b)) / scale)
        if vs32 >= worst[0]:
            worst = (vs32, float(np.max(np.abs(a - c)) / scale), float(np.max(np.abs(b - c)) / scale), key)
    return worst


def C(filters, **kw):
    return Layer("conv", filters, **kw)


def T(filters, **kw):
    return Layer("deconv", filters, **kw)


CASES = {
    "conv_stride_pad": ([3, 9, 8], [C(4, kernel=3, stride=2, pad=1), C(3, kernel=3, pad=1)]),
    "conv_stride3_k5": ([2, 11, 10], [C(4, kernel=5, stride=3, pad=2), C(3, kernel=2, stride=[2, 1])]),
    "conv_same": ([3, 7, 6], [C(4, kernel=3, pad="same"), C(3, kernel=4, pad="same")]),
    "conv_same_even_dilated": ([2, 8, 7], [C(3, kernel=2, pad="same", dilation=2), C(3, kernel=[2, 3], pad="same")]),
    "conv_dilation": ([3, 10, 9], [C(4, kernel=3, dilation=2, pad=1), C(3, kernel=3, dilation=[1, 2], stride=2)]),
    "conv_groups": ([4, 8, 7], [C(6, kernel=3, groups=2, pad=1), C(3, kernel=3, groups=3, stride=2)]),
    "conv_depthwise": ([3, 8, 8], [C(3, kernel=3, groups=3, pad=1), C(6, kernel=3, groups=3)]),
    "conv_1x1": ([4, 5, 6], [C(6, kernel=1), C(3, kernel=1, groups=3)]),
    "conv_nonsquare": ([3, 7, 6], [C(4, kernel=[3, 1], pad=[1, 0]), C(3, kernel=[1, 3], stride=[1, 2])]),
    "conv_no_bias": ([3, 7, 7], [C(4, kernel=3, pad=1, bias=False), C(3, kernel=1, stride=2, bias=False)]),
    "deconv_stride_pad": ([3, 4, 3], [T(4, kernel=3, stride=2, pad=1), T(3, kernel=2, stride=2)]),
    "deconv_output_pad": ([3, 3, 4], [T(4, kernel=3, stride=2, pad=1, output_pad=1),
                                      T(2, kernel=3, stride=3, output_pad=[2, 1])]),
    "deconv_1x1": ([4, 4, 5], [T(5, kernel=1), T(3, kernel=1, stride=2)]),
    "deconv_k5_nonsquare": ([2, 3, 4], [T(3, kernel=5, stride=2, pad=2), T(2, kernel=[3, 1], pad=[1, 0])]),
    "deconv_no_bias": ([3, 3, 3], [T(3, kernel=3, stride=2, bias=False), T(2, kernel=[1, 3], bias=False)]),
    "conv_then_deconv": ([3, 8, 7], [C(4, kernel=3, stride=2, pad=1), T(3, kernel=3, stride=2, pad=1, output_pad=1)]),
    "deconv_then_conv_groups": ([2, 4, 4], [T(4, kernel=2, stride=2), C(4, kernel=3, groups=2, dilation=2)]),
    # convolutions of 64 rows of col or more on 16 output columns or more read the image as an
    # implicit column matrix (lower.c, conv_implicit), and so do their input gradients' gathers;
    # weight gradients with stride 1 and outputs as wide as the image are dot products over the
    # image, 8 lanes or (from 256 positions) 16, or the runtime builds col when they are not
    # (k5_narrow: 18 positions): images wider than a sliver, one and many output rows per sliver,
    # stride, dilation, groups
    "implicit_same_wide": ([8, 5, 37], [C(8, kernel=3, pad=1), C(8, kernel=3, pad=1)]),
    "implicit_stride_dilation": ([8, 5, 34], [C(8, kernel=3, stride=2, pad=1), C(4, kernel=3, dilation=2, pad=2)]),
    "implicit_groups": ([16, 6, 20], [C(16, kernel=3, groups=2, pad=1), C(4, kernel=[3, 5], pad=[1, 2])]),
    "implicit_k5_narrow": ([4, 6, 3], [C(8, kernel=5, pad=2), C(3, kernel=3)]),
    "implicit_dw_16_lanes": ([8, 9, 30], [C(8, kernel=3, pad=1), C(4, kernel=5, pad=2)]),
    # 5x5 convolutions of 6 channels or more and 16 filters or more, and their weight gradients,
    # are Winograd's F(2x2, 5x5) (runtime/winograd.c): "same" and unpadded, an odd output width
    # (a ragged last tile); the first layer's input gradient is a 5x5 convolution of 16 channels
    "winograd5": ([6, 12, 11], [C(16, kernel=5, pad=2), C(16, kernel=5)]),
}


def main():
    nnc = os.path.abspath(sys.argv[1])
    lib = os.path.abspath(sys.argv[2])
    only = sys.argv[3] if len(sys.argv) > 3 else ""
    torch.set_num_threads(1)
    # PyTorch pads a copy of the input for "same" with an even kernel, and says so
    warnings.filterwarnings("ignore", message="Using padding='same'")
    parity.run_all("parity_conv", ((name, lambda tmp, name=name, s=s, layers=layers: run_case(tmp, name, s, layers, nnc, lib))
                                   for name, (s, layers) in CASES.items()), only)

if __name__ == "__main__":
    main()

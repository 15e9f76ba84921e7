#!/usr/bin/python3
"""Builds every example of examples/ in PyTorch, with the module names nnc
gives its layers, and checks that `nnc check` agrees with PyTorch on:
  - the parameter count (sum of p.numel() over model.parameters()),
  - every parameter and buffer: its state_dict key and its shape,
  - the output shape of a forward pass.
PyTorch's batchnorm also keeps `num_batches_tracked`, a step counter that
nnc does not need (momentum is always given); it is left out of the match.

usage: /usr/bin/python3 tests/torch/param_counts.py path/to/nnc
"""
import os
import re
import subprocess
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense1 = nn.Linear(784, 256)
        self.dense2 = nn.Linear(256, 128)
        self.dense3 = nn.Linear(128, 10)
        self.input_shape = (784,)

    def forward(self, x):
        return self.dense3(F.relu(self.dense2(F.relu(self.dense1(x)))))


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.dense1 = nn.Linear(400, 120)
        self.dense2 = nn.Linear(120, 84)
        self.dense3 = nn.Linear(84, 10)
        self.input_shape = (1, 28, 28)

    def forward(self, x):
        h = F.max_pool2d(F.relu(self.conv1(x)), 2)
        h = F.max_pool2d(F.relu(self.conv2(h)), 2)
        h = torch.flatten(h, 1)
        return self.dense3(F.relu(self.dense2(F.relu(self.dense1(h)))))


class Bottleneck(nn.Module):
    def __init__(self, c, mid, out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c, mid, 1)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride=stride, padding=1)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, out, 1)
        self.bn3 = nn.BatchNorm2d(out)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        h = self.bn3(self.conv3(h))
        return F.relu(h + x)


class ResNetMini(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(32)
        self.bottleneck1 = Bottleneck(32, 16, 32)
        self.bottleneck2 = Bottleneck(32, 16, 32)
        self.bottleneck3 = Bottleneck(32, 16, 32)
        self.dense1 = nn.Linear(32, 10)
        self.input_shape = (1, 28, 28)

    def forward(self, x):
        h = F.relu(self.bn1(self.conv1(x)))
        h = self.bottleneck3(self.bottleneck2(self.bottleneck1(h)))
        return self.dense1(h.mean(dim=(2, 3)))


class UNetTiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = nn.Conv2d(16, 32, 3, padding=1)
        self.conv4 = nn.Conv2d(48, 16, 3, padding=1)
        self.deconv1 = nn.ConvTranspose2d(16, 8, 2, stride=2)
        self.conv5 = nn.Conv2d(16, 8, 3, padding=1)
        self.conv6 = nn.Conv2d(8, 1, 1)
        self.input_shape = (1, 32, 32)

    def forward(self, img):
        e1 = F.relu(self.conv1(img))
        e2 = F.relu(self.conv2(F.max_pool2d(e1, 2)))
        b = F.relu(self.conv3(F.max_pool2d(e2, 2)))
        up = F.interpolate(b, scale_factor=2, mode="bilinear", align_corners=False)
        d2 = F.relu(self.conv4(torch.cat([up, e2], 1)))
        d1 = F.relu(self.conv5(torch.cat([self.deconv1(d2), e1], 1)))
        return self.conv6(d1)


EXAMPLES = {"mlp": MLP, "lenet": LeNet, "resnet_mini": ResNetMini, "unet_tiny": UNetTiny}


def nnc(binary, *args):
    r = subprocess.run([binary, *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(f"nnc {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r.stdout


def check(binary, name, cls):
    problems = []
    model = cls()
    path = f"examples/{name}.nn"
    summary = nnc(binary, "check", path)
    m = re.search(r"^Parameters:\s+([\d,]+)", summary, re.M)
    ours = int(m.group(1).replace(",", "")) if m else None
    theirs = sum(p.numel() for p in model.parameters())
    if ours != theirs:
        problems.append(f"parameter count: nnc {ours}, PyTorch {theirs}")

    state = {}
    for line in nnc(binary, "check", path, "--params").splitlines():
        key, rest = line.split(" ", 1)
        shape, kind = rest.rsplit(" ", 1)
        state[key] = (tuple(int(d) for d in re.findall(r"\d+", shape)), kind)
    params = {k for k, _ in model.named_parameters()}
    torch_state = {k: (tuple(v.shape), "param" if k in params else "buffer")
                   for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    for k in sorted(set(state) | set(torch_state)):
        if state.get(k) != torch_state.get(k):
            problems.append(f"{k}: nnc {state.get(k)}, PyTorch {torch_state.get(k)}")

    with torch.no_grad():
        out = model(torch.zeros(2, *model.input_shape))
    m = re.search(r"^Output:\s+\S+ \[([\d, ]+)\]", summary, re.M)
    our_out = tuple(int(d) for d in m.group(1).split(",")) if m else None
    if our_out != tuple(out.shape[1:]):
        problems.append(f"output shape: nnc {our_out}, PyTorch {tuple(out.shape[1:])}")
    return theirs, len(torch_state), problems


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "nnc"))
    passed = failed = 0
    for name, cls in EXAMPLES.items():
        count, nstate, problems = check(binary, name, cls)
        if problems:
            failed += 1
            print(f"FAIL {name}:")
            for p in problems:
                print("   ", p)
        else:
            passed += 1
            print(f"ok   {name}: {count:,} parameters, {nstate} state_dict entries match PyTorch")
    print(f"torch: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Batchnorm folding against PyTorch eval mode.

resnet_mini (examples/) and a dense model with batchnorm (one of them two in
a row) get random weights and batchnorm statistics far from init's; the C of
`nnc --inference` (folded when loaded, pass bnfold) and of `--embed-weights`
(folded at compile time) run forward on the same batch as the PyTorch twin
in eval mode, in float64:

    max |nnc - torch f64| / max |torch f64|  <  1e-5

usage: /usr/bin/python3 tests/torch/parity_bnfold.py path/to/nnc path/to/libnnrt.a
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from param_counts import ResNetMini  # noqa: E402
from parity import CC, EXTRA, ROOT, write_safetensors  # noqa: E402

TOL = 1e-5
N = 6

DENSE_BN = """model densebn {
    input x: [24]
    a = x -> dense(32) -> batchnorm -> relu
    b = a -> dense(16, bias=false) -> batchnorm -> batchnorm(eps=0.01) -> tanh
    o = b -> dense(5)
    output o
}
"""


class DenseBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.dense1 = nn.Linear(24, 32)
        self.bn1 = nn.BatchNorm1d(32)
        self.dense2 = nn.Linear(32, 16, bias=False)
        self.bn2 = nn.BatchNorm1d(16)
        self.bn3 = nn.BatchNorm1d(16, eps=0.01)
        self.dense3 = nn.Linear(16, 5)
        self.input_shape = (24,)

    def forward(self, x):
        a = F.relu(self.bn1(self.dense1(x)))
        return self.dense3(torch.tanh(self.bn3(self.bn2(self.dense2(a)))))


DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "m.h"
/* argv: n x.bin out.bin [weights]: out = forward(x) */
int main(int argc, char **argv)
{
	int64_t n = atoll(argv[1]);
	float *x = malloc(sizeof(float) * (size_t)(n * M_IN_ELEMS)), *out = malloc(sizeof(float) * (size_t)(n * M_OUT_ELEMS));
	FILE *f = fopen(argv[2], "rb");
	if (!f || fread(x, sizeof(float), (size_t)(n * M_IN_ELEMS), f) != (size_t)(n * M_IN_ELEMS))
		return 2;
	fclose(f);
	m_ctx c;
	void *mem = aligned_alloc(64, m_arena_size(n) + 64);
	m_init(&c, mem, n, 1);
#ifndef EMBEDDED
	NnrtError err;
	if (argc < 5 || m_load(&c, argv[4], &err)) {
		fprintf(stderr, "%s\n", argc < 5 ? "no weights" : err.msg);
		return 1;
	}
#endif
	m_forward(&c, n, x, out);
	f = fopen(argv[3], "wb");
	if (!f || fwrite(out, sizeof(float), (size_t)(n * M_OUT_ELEMS), f) != (size_t)(n * M_OUT_ELEMS))
		return 2;
	fclose(f);
	free(mem);
	free(x);
	free(out);
	return argc < 0;
}
"""


def randomize(model, gen):
    """batchnorm statistics and affine parameters far from init's"""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                m.running_mean.normal_(0, 0.5, generator=gen)
                m.running_var.uniform_(0.3, 3, generator=gen)
                m.weight.uniform_(0.5, 1.5, generator=gen)
                m.bias.uniform_(-0.5, 0.5, generator=gen)


def nnc_forward(tmp, nnc, lib, nn_path, weights, x, embedded):
    tag = "em" if embedded else "fo"
    d = os.path.join(tmp, tag)
    os.makedirs(d, exist_ok=True)
    c_path = os.path.join(d, "m.c")
    cmd = [nnc, nn_path, "-o", c_path, "--inference", "--prefix", "m"]
    if embedded:
        cmd += ["--embed-weights", weights]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"nnc failed:\n{r.stderr}")
    open(os.path.join(d, "drive.c"), "w").write(DRIVER)
    exe = os.path.join(d, "drive")
    r = subprocess.run([CC, "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", *EXTRA, *(["-DEMBEDDED"] if embedded else []),
                        "-I" + d, "-I" + os.path.join(ROOT, "runtime"), os.path.join(d, "drive.c"), c_path, lib,
                        "-lz", "-lm", "-pthread", "-o", exe], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"cc failed:\n{r.stderr}")
    xb, ob = os.path.join(d, "x.bin"), os.path.join(d, "out.bin")
    x.astype("<f4").tofile(xb)
    r = subprocess.run([exe, str(len(x)), xb, ob, weights], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"the program failed:\n{r.stderr}")
    return np.fromfile(ob, dtype="<f4").reshape(len(x), -1)


def run_case(tmp, name, model, nn_path, nnc, lib, seed):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = model()
    randomize(model, gen)
    model.eval()
    weights = os.path.join(tmp, "w.safetensors")
    write_safetensors(weights, {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")})
    x = torch.rand((N,) + model.input_shape, generator=gen) * 2 - 1
    with torch.no_grad():
        ref = model.double()(x.double()).numpy().reshape(N, -1)
    scale = np.abs(ref).max()
    ok = True
    for embedded in (False, True):
        got = nnc_forward(tmp, nnc, lib, nn_path, weights, x.numpy(), embedded)
        d = np.abs(got - ref).max() / scale
        ok &= bool(d < TOL)
        print(f"{'ok  ' if d < TOL else 'FAIL'} {name} {'embedded' if embedded else 'folded at load'}: "
              f"max |nnc - torch f64 eval| / scale = {d:.2e}")
    return ok


def main():
    nnc, lib = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        dense = os.path.join(tmp, "densebn.nn")
        open(dense, "w").write(DENSE_BN)
        ok &= run_case(tmp, "resnet_mini", ResNetMini, os.path.join(ROOT, "examples", "resnet_mini.nn"), nnc, lib, 1)
        ok &= run_case(tmp, "densebn", DenseBN, dense, nnc, lib, 2)
    sys.exit(0 if ok else 1)


main()

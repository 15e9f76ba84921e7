#!/usr/bin/env python3
"""Training speed of the examples: nnc (the JIT and the emitted C) against
PyTorch 1.13, the graph optimizer's -O0 against -O2, and the runtime's GEMM
against OpenBLAS; writes bench/results.md. Run it as `make bench`.

Every measurement is its own process, which loads the data into memory,
trains untimed warm-up steps (a tenth of the timed ones, at least 2: they take
the JIT's compilation and cold caches), then times steps of batch 64 and
prints samples/s: nnc's driver with --bench, PyTorch through
bench/torch_train.py (the example's twin, a plain training loop). Test
evaluation, checkpoints and compile times are outside the timings.

The machine may be shared, so the runs are interleaved: each repetition runs
every configuration once, nnc JIT, nnc C and PyTorch one after the other (the
order rotating between repetitions), so a burst of load from elsewhere falls
on both sides of a pair. A ratio is the median over repetitions of the
per-repetition ratio, with its range; speeds are medians.

PyTorch is held to T threads: torch.set_num_threads(T), OMP_NUM_THREADS=T,
MKL_NUM_THREADS=T and OPENBLAS_NUM_THREADS=1 (its BLAS is OpenBLAS; measured,
a second BLAS pool beside OpenMP's makes torch 2-3x slower on 2 cores), and
OMP_WAIT_POLICY=PASSIVE unless set: on a loaded machine OpenMP's default
spinning at barriers made torch 5-10x slower on 2 threads (mlp with adam:
2,700 against 17,000 samples/s, measured back to back), so this is torch at
its best here.
Without PyTorch (/usr/bin/python3 -c "import torch" fails) its columns are
left out and the report says so.

usage: python3 bench/train.py NNC LIBNNRT [GEMM_BENCH]
environment: BENCH_REPS (default 7), BENCH_SCALE (multiplies the step counts;
             0.2 for a quick try), BENCH_OUT (default bench/results.md),
             BENCH_ONLY (only the models whose label holds this text),
             BENCH_TORCH_PYTHON (default /usr/bin/python3),
             CC and BENCH_CFLAGS (for the emitted C; default cc, -O3 -fno-math-errno -march=native)
"""
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_PY = os.environ.get("BENCH_TORCH_PYTHON", "/usr/bin/python3")  # the python that has torch
FASHION = "/usr/share/datasets/fashion-mnist"
SHAPES = os.path.join(ROOT, "examples", "shapes")
BATCH = 64

# label, example, the optimizer in nn syntax, the same for bench/torch_train.py, timed steps
# (steps chosen for about 1 s of nnc's timing per run at 1 thread, more for PyTorch, on the
# 2-core machine of Nov 2026; at 2 threads half that. With half these steps, unet_tiny's JIT
# measured 2T/1T 1.32 and then 1.71 in back-to-back runs.)
CONFIGS = [
    ("mlp, sgd momentum", "mlp", "sgd(lr=0.01, momentum=0.9)", "sgd-momentum", 1000),
    ("mlp, adam", "mlp", "adam(lr=0.001)", "adam", 1000),
    ("lenet, adam", "lenet", "adam(lr=0.001)", "adam", 400),
    ("resnet_mini, adam", "resnet_mini", "adam(lr=0.001)", "adam", 20),
    ("unet_tiny, adam", "unet_tiny", "adam(lr=0.001)", "adam", 50),
]
THREADS = (1, 2)
EXAMPLES = ["mlp", "lenet", "resnet_mini", "unet_tiny"]  # for -O0 against -O2, with their own optimizers

RATE = re.compile(r"([0-9.]+) samples/s")


def data_args(example):
    if example == "unet_tiny":
        return ["--data", f"{SHAPES}/train-x.npy,{SHAPES}/train-y.npy"]
    return ["--data", FASHION]


def run(cmd, env=None, timeout=600):
    """samples/s printed by a run, or None (with the error shown)"""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        print(f"  timed out: {shlex.join(cmd)}", flush=True)
        return None
    m = RATE.search(r.stdout)
    if r.returncode or not m:
        print(f"  failed ({r.returncode}): {shlex.join(cmd)}\n{r.stdout[-500:]}{r.stderr[-500:]}", flush=True)
        return None
    return float(m.group(1))


def sh(cmd):
    return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()


class Bench:
    def __init__(self, nnc, lib, tmp):
        self.nnc, self.lib, self.tmp = nnc, lib, tmp
        self.cc = os.environ.get("CC", "cc")
        self.cflags = shlex.split(os.environ.get("BENCH_CFLAGS", "-O3 -fno-math-errno -march=native"))
        self.scale = float(os.environ.get("BENCH_SCALE", "1"))

    def source(self, example, optimizer):
        """the example with its optimizer replaced, in the scratch folder"""
        text = open(os.path.join(ROOT, "examples", example + ".nn")).read()
        text, n = re.subn(r"optimizer\s*=.*", f"optimizer = {optimizer}", text, count=1)
        if n != 1:
            sys.exit(f"bench: examples/{example}.nn has no optimizer line")
        path = os.path.join(self.tmp, f"{example}-{re.sub('[^a-z0-9]', '', optimizer)}.nn")
        with open(path, "w") as f:
            f.write(text)
        return path

    def build_c(self, nn, level="-O2"):
        """the emitted C with --main, compiled with cc against libnnrt.a"""
        base = nn[:-3] + level
        subprocess.run([self.nnc, nn, level, "-o", base + ".c", "--main"], check=True, capture_output=True)
        subprocess.run([self.cc, "-std=c99", *self.cflags, "-I", os.path.join(ROOT, "runtime"), base + ".c",
                        self.lib, "-lz", "-lm", "-pthread", "-o", base], check=True)
        return base

    def steps(self, n):
        return str(max(3, int(n * self.scale)))


def nnc_env():
    env = dict(os.environ)
    env["OPENBLAS_NUM_THREADS"] = "1"  # for a BLAS=openblas runtime: the pool's threads are the threads
    return env


def torch_env(threads):
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return env


def med(v):
    v = [x for x in v if x is not None]
    return statistics.median(v) if v else None


def ratios(a, b):
    """per-repetition a/b where both ran: (median, min, max) or None"""
    r = [x / y for x, y in zip(a, b) if x and y]
    return (statistics.median(r), min(r), max(r)) if r else None


def fmt_rate(x):
    return "—" if x is None else f"{x:,.0f}"


def fmt_ratio(r):
    return "—" if r is None else f"**{r[0]:.2f}** ({r[1]:.2f}–{r[2]:.2f})"


def speed_vs_torch(b, reps, have_torch):
    """{(label, threads): {variant: [samples/s per repetition]}}"""
    runs = {}
    cmds = {}
    only = os.environ.get("BENCH_ONLY", "")
    for label, ex, opt, topt, steps in CONFIGS:
        if only not in label:
            continue
        nn = b.source(ex, opt)
        exe = b.build_c(nn)
        for t in THREADS:
            common = ["--bench", "--steps", b.steps(steps), "--batch", str(BATCH), "--threads", str(t),
                      "--quiet", *data_args(ex)]
            v = {"jit": ([b.nnc, "train", nn, *common], nnc_env()), "c": ([exe, *common], nnc_env())}
            if have_torch:
                v["torch"] = ([TORCH_PY, os.path.join(ROOT, "bench", "torch_train.py"), ex, topt, str(t),
                               b.steps(steps), str(BATCH)], torch_env(t))
            cmds[(label, t)] = v
            runs[(label, t)] = {k: [] for k in v}
    for r in range(reps):
        print(f"repetition {r + 1}/{reps}", flush=True)
        for key, v in cmds.items():
            names = list(v)
            names = names[r % len(names):] + names[:r % len(names)]  # rotate who goes first
            for name in names:
                x = run(*v[name])
                runs[key][name].append(x)
            got = "  ".join(f"{n} {fmt_rate(runs[key][n][-1])}" for n in v)
            print(f"  {key[0]:20s} {key[1]}T: {got}", flush=True)
    return runs


def level_flag_works(nnc):
    """does `nnc train` take -O0? (else the -O table uses the emitted C)"""
    r = subprocess.run([nnc, "train", os.path.join(ROOT, "examples", "mlp.nn"), "-O0", "--bench", "--steps", "3",
                        "--quiet"], capture_output=True, text=True)
    return r.returncode == 0 and "samples/s" in r.stdout


def opt_levels(b, reps, jit):
    """{example: {level: [samples/s]}} at 1 thread, -O0 and -O2 interleaved"""
    steps = {ex: s for _, ex, _, _, s in CONFIGS}
    out = {}
    for ex in [e for e in EXAMPLES if os.environ.get("BENCH_ONLY", "") in e]:
        nn = os.path.join(ROOT, "examples", ex + ".nn")
        common = ["--bench", "--steps", b.steps(steps[ex] // 2 or 3), "--batch", str(BATCH), "--threads", "1",
                  "--quiet", *data_args(ex)]
        if jit:
            cmds = {lv: [b.nnc, "train", nn, lv, *common] for lv in ("-O0", "-O2")}
        else:
            local = os.path.join(b.tmp, ex + ".nn")  # the C is written beside it
            shutil.copyfile(nn, local)
            cmds = {lv: [b.build_c(local, lv), *common] for lv in ("-O0", "-O2")}
        out[ex] = {lv: [] for lv in cmds}
        for r in range(reps):
            for lv in (("-O0", "-O2") if r % 2 == 0 else ("-O2", "-O0")):
                out[ex][lv].append(run(cmds[lv], nnc_env()))
        print(f"  {ex:12s} -O0 {fmt_rate(med(out[ex]['-O0']))}  -O2 {fmt_rate(med(out[ex]['-O2']))} samples/s",
              flush=True)
    return out


def machine(have_torch):
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    ncpu = sh("grep -c ^processor /proc/cpuinfo")
    flags = sh("grep -m1 ^flags /proc/cpuinfo").split()
    isa = " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags)
    isa += ", a virtual machine" if "hypervisor" in flags else ""
    mem = sh("grep MemTotal /proc/meminfo | awk '{printf \"%.1f GiB\", $2/1048576}'")
    tv = sh(f"{TORCH_PY} -c 'import torch; print(torch.__version__)'") if have_torch else "not installed"
    return [f"- CPU: {cpu}, {ncpu} logical cores ({isa}), {mem} RAM",
            f"- {platform.system()} {platform.release()}; {sh(os.environ.get('CC', 'cc') + ' --version | head -1')}",
            f"- PyTorch {tv} ({TORCH_PY}); nnc {sh('git -C ' + ROOT + ' describe --always --dirty')}"]


def blas_scaling(gemm):
    """what OpenBLAS gains from a second thread on the square GEMMs: how much
    two threads can give on this machine as loaded during the run"""
    r = []
    for line in gemm.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 12 and cells[0] == "square":
            r.append(float(cells[8]) / float(cells[5]))
    if not r:
        return ""
    return (f"For scale: on the square GEMMs below, OpenBLAS at 2 threads ran {statistics.median(r):.2f}x its "
            "1-thread speed during this run (2 would be perfect scaling).")


def report(runs, levels, level_how, gemm, info, reps, have_torch, load, secs, steps_note):
    L = ["# nnc training speed against PyTorch", "",
         f"Written by `make bench` (bench/train.py; BENCH_REPS={reps}, "
         f"BENCH_SCALE={os.environ.get('BENCH_SCALE', '1')}) on "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, in {secs / 60:.0f} minutes.", "", *info,
         f"- load average before and after: {load[0]} / {load[1]} (the machine is shared: other jobs ran "
         "during the measurement, so treat differences under ~10% as noise)", "",
         "## Training throughput, samples/s (batch 64, data in memory)", "",
         f"Median of {reps} interleaved repetitions. Ratios are medians of the per-repetition ratio, "
         "with their range; above 1, nnc is faster. "
         "JIT: `nnc train X.nn --bench`; C: `nnc X.nn -o m.c --main` built with "
         f"`cc {' '.join(shlex.split(os.environ.get('BENCH_CFLAGS', '-O3 -fno-math-errno -march=native')))}` and "
         "runtime/libnnrt.a, run with `--bench`; PyTorch: bench/torch_train.py "
         "(torch.set_num_threads(T), OMP_NUM_THREADS=T, OPENBLAS_NUM_THREADS=1, OMP_WAIT_POLICY=PASSIVE: "
         "with OpenMP's default spinning, torch at 2 threads ran 5-10x slower on this loaded machine). "
         f"Timed steps per run: {steps_note}.", ""]
    if not have_torch:
        L += [f"PyTorch is not installed (`{TORCH_PY} -c 'import torch'` fails): its columns are left out.", ""]
    L += ["| model, optimizer | threads | nnc JIT | nnc C | PyTorch | JIT / PyTorch | C / PyTorch |",
          "|---|--:|--:|--:|--:|--:|--:|"]
    for (label, t), v in runs.items():
        tr = v.get("torch", [])
        L.append(f"| {label} | {t} | {fmt_rate(med(v['jit']))} | {fmt_rate(med(v['c']))} | {fmt_rate(med(tr))} "
                 f"| {fmt_ratio(ratios(v['jit'], tr))} | {fmt_ratio(ratios(v['c'], tr))} |")
    L += ["", "### Two threads against one", "",
          "Per repetition, samples/s at 2 threads over samples/s at 1, from the same repetition's runs "
          "(a configuration's 1-thread and 2-thread runs follow each other). "
          f"{blas_scaling(gemm)}", "",
          "| model, optimizer | nnc JIT 2T/1T | nnc C 2T/1T | PyTorch 2T/1T |", "|---|--:|--:|--:|"]
    for label in dict.fromkeys(label for label, _ in runs):
        one, two = runs[(label, 1)], runs[(label, 2)]
        L.append(f"| {label} | {fmt_ratio(ratios(two['jit'], one['jit']))} | {fmt_ratio(ratios(two['c'], one['c']))} "
                 f"| {fmt_ratio(ratios(two.get('torch', []), one.get('torch', [])))} |")
    L += ["", "## Graph optimization: -O0 against -O2 (issue 6)", "",
          f"Each example with its own train section, batch 64, 1 thread, {level_how}; "
          f"median of {min(reps, 5)} interleaved repetitions, half the timed steps of the table above. "
          "ms/step from the median samples/s; the speed-up is -O0's time over -O2's.", "",
          "| example | -O0 ms/step | -O2 ms/step | -O2 speed-up (median, range) |", "|---|--:|--:|--:|"]
    for ex, v in levels.items():
        o0, o2 = med(v["-O0"]), med(v["-O2"])
        ms = lambda s: "—" if not s else f"{1000 * BATCH / s:.2f}"  # noqa: E731
        L.append(f"| {ex} | {ms(o0)} | {ms(o2)} | {fmt_ratio(ratios(v['-O2'], v['-O0']))} |")
    L += ["", "## GEMM: the runtime's nnrt_sgemm against OpenBLAS", "",
          "`make bench-gemm` (bench/gemm.c), run within `make bench`: GFLOP/s, square sizes and the GEMM shapes "
          "of the examples at batch 64 (convolutions per sample, through im2col).", ""]
    L += gemm.rstrip().splitlines() if gemm else ["(not run: the GEMM benchmark was not built)"]
    L += ["", "## Reproduce", "", "```sh", "make bench        # about 10 minutes on 2 cores; writes bench/results.md",
          "BENCH_REPS=3 BENCH_SCALE=0.3 make bench   # a quick, noisier look", "```", ""]
    return "\n".join(L)


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    nnc, lib = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    gemm_bin = sys.argv[3] if len(sys.argv) > 3 else None
    reps = int(os.environ.get("BENCH_REPS", "7"))
    out = os.environ.get("BENCH_OUT", os.path.join(ROOT, "bench", "results.md"))
    t0 = time.time()
    load0 = open("/proc/loadavg").read().split()[0]
    have_torch = subprocess.run([TORCH_PY, "-c", "import torch"], capture_output=True).returncode == 0
    if not have_torch:
        print(f"bench: PyTorch not found ({TORCH_PY} -c 'import torch' fails): measuring nnc alone", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        b = Bench(nnc, lib, tmp)
        print(f"bench: training throughput, {reps} repetitions", flush=True)
        runs = speed_vs_torch(b, reps, have_torch)
        jit = level_flag_works(nnc)
        how = "`nnc train -O0/-O2 --bench` (the JIT)" if jit else "the emitted C (`nnc X.nn -O0/-O2 -o m.c --main`)"
        print(f"bench: -O0 against -O2 through {how}", flush=True)
        levels = opt_levels(b, min(reps, 5), jit)
    gemm = ""
    if gemm_bin:
        print("bench: GEMM against OpenBLAS", flush=True)
        gemm = subprocess.run([gemm_bin, "9"], capture_output=True, text=True).stdout
    load1 = open("/proc/loadavg").read().split()[0]
    steps = ", ".join(f"{ex} {b.steps(s)}" for _, ex, _, _, s in CONFIGS[1:])
    text = report(runs, levels, how, gemm, machine(have_torch), reps, have_torch, (load0, load1),
                  time.time() - t0, steps)
    with open(out, "w") as f:
        f.write(text)
    print(text)
    print(f"bench: wrote {os.path.relpath(out, ROOT)}")


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""No input crashes or hangs nnc: mutates the examples (deterministically)
and the error corpus, thousands of ways, and runs `nnc check` on each. Every
run must end within its time limit with status 0, or status 1 and at least
one located error message; a signal (a crash, a sanitizer abort) fails.

usage: /usr/bin/python3 tests/robust.py path/to/nnc [cases]
"""
import glob
import os
import random
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENS = ["->", "(", ")", "[", "]", "{", "}", ",", "=", ":", "+", "*", "-", "/", "\n", "#",
          '"', "model", "block", "input", "target", "output", "loss", "return", "repeat",
          "train", "relu", "dense(3)", "conv2d(4, kernel=3)", "x", "h", "0", "1e999",
          "99999999999", "-1", "true", "\x00", "\xff", "é", ";", "@", "   ", "\t"]


def mutate(rng, text):
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        i = rng.randrange(len(text) + 1)
        if op == 0 and text:
            j = min(len(text), i + rng.randint(1, 12))
            text = text[:i] + text[j:]
        elif op == 1:
            text = text[:i] + rng.choice(TOKENS) + text[i:]
        elif op == 2:
            text = text[:i]
        elif op == 3:
            lines = text.split("\n")
            k = rng.randrange(len(lines))
            lines.insert(k, lines[rng.randrange(len(lines))])
            text = "\n".join(lines)
        elif op == 4:
            lines = text.split("\n")
            rng.shuffle(lines)
            text = "\n".join(lines)
        elif op == 5:
            text = re.sub(r"\d+", lambda m: str(rng.choice([0, 1, 2, 3, 7, 64, 2**31, 2**40])), text, count=1)
        else:
            text = text[:i] + chr(rng.randrange(256)) + text[i:]
    return text


def main():
    nnc = os.path.abspath(sys.argv[1])
    cases = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    seeds = [open(f, encoding="utf-8", errors="surrogateescape").read()
             for f in sorted(glob.glob(os.path.join(ROOT, "examples", "*.nn")) +
                             glob.glob(os.path.join(ROOT, "tests", "golden", "*.nn")))]
    seeds = [s for s in seeds if len(s) < 100000]
    rng = random.Random(20261127)
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "case.nn")
        for n in range(cases):
            text = mutate(rng, rng.choice(seeds))
            with open(path, "wb") as f:
                f.write(text.encode("utf-8", errors="surrogateescape"))
            try:
                r = subprocess.run([nnc, "check", path], capture_output=True, timeout=20)
            except subprocess.TimeoutExpired:
                failed += 1
                print(f"FAIL case {n}: timed out; input kept as robust-hang.nn")
                open("robust-hang.nn", "wb").write(text.encode("utf-8", errors="surrogateescape"))
                continue
            err = r.stderr.decode("utf-8", errors="replace")
            ok = r.returncode == 0 or (r.returncode == 1 and "error:" in err)
            if ok:
                passed += 1
            else:
                failed += 1
                name = f"robust-fail-{n}.nn"
                open(name, "wb").write(text.encode("utf-8", errors="surrogateescape"))
                print(f"FAIL case {n}: status {r.returncode}; input kept as {name}\n{err[-2000:]}")
    print(f"robust: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

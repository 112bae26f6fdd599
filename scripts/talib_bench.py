#!/usr/bin/env python3
"""Time TA-Lib (Python wrapper over the C library) and the Rust batch indicators
(`benches/ta.rs`) on 1,000,000 points, interleaved, and print TA-Lib | Rust | ratio.

Both sides do the same thing per timed call: read warm input arrays, allocate fresh outputs
(numpy arrays / Vecs) and drop them after the call; each figure is the median of RUNS calls
after one warm-up call, in ms per 1M points. The machine is shared and noisy, so the two are
interleaved: for each round and each indicator TA-Lib is timed in this process and then the
Rust bench binary is run for that indicator alone. The table shows the median over ROUNDS
of each side and of the per-round ratio (Rust/TA-Lib, below 1 = Rust faster), and the
range of the per-round ratios.

Allocation policy (the same for both processes, through GLIBC_TUNABLES; this script
re-executes itself with it):
  --alloc warm   (default) glibc keeps freed blocks (trim/mmap thresholds 1 GiB): a fresh
                 output reuses memory the process already touched, as a long-running
                 program's does. Measures the computation and the writing of the outputs.
  --alloc fresh  every block of 128 KiB or more is a new mmap (fixed mmap threshold): each
                 call's outputs are page-faulted in. Both sides ask for transparent huge
                 pages on large outputs (numpy for its arrays, src/ta for its Vecs).
Left to glibc's defaults, which side pays page faults depends on each process's heap history
(glibc's dynamic thresholds), which is why the policy is pinned.

Usage:  pip install TA-Lib numpy
        python3 scripts/talib_bench.py [--rounds 3] [--runs 15] [--alloc warm|fresh]
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np
import talib

N = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TUNABLES = {
    "warm": "glibc.malloc.trim_threshold=1073741824:glibc.malloc.mmap_threshold=1073741824",
    "fresh": "glibc.malloc.mmap_threshold=131072",
}
RUST_ONLY = ["supertrend", "vwap"]


def data():
    rng = np.random.default_rng(7)
    ret = (rng.random(N) - 0.5) * 0.01
    close = np.maximum(1000.0 * np.cumprod(1.0 + ret), 1.0)
    open_ = np.concatenate(([1000.0], close[:-1]))
    high = np.maximum(open_, close) + rng.random(N) * 2.0
    low = np.minimum(open_, close) - rng.random(N) * 2.0
    volume = np.floor(rng.random(N) * 10_000.0)
    return high, low, close, volume


def donchian3(h, l):
    """TA-Lib MAX + MIN plus the middle line, the three outputs the Rust donchian returns."""
    upper, lower = talib.MAX(h, 20), talib.MIN(l, 20)
    middle = np.add(upper, lower)
    middle *= 0.5
    return upper, middle, lower


def cases(h, l, c, v):
    """(row, Rust bench name, TA-Lib call): same indicators and parameters as benches/ta.rs.
    Donchian is compared twice: with TA-Lib MAX + MIN (two outputs) and with the middle line
    added by numpy (the three outputs the Rust function writes)."""
    return [
        ("sma20", "sma20", lambda: talib.SMA(c, 20)),
        ("ema20", "ema20", lambda: talib.EMA(c, 20)),
        ("wma20", "wma20", lambda: talib.WMA(c, 20)),
        ("rsi14", "rsi14", lambda: talib.RSI(c, 14)),
        ("roc10", "roc10", lambda: talib.ROC(c, 10)),
        ("atr14", "atr14", lambda: talib.ATR(h, l, c, 14)),
        ("macd", "macd", lambda: talib.MACD(c, 12, 26, 9)),
        ("bbands20", "bbands20", lambda: talib.BBANDS(c, 20, 2.0, 2.0, 0)),
        ("adx14", "adx14", lambda: talib.ADX(h, l, c, 14)),
        ("stoch", "stoch", lambda: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)),
        ("obv", "obv", lambda: talib.OBV(c, v)),
        ("donchian20", "donchian20", lambda: (talib.MAX(h, 20), talib.MIN(l, 20))),
        ("donchian20+m", "donchian20", lambda: donchian3(h, l)),
    ]


def time_ms(f, runs):
    """(median, minimum) ms of `runs` calls after one warm-up call."""
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3, min(times) * 1e3


def rust_binary():
    """Builds benches/ta.rs (release) and returns the executable's path."""
    out = subprocess.run(["cargo", "bench", "--bench", "ta", "--no-run"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    m = re.search(r"Executable .*\((.*)\)", out.stderr + out.stdout)
    if not m:
        sys.exit("could not find the bench executable in cargo's output")
    return os.path.join(ROOT, m.group(1))


def rust_ms(exe, names):
    """{indicator: (median, minimum) ms per 1M} from one run of the bench binary."""
    out = subprocess.run([exe, "--bench", *names], cwd=ROOT, check=True, capture_output=True,
                         text=True).stdout
    figs = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+([\d.]+) ns/point\s+([\d.]+) ms/1M \(min ([\d.]+)\)", line)
        if m:
            figs[m.group(1)] = (float(m.group(3)), float(m.group(4)))
    return figs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--alloc", choices=sorted(TUNABLES), default="warm")
    args = ap.parse_args()
    if os.environ.get("GLIBC_TUNABLES") != TUNABLES[args.alloc]:
        env = dict(os.environ, GLIBC_TUNABLES=TUNABLES[args.alloc])
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    exe = rust_binary()
    h, l, c, v = data()
    ta_ms, rs_ms, ratios, min_ratios = {}, {}, {}, {}
    for _ in range(args.rounds):
        for name, rust_name, f in cases(h, l, c, v):
            t, t_min = time_ms(f, args.runs)
            r, r_min = rust_ms(exe, [rust_name])[rust_name]
            ta_ms.setdefault(name, []).append(t)
            rs_ms.setdefault(name, []).append(r)
            ratios.setdefault(name, []).append(r / t)
            min_ratios.setdefault(name, []).append(r_min / t_min)
        for name, (r, _) in rust_ms(exe, RUST_ONLY).items():
            rs_ms.setdefault(name, []).append(r)
    med = statistics.median
    print(f"TA-Lib {talib.__version__} vs Rust (benches/ta.rs), {N} points, alloc={args.alloc} "
          f"(GLIBC_TUNABLES={os.environ['GLIBC_TUNABLES']})")
    print(f"ms per 1M points: median of {args.runs} calls per round, median of {args.rounds} "
          f"interleaved rounds; ratio = Rust/TA-Lib (median of per-round ratios; below 1 = Rust "
          f"faster) and its range over rounds; 'min ratio' = the same from each side's fastest "
          f"call (least disturbed by other load)")
    print(f"{'indicator':<13} {'TA-Lib':>7} {'Rust':>7} {'ratio':>6}  {'range':<10} {'min ratio':>9}")
    for name, ts in ta_ms.items():
        rr = ratios[name]
        print(f"{name:<13} {med(ts):7.2f} {med(rs_ms[name]):7.2f} {med(rr):6.2f}  "
              f"{min(rr):.2f}-{max(rr):.2f}  {med(min_ratios[name]):9.2f}")
    for name in RUST_ONLY:
        if name in rs_ms:
            print(f"{name:<13} {'-':>7} {med(rs_ms[name]):7.2f}   (no TA-Lib)")


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Time TA-Lib (Python wrapper over the C library) on 1,000,000 points and compare with
`cargo bench --bench ta`.

Prints the median ms per 1M points over RUNS runs for the same indicators and parameters as
benches/ta.rs. With --rust it also runs the Rust bench (release build) and prints
Rust/TA-Lib per indicator (below 1.0 means the Rust version is faster).

Usage:  pip install TA-Lib numpy
        python3 scripts/talib_bench.py [--rust] [--runs N]
"""

import argparse
import os
import re
import subprocess
import sys
import time

import numpy as np
import talib

N = 1_000_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data():
    rng = np.random.default_rng(7)
    ret = (rng.random(N) - 0.5) * 0.01
    close = np.maximum(1000.0 * np.cumprod(1.0 + ret), 1.0)
    open_ = np.concatenate(([1000.0], close[:-1]))
    high = np.maximum(open_, close) + rng.random(N) * 2.0
    low = np.minimum(open_, close) - rng.random(N) * 2.0
    volume = np.floor(rng.random(N) * 10_000.0)
    return high, low, close, volume


def cases(h, l, c, v):
    return [
        ("sma20", lambda: talib.SMA(c, 20)),
        ("ema20", lambda: talib.EMA(c, 20)),
        ("wma20", lambda: talib.WMA(c, 20)),
        ("rsi14", lambda: talib.RSI(c, 14)),
        ("roc10", lambda: talib.ROC(c, 10)),
        ("atr14", lambda: talib.ATR(h, l, c, 14)),
        ("macd", lambda: talib.MACD(c, 12, 26, 9)),
        ("bbands20", lambda: talib.BBANDS(c, 20, 2.0, 2.0, 0)),
        ("adx14", lambda: talib.ADX(h, l, c, 14)),
        ("stoch", lambda: talib.STOCH(h, l, c, 14, 3, 0, 3, 0)),
        ("obv", lambda: talib.OBV(c, v)),
        ("donchian20", lambda: (talib.MAX(h, 20), talib.MIN(l, 20))),
    ]


def median_ms(f, runs):
    f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2] * 1e3


def rust_figures():
    """{section: {indicator: ms per 1M}} from `cargo bench --bench ta`."""
    out = subprocess.run(["cargo", "bench", "--bench", "ta"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    figs = {"default allocator": {}, "retained heap": {}}
    section = "default allocator"
    for line in out.splitlines():
        if "retained heap" in line:
            section = "retained heap"
        m = re.match(r"^(\w+)\s+([\d.]+) ns/point\s+([\d.]+) ms/1M", line)
        if m:
            figs[section][m.group(1)] = float(m.group(3))
    return figs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rust", action="store_true", help="also run cargo bench --bench ta")
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    h, l, c, v = data()
    talib_ms = {name: median_ms(f, args.runs) for name, f in cases(h, l, c, v)}
    figs = rust_figures() if args.rust else {"default allocator": {}, "retained heap": {}}
    dflt, kept = figs["default allocator"], figs["retained heap"]
    print(f"TA-Lib {talib.__version__}, {N} points, median of {args.runs} runs (ms per 1M)")
    print("Rust: 'default' = fresh output pages every run, 'retained' = heap kept "
          "(see benches/ta.rs); ratio = Rust/TA-Lib, below 1 is faster")
    print(f"{'indicator':<12} {'TA-Lib':>8} {'default':>8} {'ratio':>6} {'retained':>9} {'ratio':>6}")

    def cell(v, ms, w):
        return (f"{v:{w}.2f}", f"{v / ms:6.2f}") if v is not None else (f"{'-':>{w}}", f"{'-':>6}")

    for name, ms in talib_ms.items():
        d, dr = cell(dflt.get(name), ms, 8)
        k, kr = cell(kept.get(name), ms, 9)
        print(f"{name:<12} {ms:8.2f} {d} {dr} {k} {kr}")
    for name in sorted(set(dflt) - set(talib_ms)):
        k = kept.get(name)
        ks = f"{k:9.2f}" if k is not None else f"{'-':>9}"
        print(f"{name:<12} {'-':>8} {dflt[name]:8.2f} {'':>6} {ks}   (no TA-Lib)")


if __name__ == "__main__":
    sys.exit(main())

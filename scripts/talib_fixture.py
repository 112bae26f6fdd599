#!/usr/bin/env python3
"""Generate the TA-Lib reference fixtures for tests/ta_talib.rs.

Builds a deterministic synthetic 5-minute OHLCV series (seeded random walk, 75 bars per NSE
session, with flat stretches and zero-volume bars) and writes

  tests/fixtures/ta/series.csv          time (UTC, RFC 3339), open, high, low, close, volume
  tests/fixtures/ta/talib_expected.csv  one column per indicator output, full precision

Floats are written with repr() (shortest round-trip); NaN is written as "nan". Supertrend and
VWAP are not in TA-Lib: their "ref_" columns come from the plain Python definitions below
(Supertrend on top of talib.ATR).

Usage:  pip install TA-Lib numpy && python3 scripts/talib_fixture.py
"""

import csv
import datetime as dt
import math
import os
import sys

import numpy as np
import talib

N = 2000
BARS_PER_DAY = 75
SEED = 20240501
IST = dt.timezone(dt.timedelta(hours=5, minutes=30))

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "ta")


def series():
    rng = np.random.default_rng(SEED)
    times, o, h, l, c, v = [], [], [], [], [], []
    day = dt.date(2024, 1, 1)
    price = 1500.0
    i = 0
    while len(c) < N:
        if day.weekday() < 5:
            t0 = dt.datetime(day.year, day.month, day.day, 9, 15, tzinfo=IST)
            for k in range(BARS_PER_DAY):
                if len(c) >= N:
                    break
                flat = 300 <= i < 330 or 1200 <= i < 1215
                op = price
                if flat:
                    cl = op
                    hi = lo = op
                else:
                    cl = max(1.0, op * (1.0 + rng.normal(0.0, 0.004)))
                    cl = round(cl * 20) / 20
                    wick_up = abs(rng.normal(0.0, 0.002)) * op
                    wick_dn = abs(rng.normal(0.0, 0.002)) * op
                    hi = round((max(op, cl) + wick_up) * 20) / 20
                    lo = round((min(op, cl) - wick_dn) * 20) / 20
                zero_vol = flat or (i % 97 == 13) or (k == 0 and i % 5 == 2)
                vol = 0 if zero_vol else int(rng.lognormal(9.0, 0.8))
                t = t0 + dt.timedelta(minutes=5 * k)
                times.append(t.astimezone(dt.timezone.utc))
                o.append(op)
                h.append(hi)
                l.append(lo)
                c.append(cl)
                v.append(float(vol))
                price = cl
                i += 1
        day += dt.timedelta(days=1)
    return times, [np.array(a, dtype=np.float64) for a in (o, h, l, c, v)]


def ref_vwap(times, h, l, c, v):
    out = []
    day = None
    pv = vol = 0.0
    for t, hi, lo, cl, vo in zip(times, h, l, c, v):
        d = t.astimezone(IST).date()
        if d != day:
            day, pv, vol = d, 0.0, 0.0
        pv += (hi + lo + cl) / 3.0 * vo
        vol += vo
        out.append(pv / vol if vol != 0.0 else math.nan)
    return np.array(out)


def ref_supertrend(h, l, c, period, mult):
    atr = talib.ATR(h, l, c, timeperiod=period)
    line = np.full(len(c), np.nan)
    direction = np.full(len(c), np.nan)
    upper = lower = None
    up = False
    for i in range(len(c)):
        if math.isnan(atr[i]):
            continue
        hl2 = (h[i] + l[i]) / 2.0
        bu = hl2 + mult * atr[i]
        bl = hl2 - mult * atr[i]
        if upper is None:
            upper, lower, up = bu, bl, False
        else:
            if bu < upper or c[i - 1] > upper:
                upper = bu
            if bl > lower or c[i - 1] < lower:
                lower = bl
            up = c[i] >= lower if up else c[i] > upper
        line[i] = lower if up else upper
        direction[i] = 1.0 if up else -1.0
    return line, direction


def main():
    times, (o, h, l, c, v) = series()
    cols = {}
    for p in (20, 30, 50):
        cols[f"sma{p}"] = talib.SMA(c, timeperiod=p)
    for p in (9, 20, 30):
        cols[f"ema{p}"] = talib.EMA(c, timeperiod=p)
    for p in (10, 20, 30):
        cols[f"wma{p}"] = talib.WMA(c, timeperiod=p)
    for p in (14, 7, 2):
        cols[f"rsi{p}"] = talib.RSI(c, timeperiod=p)
    for p in (10, 1):
        cols[f"roc{p}"] = talib.ROC(c, timeperiod=p)
    for p in (14, 10, 1):
        cols[f"atr{p}"] = talib.ATR(h, l, c, timeperiod=p)
    for f, s, g in ((12, 26, 9), (5, 35, 5), (26, 12, 9)):
        m, sig, hist = talib.MACD(c, fastperiod=f, slowperiod=s, signalperiod=g)
        cols[f"macd_{f}_{s}_{g}"] = m
        cols[f"macdsignal_{f}_{s}_{g}"] = sig
        cols[f"macdhist_{f}_{s}_{g}"] = hist
    for p, up, dn in ((20, 2.0, 2.0), (10, 1.5, 2.5), (5, 1.0, 1.0)):
        u, mid, lo = talib.BBANDS(c, timeperiod=p, nbdevup=up, nbdevdn=dn, matype=0)
        key = f"{p}_{up}_{dn}"
        cols[f"bbupper_{key}"] = u
        cols[f"bbmiddle_{key}"] = mid
        cols[f"bblower_{key}"] = lo
    for p in (14, 7):
        cols[f"adx{p}"] = talib.ADX(h, l, c, timeperiod=p)
        cols[f"plusdi{p}"] = talib.PLUS_DI(h, l, c, timeperiod=p)
        cols[f"minusdi{p}"] = talib.MINUS_DI(h, l, c, timeperiod=p)
    for fk, sk, sd in ((14, 3, 3), (5, 3, 3), (9, 1, 4)):
        k, d = talib.STOCH(h, l, c, fastk_period=fk, slowk_period=sk, slowk_matype=0,
                           slowd_period=sd, slowd_matype=0)
        cols[f"stochk_{fk}_{sk}_{sd}"] = k
        cols[f"stochd_{fk}_{sk}_{sd}"] = d
    cols["obv"] = talib.OBV(c, v)
    for p in (20, 55):
        cols[f"max{p}"] = talib.MAX(h, timeperiod=p)
        cols[f"min{p}"] = talib.MIN(l, timeperiod=p)
    cols["ref_vwap"] = ref_vwap(times, h, l, c, v)
    for p, m in ((10, 3.0), (7, 2.0)):
        line, direction = ref_supertrend(h, l, c, p, m)
        cols[f"ref_supertrend_{p}_{m}"] = line
        cols[f"ref_supertrend_dir_{p}_{m}"] = direction

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "series.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["time", "open", "high", "low", "close", "volume"])
        for i in range(N):
            w.writerow([times[i].strftime("%Y-%m-%dT%H:%M:%SZ"), repr(float(o[i])),
                        repr(float(h[i])), repr(float(l[i])), repr(float(c[i])), int(v[i])])
    names = list(cols)
    with open(os.path.join(OUT, "talib_expected.csv"), "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(names)
        for i in range(N):
            w.writerow([repr(float(cols[n][i])) for n in names])
    print(f"talib {talib.__version__} ({talib.__ta_version__.decode()}): wrote {N} rows, "
          f"{len(names)} columns to {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

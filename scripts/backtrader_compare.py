#!/usr/bin/env python3
"""Runs backtrader's SMA crossover on an OHLCV CSV the way `mft backtest` is configured for the
agreement check (issue 10, item 4), and prints its trades and final equity.

    pip install backtrader          # not a dependency of mft; only for this comparison
    python3 scripts/backtrader_compare.py tests/fixtures/ohlcv/nse_RELIANCE_daily_2020-2025.csv \
        [--fast 10 --slow 30 --qty 10 --cash 100000] [--trades out.csv] [--bench]

CSV columns: timestamp,open,high,low,close,volume[,oi] (timestamp like 2020-10-01 00:00:00+05:30
or 2024-01-01T09:15:00+05:30). Matching `mft backtest` settings: [strategy] exit = "cross",
ma = "sma", fast/slow, rsi_min = 0, rsi_max = 100; [backtest] fixed_quantity = qty,
fill = "next_open", costs = "none", slippage_bps = 0, initial_cash = cash.
With --bench it prints bars/s of the whole cerebro.run() (the same measure as
`cargo bench --bench backtest`: bars replayed divided by the wall time of the run).
"""
import argparse
import csv
import datetime as dt
import sys
import time

import backtrader as bt


def load(path):
    rows = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            ts = r["timestamp"].replace("T", " ")
            ts = dt.datetime.fromisoformat(ts).replace(tzinfo=None)
            rows.append((ts, float(r["open"]), float(r["high"]), float(r["low"]),
                         float(r["close"]), float(r["volume"])))
    return rows


class Feed(bt.feeds.DataBase):
    def __init__(self, rows):
        super().__init__()
        self.rows = rows
        self.i = 0

    def _load(self):
        if self.i >= len(self.rows):
            return False
        ts, o, h, l, c, v = self.rows[self.i]
        self.i += 1
        self.lines.datetime[0] = bt.date2num(ts)
        self.lines.open[0] = o
        self.lines.high[0] = h
        self.lines.low[0] = l
        self.lines.close[0] = c
        self.lines.volume[0] = v
        self.lines.openinterest[0] = 0
        return True


class SmaCross(bt.Strategy):
    params = dict(fast=10, slow=30, qty=10)

    def __init__(self):
        fast = bt.ind.SMA(period=self.p.fast)
        slow = bt.ind.SMA(period=self.p.slow)
        self.crossover = bt.ind.CrossOver(fast, slow)
        self.trades = []

    def next(self):
        if not self.position:
            if self.crossover > 0:
                self.buy(size=self.p.qty)
        elif self.crossover < 0:
            self.close()

    def notify_trade(self, trade):
        if trade.isclosed:
            self.trades.append(trade)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("--fast", type=int, default=10)
    ap.add_argument("--slow", type=int, default=30)
    ap.add_argument("--qty", type=int, default=10)
    ap.add_argument("--cash", type=float, default=100000.0)
    ap.add_argument("--trades")
    ap.add_argument("--bench", action="store_true")
    a = ap.parse_args()
    rows = load(a.csv)
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(Feed(rows))
    cerebro.addstrategy(SmaCross, fast=a.fast, slow=a.slow, qty=a.qty)
    cerebro.broker.setcash(a.cash)
    t0 = time.perf_counter()
    strat = cerebro.run()[0]
    elapsed = time.perf_counter() - t0
    out = csv.writer(open(a.trades, "w", newline="") if a.trades else sys.stdout)
    out.writerow(["entry_time", "exit_time", "entry_price", "exit_price", "pnl"])
    for t in strat.trades:
        # A closed trade's size is 0; the exit price follows from its P&L and the fixed size.
        exit_price = t.price + t.pnl / a.qty
        out.writerow([bt.num2date(t.dtopen).date(), bt.num2date(t.dtclose).date(),
                      f"{t.price:.2f}", f"{exit_price:.2f}", f"{t.pnl:.2f}"])
    pos = strat.position
    print(f"closed trades: {len(strat.trades)}; open position: {pos.size} @ {pos.price:.2f}",
          file=sys.stderr)
    print(f"final equity: {cerebro.broker.getvalue():.2f}", file=sys.stderr)
    if a.bench:
        print(f"bars: {len(rows)}; seconds: {elapsed:.3f}; bars/s: {len(rows) / elapsed:.0f}",
              file=sys.stderr)


if __name__ == "__main__":
    main()

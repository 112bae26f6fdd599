#!/usr/bin/env python3
"""Synthetic 1-minute bars (random walk on a 0.05 grid, 375 a weekday from 09:15 IST): the same
series as benches/backtest.rs. Usage: python3 scripts/synthetic_bars.py N > bars.csv"""
import sys, datetime as dt
M=(1<<64)-1
A=6364136223846793005; C=1442695040888963407
def bars(n, seed):
    x=(seed*A+C)&M
    def rnd():
        nonlocal x
        x=(x*A+C)&M
        return ((x>>11)/float(1<<53))-0.5
    day=dt.date(2022,1,3); out=[]; price=1000.0; minute=0
    while len(out)<n:
        if minute==375:
            minute=0
            while True:
                day+=dt.timedelta(days=1)
                if day.weekday()<5: break
        o=price
        c=max(price*(1.0+rnd()*0.004),1.0)
        h=max(o,c)*(1.0+abs(rnd())*0.001)
        l=min(o,c)*(1.0-abs(rnd())*0.001)
        t=dt.datetime.combine(day,dt.time(9,15))+dt.timedelta(minutes=minute)
        r=lambda v: round(v*20.0)/20.0
        out.append((t,r(o),r(h),r(l),r(c)))
        price=c; minute+=1
    return out
n=int(sys.argv[1])
print("timestamp,open,high,low,close,volume,oi")
for t,o,h,l,c in bars(n,7):
    print(f"{t.isoformat()}+05:30,{o},{h},{l},{c},1000,0")

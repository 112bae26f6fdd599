//! `Store::last_prices` (one query for many instruments) agrees with `Store::last_price` on
//! every backend: the preferred interval's latest close, the fallback to other intervals, none.

mod support;

use chrono::{Duration, TimeZone, Utc};
use mft::domain::{Candle, InstrumentKey, Interval, Paise};
use support::db::test_stores;

fn candle(ts: chrono::DateTime<Utc>, close: f64) -> Candle {
    Candle {
        ts,
        open: close,
        high: close + 1.0,
        low: close - 1.0,
        close,
        volume: 10,
        oi: None,
    }
}

#[tokio::test]
async fn last_prices_agree_with_last_price() {
    for db in test_stores().await {
        let name = db.name;
        let store = &db.store;
        let t = Utc.with_ymd_and_hms(2026, 11, 25, 4, 0, 0).unwrap();
        let m15 = Interval::Minute15;
        let a: InstrumentKey = "NSE:A".parse().unwrap();
        let b: InstrumentKey = "NSE:B".parse().unwrap();
        let c: InstrumentKey = "NSE:C".parse().unwrap();
        let d: InstrumentKey = "NSE:D".parse().unwrap();
        // A: several 15-minute candles (the latest counts) and a later daily one (ignored).
        store
            .upsert_candles(
                &a,
                m15,
                &[candle(t, 10.0), candle(t + Duration::minutes(15), 11.5)],
            )
            .await
            .unwrap();
        store
            .upsert_candles(&a, Interval::Day, &[candle(t + Duration::days(1), 99.0)])
            .await
            .unwrap();
        // B: no 15-minute candles: the candle that ends last, of any interval.
        store
            .upsert_candles(&b, Interval::Minute, &[candle(t, 20.25)])
            .await
            .unwrap();
        store
            .upsert_candles(
                &b,
                Interval::Minute5,
                &[candle(t - Duration::hours(1), 21.0)],
            )
            .await
            .unwrap();
        // D: only 15-minute candles, an older one first.
        store
            .upsert_candles(
                &d,
                m15,
                &[candle(t - Duration::days(2), 7.0), candle(t, 7.05)],
            )
            .await
            .unwrap();
        let keys = vec![a.clone(), b.clone(), c.clone(), d.clone(), a.clone()];
        let batch = store.last_prices(&keys, m15).await.unwrap();
        let mut one = Vec::new();
        for k in &keys {
            one.push(store.last_price(k, m15).await.unwrap());
        }
        assert_eq!(batch, one, "{name}");
        assert_eq!(
            batch,
            vec![
                Some(Paise(1150)),
                Some(Paise(2025)),
                None,
                Some(Paise(705)),
                Some(Paise(1150))
            ],
            "{name}"
        );
        assert!(
            store.last_prices(&[], m15).await.unwrap().is_empty(),
            "{name}"
        );
    }
}

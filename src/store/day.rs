//! What today's P&L needs from the store: today's fills summed per instrument and the previous
//! session's closing prices (see `risk::day` for how they combine).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{QueryContext, Store, StoreError, on_pool};
use crate::domain::{InstrumentKey, Interval, Paise};

/// One instrument's fills since a moment, summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FillsSummary {
    /// Net signed quantity: buys positive, sells negative.
    pub net_quantity: i64,
    /// Σ quantity × price with the same signs: what buying cost (positive) less what selling
    /// brought in.
    pub net_cash: Paise,
    /// Realized P&L booked by those fills.
    pub realized: Paise,
}

impl Store {
    /// Fills at or after `since`, summed per instrument.
    pub async fn fills_by_instrument_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<BTreeMap<InstrumentKey, FillsSummary>, StoreError> {
        let rows = on_pool!(self, pool => {
            sqlx::query_as::<_, (String, String, i64, i64, i64)>(
                "SELECT instrument, side, quantity, price, realized_pnl FROM fills WHERE ts >= $1",
            )
            .bind(since)
            .fetch_all(pool)
            .await
            .ctx("reading today's fills")?
        });
        let mut out: BTreeMap<InstrumentKey, FillsSummary> = BTreeMap::new();
        for (instrument, side, quantity, price, realized) in rows {
            let key: InstrumentKey = instrument.parse().map_err(|e| {
                StoreError::Corrupt(format!("fills.instrument {instrument:?}: {e}"))
            })?;
            let sign = match side.as_str() {
                "BUY" => 1,
                "SELL" => -1,
                other => {
                    return Err(StoreError::Corrupt(format!(
                        "fills.side {other:?} of {instrument}"
                    )));
                }
            };
            let cash = price.checked_mul(quantity).ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "a fill of {instrument}: {quantity} x {price} paise overflows"
                ))
            })?;
            let s = out.entry(key).or_default();
            s.net_quantity += sign * quantity;
            s.net_cash += Paise(sign * cash);
            s.realized += Paise(realized);
        }
        Ok(out)
    }

    /// For each key, the close of the last candle that starts before `before` (the previous
    /// session's close when `before` is today's IST midnight): `preferred` first, else `day`.
    pub async fn closes_before(
        &self,
        keys: &[InstrumentKey],
        preferred: Interval,
        before: DateTime<Utc>,
    ) -> Result<Vec<Option<Paise>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let mut found = None;
            for interval in [preferred, Interval::Day] {
                let name = key.to_string();
                let close: Option<f64> = match self.pool() {
                    // SQLite keeps candles.ts as epoch seconds, PostgreSQL as TIMESTAMPTZ.
                    super::Pool::Sqlite(pool) => sqlx::query_scalar(
                        "SELECT c.close FROM candles c JOIN series s ON c.series_id = s.id \
                         WHERE s.instrument = $1 AND s.interval = $2 AND c.ts < $3 \
                         ORDER BY c.ts DESC LIMIT 1",
                    )
                    .bind(&name)
                    .bind(interval.as_str())
                    .bind(before.timestamp())
                    .fetch_optional(pool)
                    .await
                    .ctx("reading the previous session's close")?,
                    super::Pool::Postgres(pool) => sqlx::query_scalar(
                        "SELECT c.close FROM candles c JOIN series s ON c.series_id = s.id \
                         WHERE s.instrument = $1 AND s.interval = $2 AND c.ts < $3 \
                         ORDER BY c.ts DESC LIMIT 1",
                    )
                    .bind(&name)
                    .bind(interval.as_str())
                    .bind(before)
                    .fetch_optional(pool)
                    .await
                    .ctx("reading the previous session's close")?,
                };
                if let Some(c) = close {
                    found = Some(Paise::from_rupees_f64(c));
                    break;
                }
            }
            out.push(found);
        }
        Ok(out)
    }
}

//! Position arithmetic: applying a fill to a net position (signed quantity), with the average
//! price on additions and realized P&L on reductions and flips. Pure, so it is tested alone.

use chrono::{DateTime, Utc};

use crate::domain::{InstrumentKey, Paise, Position, Product, Side};

/// The position after a fill and the P&L that fill realized.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub position: Position,
    pub realized: Paise,
    /// True when the fill closed the position or flipped it through zero.
    pub closed: bool,
}

/// The fill's money arithmetic did not fit in i64 paise (an absurd price or quantity).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "money arithmetic overflowed applying {side} {quantity} at {price} to {key}: the price or quantity is absurd"
)]
pub struct FillOverflow {
    pub key: InstrumentKey,
    pub side: Side,
    pub quantity: i64,
    pub price: Paise,
}

/// Applies a fill of `quantity` (> 0) at `price` on `side` to `prev` (None or flat: a new
/// position). Additions average the price (rounded to the nearest paisa); reductions realize
/// (price - avg) x closed quantity in the position's direction; a flip realizes the whole old
/// position and opens the rest at the fill price. Every sum is checked: an overflow is an
/// error, never a wrapped or saturated amount.
pub fn apply_fill(
    prev: Option<&Position>,
    key: &InstrumentKey,
    product: Product,
    side: Side,
    quantity: i64,
    price: Paise,
    at: DateTime<Utc>,
) -> Result<Applied, FillOverflow> {
    let overflow = || FillOverflow {
        key: key.clone(),
        side,
        quantity,
        price,
    };
    let signed = side.sign().checked_mul(quantity).ok_or_else(overflow)?;
    let carried_realized = prev.map_or(Paise::ZERO, |p| p.realized_pnl);
    let fresh = |qty: i64, realized_total: Paise| Position {
        key: key.clone(),
        product,
        quantity: qty,
        avg_price: price,
        realized_pnl: realized_total,
        stop: None,
        target: None,
        opened_at: at,
        updated_at: at,
    };
    let Some(p) = prev.filter(|p| p.quantity != 0) else {
        return Ok(Applied {
            position: fresh(signed, carried_realized),
            realized: Paise::ZERO,
            closed: false,
        });
    };
    if p.quantity.signum() == signed.signum() {
        let old = p.quantity.abs() as i128;
        let add = quantity as i128;
        let avg = div_round(
            p.avg_price.0 as i128 * old + price.0 as i128 * add,
            old + add,
        );
        let mut position = p.clone();
        position.quantity = p.quantity.checked_add(signed).ok_or_else(overflow)?;
        position.avg_price = Paise(i64::try_from(avg).map_err(|_| overflow())?);
        position.updated_at = at;
        return Ok(Applied {
            position,
            realized: Paise::ZERO,
            closed: false,
        });
    }
    let closing = p.quantity.abs().min(quantity);
    let realized = price
        .checked_sub(p.avg_price)
        .and_then(|d| d.checked_mul(closing * p.quantity.signum()))
        .ok_or_else(overflow)?;
    let remaining = p.quantity.checked_add(signed).ok_or_else(overflow)?;
    let realized_total = p.realized_pnl.checked_add(realized).ok_or_else(overflow)?;
    if remaining == 0 || remaining.signum() == p.quantity.signum() {
        let mut position = p.clone();
        position.quantity = remaining;
        position.realized_pnl = realized_total;
        position.updated_at = at;
        if remaining == 0 {
            position.stop = None;
            position.target = None;
        }
        return Ok(Applied {
            position,
            realized,
            closed: remaining == 0,
        });
    }
    Ok(Applied {
        position: fresh(remaining, realized_total),
        realized,
        closed: true,
    })
}

/// Integer division rounded half away from zero (den > 0).
fn div_round(num: i128, den: i128) -> i128 {
    if num >= 0 {
        (num * 2 + den) / (den * 2)
    } else {
        -((-num * 2 + den) / (den * 2))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 4, min, 0)
            .single()
            .expect("time")
    }

    fn key() -> InstrumentKey {
        InstrumentKey::new("NSE", "INFY")
    }

    fn fill(prev: Option<&Position>, side: Side, qty: i64, rupees: i64, min: u32) -> Applied {
        apply_fill(
            prev,
            &key(),
            Product::Mis,
            side,
            qty,
            Paise::from_rupees(rupees),
            t(min),
        )
        .expect("no overflow")
    }

    #[test]
    fn an_absurd_price_is_an_overflow_error_not_a_wrapped_pnl() {
        let long = fill(None, Side::Buy, 188, 70, 0).position;
        let err = apply_fill(
            Some(&long),
            &key(),
            Product::Mis,
            Side::Sell,
            188,
            Paise(i64::MAX / 100),
            t(1),
        )
        .unwrap_err();
        assert!(err.to_string().contains("overflowed"), "{err}");
        let add = apply_fill(
            Some(&long),
            &key(),
            Product::Mis,
            Side::Buy,
            i64::MAX,
            Paise(1),
            t(1),
        );
        assert!(add.is_err());
    }

    #[test]
    fn opening_adding_and_averaging() {
        let a = fill(None, Side::Buy, 10, 100, 0);
        assert_eq!(a.position.quantity, 10);
        assert_eq!(a.position.avg_price, Paise::from_rupees(100));
        assert_eq!(a.realized, Paise::ZERO);
        let b = fill(Some(&a.position), Side::Buy, 5, 103, 1);
        assert_eq!(b.position.quantity, 15);
        assert_eq!(b.position.avg_price, Paise::from_rupees(101));
        assert_eq!(b.position.opened_at, t(0));
        // 1 @ 100.00 + 2 @ 100.01 -> 100.00666.. -> 100.01
        let c = apply_fill(None, &key(), Product::Mis, Side::Buy, 1, Paise(10000), t(0)).unwrap();
        let d = apply_fill(
            Some(&c.position),
            &key(),
            Product::Mis,
            Side::Buy,
            2,
            Paise(10001),
            t(1),
        )
        .unwrap();
        assert_eq!(d.position.avg_price, Paise(10001));
    }

    #[test]
    fn reducing_and_closing_realize_pnl() {
        let long = fill(None, Side::Buy, 10, 100, 0).position;
        let r = fill(Some(&long), Side::Sell, 4, 110, 1);
        assert_eq!(r.position.quantity, 6);
        assert_eq!(r.realized, Paise::from_rupees(40));
        assert_eq!(r.position.avg_price, Paise::from_rupees(100));
        assert!(!r.closed);
        let c = fill(Some(&r.position), Side::Sell, 6, 90, 2);
        assert_eq!(c.position.quantity, 0);
        assert_eq!(c.realized, Paise::from_rupees(-60));
        assert_eq!(c.position.realized_pnl, Paise::from_rupees(-20));
        assert!(c.closed);
    }

    #[test]
    fn shorts_realize_with_the_opposite_sign() {
        let short = fill(None, Side::Sell, 10, 200, 0);
        assert_eq!(short.position.quantity, -10);
        assert_eq!(
            short.position.unrealized(Paise::from_rupees(190)),
            Paise::from_rupees(100)
        );
        let cover = fill(Some(&short.position), Side::Buy, 10, 190, 1);
        assert_eq!(cover.realized, Paise::from_rupees(100));
        assert_eq!(cover.position.quantity, 0);
    }

    #[test]
    fn a_flip_realizes_the_old_position_and_opens_the_rest_at_the_fill() {
        let long = fill(None, Side::Buy, 10, 100, 0).position;
        let f = fill(Some(&long), Side::Sell, 15, 105, 3);
        assert_eq!(f.realized, Paise::from_rupees(50));
        assert_eq!(f.position.quantity, -5);
        assert_eq!(f.position.avg_price, Paise::from_rupees(105));
        assert_eq!(f.position.opened_at, t(3));
        assert_eq!(f.position.realized_pnl, Paise::from_rupees(50));
        assert!(f.closed);
    }

    #[test]
    fn reopening_a_flat_position_starts_fresh() {
        let long = fill(None, Side::Buy, 10, 100, 0).position;
        let flat = fill(Some(&long), Side::Sell, 10, 101, 1).position;
        let again = fill(Some(&flat), Side::Buy, 3, 120, 5);
        assert_eq!(again.position.quantity, 3);
        assert_eq!(again.position.avg_price, Paise::from_rupees(120));
        assert_eq!(again.position.opened_at, t(5));
        assert_eq!(again.position.realized_pnl, Paise::from_rupees(10));
    }
}

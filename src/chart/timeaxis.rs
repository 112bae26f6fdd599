//! Time-axis labels for index-based charts: candidates from bar timestamps (IST), placed greedily
//! by importance so they never overlap.

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::clock::IST;

/// A label the axis could show.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Candidate {
    pub index: usize,
    pub text: String,
    /// Lower is more important; placed first.
    pub priority: u8,
    /// Starts a new day (intraday) or month (daily): left-aligned at the bar's left edge and
    /// drawn with a separator line.
    pub boundary: bool,
}

/// A label that fits, with its horizontal extent in pixels.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Placed {
    pub index: usize,
    pub text: String,
    pub boundary: bool,
    pub left: i32,
    pub right: i32,
}

/// True when some two consecutive bars share an IST date: the series is intraday.
pub(crate) fn is_intraday(ts: &[DateTime<Utc>]) -> bool {
    ts.windows(2)
        .any(|w| w[0].with_timezone(&IST).date_naive() == w[1].with_timezone(&IST).date_naive())
}

/// Indices where a new IST day starts (not counting bar 0).
pub(crate) fn day_starts(ts: &[DateTime<Utc>]) -> Vec<usize> {
    (1..ts.len())
        .filter(|&i| {
            ts[i].with_timezone(&IST).date_naive() != ts[i - 1].with_timezone(&IST).date_naive()
        })
        .collect()
}

/// Label candidates. `long_dates` adds the weekday to intraday day labels ("Tue 19 Nov").
pub(crate) fn candidates(ts: &[DateTime<Utc>], long_dates: bool) -> Vec<Candidate> {
    let mut out = Vec::new();
    let intraday = is_intraday(ts);
    let mut year_shown = false;
    for (i, t) in ts.iter().enumerate() {
        let local = t.with_timezone(&IST);
        let prev = i.checked_sub(1).map(|p| ts[p].with_timezone(&IST));
        if intraday {
            let new_day = prev.is_none_or(|p| p.date_naive() != local.date_naive());
            if new_day {
                let new_week = prev.is_none_or(|p| p.iso_week() != local.iso_week());
                let text = if long_dates {
                    local.format("%a %-d %b").to_string()
                } else {
                    local.format("%-d %b").to_string()
                };
                out.push(Candidate {
                    index: i,
                    text,
                    priority: if new_week { 0 } else { 1 },
                    boundary: true,
                });
            } else {
                let (h, m) = (local.hour(), local.minute());
                let priority = if m == 0 && h % 2 == 0 {
                    2
                } else if m == 0 {
                    3
                } else if m == 30 {
                    4
                } else {
                    continue;
                };
                out.push(Candidate {
                    index: i,
                    text: local.format("%H:%M").to_string(),
                    priority,
                    boundary: false,
                });
            }
        } else {
            let year_change = prev.is_some_and(|p| p.year() != local.year());
            let month_change = prev.is_some_and(|p| p.month() != local.month());
            let week_change = prev.is_some_and(|p| p.iso_week() != local.iso_week());
            if prev.is_none() {
                out.push(Candidate {
                    index: i,
                    text: local.format("%-d %b").to_string(),
                    priority: 4,
                    boundary: false,
                });
            } else if year_change || (month_change && !year_shown) {
                // The first month shown carries the year, so the chart is dated even without
                // a year change in view.
                year_shown = true;
                out.push(Candidate {
                    index: i,
                    text: local.format("%b %Y").to_string(),
                    priority: 0,
                    boundary: true,
                });
            } else if month_change {
                out.push(Candidate {
                    index: i,
                    text: local.format("%b").to_string(),
                    priority: 1,
                    boundary: true,
                });
            } else if week_change {
                out.push(Candidate {
                    index: i,
                    text: local.format("%-d").to_string(),
                    priority: 3,
                    boundary: false,
                });
            }
        }
    }
    out
}

/// Place candidates by priority, then time, skipping any that would overlap a placed label
/// (with `gap` pixels between) or leave `min_x..=max_x`.
///
/// `x_of(index)` is the bar's centre, `half_bar` half the bar spacing, `width(text)` the text
/// width in pixels.
pub(crate) fn place(
    cands: &[Candidate],
    x_of: impl Fn(usize) -> f64,
    half_bar: f64,
    mut width: impl FnMut(&str) -> i32,
    min_x: i32,
    max_x: i32,
    gap: i32,
) -> Vec<Placed> {
    let mut order: Vec<&Candidate> = cands.iter().collect();
    order.sort_by_key(|c| (c.priority, c.index));
    let mut placed: Vec<Placed> = Vec::new();
    // Once an important label does not fit, less important ones would fill its place and
    // mislead (a week number where a month name belongs), so they are dropped.
    let mut cutoff = u8::MAX;
    for c in order {
        if c.priority > cutoff {
            break;
        }
        let w = width(&c.text);
        let x = x_of(c.index);
        let left = if c.boundary {
            (x - half_bar).round() as i32 + 4
        } else {
            (x - w as f64 / 2.0).round() as i32
        };
        // Bar 0's label may start at the plot edge rather than be dropped.
        let left = if c.index == 0 { left.max(min_x) } else { left };
        let right = left + w;
        let clash = placed
            .iter()
            .any(|p| left < p.right + gap && right + gap > p.left);
        if left < min_x || right > max_x || clash {
            if c.boundary && c.index > 0 {
                cutoff = cutoff.min(c.priority);
            }
            continue;
        }
        placed.push(Placed {
            index: c.index,
            text: c.text.clone(),
            boundary: c.boundary,
            left,
            right,
        });
    }
    placed.sort_by_key(|p| p.left);
    placed
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn ist(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> DateTime<Utc> {
        IST.with_ymd_and_hms(y, mo, d, h, mi, 0)
            .single()
            .map(|t| t.with_timezone(&Utc))
            .expect("valid IST time")
    }

    #[test]
    fn intraday_labels_days_and_round_hours() {
        let ts = vec![
            ist(2025, 11, 21, 14, 45),
            ist(2025, 11, 21, 15, 0),
            ist(2025, 11, 24, 9, 15),
            ist(2025, 11, 24, 10, 0),
        ];
        assert!(is_intraday(&ts));
        assert_eq!(day_starts(&ts), vec![2]);
        let c = candidates(&ts, true);
        assert_eq!(c[0].text, "Fri 21 Nov");
        assert!(c[0].boundary);
        assert_eq!(c[1].text, "15:00");
        assert_eq!(c[2].text, "Mon 24 Nov");
        assert_eq!(c[2].priority, 0, "a new week outranks other days");
        assert_eq!(c[3].text, "10:00");
    }

    #[test]
    fn daily_labels_months_and_years() {
        let ts = vec![
            ist(2024, 12, 30, 0, 0),
            ist(2024, 12, 31, 0, 0),
            ist(2025, 1, 1, 0, 0),
            ist(2025, 2, 3, 0, 0),
        ];
        assert!(!is_intraday(&ts));
        let c = candidates(&ts, true);
        let texts: Vec<&str> = c.iter().map(|c| c.text.as_str()).collect();
        assert_eq!(texts, vec!["30 Dec", "Jan 2025", "Feb"]);
    }

    #[test]
    fn placement_never_overlaps() {
        let cands: Vec<Candidate> = (0..100)
            .map(|i| Candidate {
                index: i,
                text: format!("{i:05}"),
                priority: (i % 4) as u8,
                boundary: i % 10 == 0,
            })
            .collect();
        let placed = place(&cands, |i| 10.0 + i as f64 * 9.0, 4.5, |_| 50, 0, 910, 10);
        assert!(placed.len() > 5);
        for w in placed.windows(2) {
            assert!(w[0].right + 10 <= w[1].left, "{w:?}");
        }
    }
}

//! The trading window and trading days as typed values, parsed once when settings load: a bad
//! string is a configuration error at start, never a silent fallback at check time.

use std::fmt;
use std::str::FromStr;

use chrono::{NaiveTime, Weekday};
use serde::{Deserialize, Serialize};

/// `"HH:MM-HH:MM"` in IST, start strictly before end (a window never spans midnight).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TradingWindow {
    start: NaiveTime,
    end: NaiveTime,
}

impl TradingWindow {
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, String> {
        if start >= end {
            return Err(format!(
                "start {} is not before end {} (windows cannot span midnight)",
                start.format("%H:%M"),
                end.format("%H:%M")
            ));
        }
        Ok(Self { start, end })
    }

    pub fn start(&self) -> NaiveTime {
        self.start
    }

    pub fn end(&self) -> NaiveTime {
        self.end
    }

    /// Both ends are inside: an order at 15:10:00 with a window ending 15:10 is allowed.
    pub fn contains(&self, t: NaiveTime) -> bool {
        t >= self.start && t <= self.end
    }
}

impl FromStr for TradingWindow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "expected \"HH:MM-HH:MM\" in IST with start before end, e.g. \"09:20-15:10\", got {s:?}"
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let start = NaiveTime::parse_from_str(a.trim(), "%H:%M").map_err(|_| bad())?;
        let end = NaiveTime::parse_from_str(b.trim(), "%H:%M").map_err(|_| bad())?;
        Self::new(start, end).map_err(|e| format!("{e}; got {s:?}"))
    }
}

impl TryFrom<String> for TradingWindow {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TradingWindow> for String {
    fn from(w: TradingWindow) -> String {
        w.to_string()
    }
}

impl fmt::Display for TradingWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.format("%H:%M"),
            self.end.format("%H:%M")
        )
    }
}

impl Default for TradingWindow {
    fn default() -> Self {
        Self {
            start: NaiveTime::from_hms_opt(9, 20, 0).unwrap_or(NaiveTime::MIN),
            end: NaiveTime::from_hms_opt(15, 10, 0).unwrap_or(NaiveTime::MIN),
        }
    }
}

/// A set of weekdays: `"Mon-Fri"`, `"Mon,Tue,Thu"` or mixes (`"Mon-Wed,Fri"`); never empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TradingDays {
    /// Bit `n` is the day `n` days from Monday.
    mask: u8,
}

impl TradingDays {
    pub fn contains(&self, day: Weekday) -> bool {
        self.mask & (1 << day.num_days_from_monday()) != 0
    }

    /// The days, Monday first.
    pub fn days(&self) -> Vec<Weekday> {
        (0..7u8)
            .filter(|d| self.mask & (1 << d) != 0)
            .filter_map(|d| Weekday::try_from(d).ok())
            .collect()
    }
}

impl FromStr for TradingDays {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let hint = "use day names Mon..Sun as a range or a comma list, e.g. \"Mon-Fri\" or \"Mon,Wed,Fri\"";
        let day = |t: &str| {
            Weekday::from_str(t.trim())
                .map_err(|_| format!("unknown day {:?} in {s:?}: {hint}", t.trim()))
        };
        let mut mask = 0u8;
        for part in s.split(',').map(str::trim) {
            if part.is_empty() {
                continue;
            }
            match part.split_once('-') {
                Some((a, b)) => {
                    let (from, to) = (
                        day(a)?.num_days_from_monday(),
                        day(b)?.num_days_from_monday(),
                    );
                    if from > to {
                        return Err(format!(
                            "range {part:?} runs backwards (weeks start on Monday): {hint}"
                        ));
                    }
                    for d in from..=to {
                        mask |= 1 << d;
                    }
                }
                None => mask |= 1 << day(part)?.num_days_from_monday(),
            }
        }
        if mask == 0 {
            return Err(format!("no trading day given: {hint}"));
        }
        Ok(Self { mask })
    }
}

impl TryFrom<String> for TradingDays {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<TradingDays> for String {
    fn from(d: TradingDays) -> String {
        d.to_string()
    }
}

/// Consecutive days print as a range: Mon-Fri, Mon,Wed-Fri.
impl fmt::Display for TradingDays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.days();
        let mut parts = Vec::new();
        let mut i = 0;
        while i < days.len() {
            let mut j = i;
            while j + 1 < days.len()
                && days[j + 1].num_days_from_monday() == days[j].num_days_from_monday() + 1
            {
                j += 1;
            }
            let name = |d: Weekday| format!("{d}");
            if j > i {
                parts.push(format!("{}-{}", name(days[i]), name(days[j])));
            } else {
                parts.push(name(days[i]));
            }
            i = j + 1;
        }
        f.write_str(&parts.join(","))
    }
}

impl Default for TradingDays {
    fn default() -> Self {
        Self { mask: 0b0001_1111 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Weekday::*;

    fn nt(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn window_parses_once_and_prints_back() {
        let w: TradingWindow = "09:20-15:10".parse().unwrap();
        assert_eq!((w.start(), w.end()), (nt(9, 20), nt(15, 10)));
        assert_eq!(w, TradingWindow::default());
        assert_eq!(w.to_string(), "09:20-15:10");
        assert!(w.contains(nt(15, 10)) && w.contains(nt(9, 20)) && !w.contains(nt(15, 11)));
        for bad in ["garbage", "15:10-09:20", "09:20-09:20", "9-10", ""] {
            assert!(bad.parse::<TradingWindow>().is_err(), "{bad}");
        }
    }

    #[test]
    fn days_parse_ranges_and_lists_and_print_compactly() {
        let d: TradingDays = "fri, Mon-Tue,Mon".parse().unwrap();
        assert_eq!(d.days(), vec![Mon, Tue, Fri]);
        assert_eq!(d.to_string(), "Mon-Tue,Fri");
        assert_eq!(TradingDays::default().to_string(), "Mon-Fri");
        assert_eq!("Mon-Sun".parse::<TradingDays>().unwrap().days().len(), 7);
        assert!(d.contains(Fri) && !d.contains(Wed));
        for bad in ["Funday", "Fri-Mon", "", " , "] {
            assert!(bad.parse::<TradingDays>().is_err(), "{bad}");
        }
    }

    #[test]
    fn serde_round_trip_and_errors_name_the_problem() {
        #[derive(Deserialize, Serialize)]
        struct R {
            w: TradingWindow,
            d: TradingDays,
        }
        let r: R = toml::from_str("w = \"10:00-11:00\"\nd = \"Mon,Wed\"").unwrap();
        assert_eq!(
            toml::to_string(&r).unwrap(),
            "w = \"10:00-11:00\"\nd = \"Mon,Wed\"\n"
        );
        let e = toml::from_str::<R>("w = \"11:00-10:00\"\nd = \"Mon\"")
            .err()
            .unwrap();
        assert!(e.message().contains("not before end"), "{e}");
    }
}

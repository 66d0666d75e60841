//! Calendar periods used by retention rules ("2 months", "3 weeks", "10 years").

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use time::{Date, Duration, Month, OffsetDateTime};

/// The unit of a [`Period`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    Days,
    Weeks,
    Months,
    Years,
}

/// A calendar period. Months and years follow the calendar (a record made on
/// 31 January and kept "1 month" is due on the last day of February), so the
/// figure on the policy page and the behaviour of the retention engine agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Period {
    pub amount: u32,
    pub unit: Unit,
}

/// Why a period string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{input}` is not a period: write a whole number and a unit, e.g. \"30 days\", \"3 weeks\", \"2 months\" or \"10 years\""
)]
pub struct PeriodError {
    pub input: String,
}

impl Period {
    pub const fn new(amount: u32, unit: Unit) -> Self {
        Self { amount, unit }
    }

    /// The instant this period after `start`.
    pub fn after(&self, start: OffsetDateTime) -> OffsetDateTime {
        match self.unit {
            Unit::Days => start + Duration::days(i64::from(self.amount)),
            Unit::Weeks => start + Duration::weeks(i64::from(self.amount)),
            Unit::Months => add_months(start, self.amount),
            Unit::Years => add_months(start, self.amount.saturating_mul(12)),
        }
    }

    /// The instant this period before `end`: records created before it are due.
    pub fn before(&self, end: OffsetDateTime) -> OffsetDateTime {
        match self.unit {
            Unit::Days => end - Duration::days(i64::from(self.amount)),
            Unit::Weeks => end - Duration::weeks(i64::from(self.amount)),
            Unit::Months => sub_months(end, self.amount),
            Unit::Years => sub_months(end, self.amount.saturating_mul(12)),
        }
    }

    /// An upper bound of the period in days, for comparisons between rules.
    pub fn max_days(&self) -> u64 {
        let n = u64::from(self.amount);
        match self.unit {
            Unit::Days => n,
            Unit::Weeks => n * 7,
            Unit::Months => n * 31,
            Unit::Years => n * 366,
        }
    }
}

fn shift_months(date: Date, months: i64) -> Date {
    let total = i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + months;
    let year = i32::try_from(total.div_euclid(12)).unwrap_or(i32::MAX);
    let month_index = u8::try_from(total.rem_euclid(12) + 1).unwrap_or(1);
    let month = Month::try_from(month_index).unwrap_or(Month::January);
    let last = time::util::days_in_month(month, year);
    let day = date.day().min(last);
    Date::from_calendar_date(year, month, day).unwrap_or(date)
}

fn add_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    t.replace_date(shift_months(t.date(), i64::from(months)))
}

fn sub_months(t: OffsetDateTime, months: u32) -> OffsetDateTime {
    t.replace_date(shift_months(t.date(), -i64::from(months)))
}

impl FromStr for Period {
    type Err = PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || PeriodError { input: s.to_string() };
        let mut parts = s.split_whitespace();
        let amount: u32 = parts.next().ok_or_else(err)?.parse().map_err(|_| err())?;
        let unit = match parts.next().ok_or_else(err)? {
            "day" | "days" => Unit::Days,
            "week" | "weeks" => Unit::Weeks,
            "month" | "months" => Unit::Months,
            "year" | "years" => Unit::Years,
            _ => return Err(err()),
        };
        if parts.next().is_some() || amount == 0 {
            return Err(err());
        }
        Ok(Self { amount, unit })
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match (self.unit, self.amount == 1) {
            (Unit::Days, true) => "day",
            (Unit::Days, false) => "days",
            (Unit::Weeks, true) => "week",
            (Unit::Weeks, false) => "weeks",
            (Unit::Months, true) => "month",
            (Unit::Months, false) => "months",
            (Unit::Years, true) => "year",
            (Unit::Years, false) => "years",
        };
        write!(f, "{} {}", self.amount, word)
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn parses_and_displays() {
        let p: Period = "2 months".parse().expect("valid");
        assert_eq!(p, Period::new(2, Unit::Months));
        assert_eq!(p.to_string(), "2 months");
        assert_eq!("1 year".parse::<Period>().expect("valid").to_string(), "1 year");
        for bad in ["", "2", "two months", "2 fortnights", "0 days", "2 months later", "-1 days"] {
            assert!(bad.parse::<Period>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn months_follow_the_calendar() {
        let p = Period::new(1, Unit::Months);
        assert_eq!(p.after(datetime!(2026-01-31 10:00 UTC)), datetime!(2026-02-28 10:00 UTC));
        assert_eq!(p.before(datetime!(2026-03-31 10:00 UTC)), datetime!(2026-02-28 10:00 UTC));
        let y = Period::new(2, Unit::Years);
        assert_eq!(y.after(datetime!(2024-02-29 00:00 UTC)), datetime!(2026-02-28 00:00 UTC));
        let w = Period::new(3, Unit::Weeks);
        assert_eq!(w.after(datetime!(2026-11-01 00:00 UTC)), datetime!(2026-11-22 00:00 UTC));
    }
}

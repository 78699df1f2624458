//! Spend caps: the most an API key may spend per day, week, month or rolling period, and the
//! exact UTC calendar windows they are counted in.
//!
//! The calendar math is integer civil-date arithmetic on the proleptic Gregorian calendar in
//! UTC (no time zones, no leap seconds, as Unix time has none): exact at month ends, on
//! February 29 and from December 31 to January 1.
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use tollgate_core::spend::{CapPeriod, from_unix_millis, rfc3339};
//!
//! // 2028-02-29T13:00:00Z, a leap day.
//! let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_835_442_000);
//! let month = CapPeriod::Month.window(at).unwrap();
//! assert_eq!(rfc3339(month.start()), "2028-02-01T00:00:00Z");
//! assert_eq!(rfc3339(month.end()), "2028-03-01T00:00:00Z");
//! assert_eq!(month.to_string(), "2028-02");
//! let week = CapPeriod::Week.window(at).unwrap();
//! assert_eq!(rfc3339(week.start()), "2028-02-28T00:00:00Z", "a Monday");
//! assert_eq!(week.to_string(), "2028-W09");
//! assert!(CapPeriod::Rolling(Duration::from_secs(3600)).window(at).is_none());
//! assert_eq!(from_unix_millis(0), SystemTime::UNIX_EPOCH);
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// The longest rolling period: ten years of days.
const MAX_ROLLING: Duration = Duration::from_secs(3_660 * 86_400);

/// What a [`SpendCap`] is counted over.
///
/// Calendar periods are aligned in UTC: a day starts at 00:00, a week on Monday 00:00 (ISO
/// 8601), a month on its first day at 00:00. A rolling period is the trailing `Duration`
/// before each request (see [`CapPeriod::window`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CapPeriod {
    /// A UTC calendar day.
    Day,
    /// An ISO week: Monday 00:00 UTC to the next Monday.
    Week,
    /// A UTC calendar month.
    Month,
    /// The trailing period of this length, from a millisecond to ten years.
    Rolling(Duration),
}

impl CapPeriod {
    /// The period's name, as errors and storage keys spell it: `day`, `week`, `month` or
    /// `rolling`.
    ///
    /// ```
    /// use tollgate_core::spend::CapPeriod;
    /// assert_eq!(CapPeriod::Month.name(), "month");
    /// ```
    pub const fn name(&self) -> &'static str {
        match self {
            CapPeriod::Day => "day",
            CapPeriod::Week => "week",
            CapPeriod::Month => "month",
            CapPeriod::Rolling(_) => "rolling",
        }
    }

    /// The calendar window `[start, end)` holding `at`; `None` for a rolling period, which
    /// has no fixed window (the spend counted at `at` is the spend of the period before it).
    ///
    /// ```
    /// use std::time::{Duration, SystemTime};
    /// use tollgate_core::spend::{CapPeriod, rfc3339};
    ///
    /// // The last second of 2026, and the first of 2027.
    /// let last = SystemTime::UNIX_EPOCH + Duration::from_secs(1_798_761_599);
    /// let first = last + Duration::from_secs(1);
    /// let december = CapPeriod::Month.window(last).unwrap();
    /// assert_eq!(rfc3339(december.end()), "2027-01-01T00:00:00Z");
    /// assert_eq!(december.end(), first);
    /// assert!(december.contains(last) && !december.contains(first));
    /// assert_eq!(CapPeriod::Day.window(first).unwrap().to_string(), "2027-01-01");
    /// ```
    pub fn window(&self, at: SystemTime) -> Option<CapWindow> {
        let millis = unix_millis(at);
        let day = millis.div_euclid(MILLIS_PER_DAY);
        let (start, end) = match self {
            CapPeriod::Day => (day, day + 1),
            CapPeriod::Week => {
                // 1970-01-01 was a Thursday, three days after a Monday.
                let monday = day - (day + 3).rem_euclid(7);
                (monday, monday + 7)
            }
            CapPeriod::Month => {
                let (year, month, _) = civil_from_days(day);
                let (next_year, next_month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (
                    days_from_civil(year, month, 1),
                    days_from_civil(next_year, next_month, 1),
                )
            }
            CapPeriod::Rolling(_) => return None,
        };
        Some(CapWindow {
            period: *self,
            start: start * MILLIS_PER_DAY,
            end: end * MILLIS_PER_DAY,
        })
    }
}

impl fmt::Display for CapPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapPeriod::Rolling(period) => write!(f, "rolling {}", human(*period)),
            calendar => f.write_str(calendar.name()),
        }
    }
}

/// A length in the largest unit that divides it: `24 h` → `1d`, `90 min` → `90m`.
fn human(period: Duration) -> String {
    let millis = period.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

/// One calendar window of a [`CapPeriod`]: `[start, end)` in UTC, whole days.
///
/// Displayed as it names the window in storage keys: `2026-12-31` (a day), `2026-W53` (an ISO
/// week, in its ISO year), `2026-12` (a month).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CapWindow {
    period: CapPeriod,
    /// Unix milliseconds.
    start: i64,
    end: i64,
}

impl CapWindow {
    /// The calendar period.
    pub fn period(&self) -> CapPeriod {
        self.period
    }

    /// Its first instant.
    pub fn start(&self) -> SystemTime {
        from_unix_millis(self.start)
    }

    /// The first instant after it: when spend counted in it resets.
    pub fn end(&self) -> SystemTime {
        from_unix_millis(self.end)
    }

    /// Whether `at` falls in it.
    pub fn contains(&self, at: SystemTime) -> bool {
        (self.start..self.end).contains(&unix_millis(at))
    }
}

impl fmt::Display for CapWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let day = self.start.div_euclid(MILLIS_PER_DAY);
        let (year, month, date) = civil_from_days(day);
        match self.period {
            CapPeriod::Month => write!(f, "{year:04}-{month:02}"),
            CapPeriod::Week => {
                // The ISO week belongs to the year of its Thursday, and is numbered from the
                // week holding that year's first Thursday.
                let thursday = day + 3;
                let (iso_year, _, _) = civil_from_days(thursday);
                let week = (thursday - days_from_civil(iso_year, 1, 1)) / 7 + 1;
                write!(f, "{iso_year:04}-W{week:02}")
            }
            CapPeriod::Day | CapPeriod::Rolling(_) => {
                write!(f, "{year:04}-{month:02}-{date:02}")
            }
        }
    }
}

/// The most an API key may spend over a period, in micro-units of the currency
/// (1 USD = 1,000,000).
///
/// A zero limit is an error (a key that may spend nothing is better revoked), and so is a
/// rolling period under a millisecond or over ten years.
///
/// Written as `limit/period`: `5000000/month`, `250000/day`, `1000000/week`, or for a rolling
/// period its length in milliseconds, `1000000/86400000` (the form of a rate's
/// `amount/period_ms`).
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::spend::{CapPeriod, SpendCap};
///
/// let monthly = SpendCap::monthly(5_000_000)?;
/// assert_eq!((monthly.period(), monthly.limit()), (CapPeriod::Month, 5_000_000));
/// assert_eq!(monthly.to_string(), "5000000/month");
/// let rolling: SpendCap = "1000000/86400000".parse()?;
/// assert_eq!(rolling, SpendCap::rolling(1_000_000, Duration::from_secs(86_400))?);
/// assert!(SpendCap::daily(0).is_err());
/// assert!("10/fortnight".parse::<SpendCap>().is_err());
/// # Ok::<(), tollgate_core::spend::InvalidSpendCap>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SpendCap {
    period: CapPeriod,
    limit: u64,
}

impl SpendCap {
    /// At most `limit` micro-units per `period`.
    pub fn new(period: CapPeriod, limit: u64) -> Result<Self, InvalidSpendCap> {
        let valid_period = match period {
            CapPeriod::Rolling(length) => {
                length >= Duration::from_millis(1) && length <= MAX_ROLLING
            }
            CapPeriod::Day | CapPeriod::Week | CapPeriod::Month => true,
        };
        if limit == 0 || !valid_period {
            return Err(InvalidSpendCap);
        }
        Ok(SpendCap { period, limit })
    }

    /// At most `limit` per UTC day.
    pub fn daily(limit: u64) -> Result<Self, InvalidSpendCap> {
        SpendCap::new(CapPeriod::Day, limit)
    }

    /// At most `limit` per ISO week (from Monday 00:00 UTC).
    pub fn weekly(limit: u64) -> Result<Self, InvalidSpendCap> {
        SpendCap::new(CapPeriod::Week, limit)
    }

    /// At most `limit` per UTC calendar month.
    pub fn monthly(limit: u64) -> Result<Self, InvalidSpendCap> {
        SpendCap::new(CapPeriod::Month, limit)
    }

    /// At most `limit` in any trailing `period` (whole milliseconds count).
    pub fn rolling(limit: u64, period: Duration) -> Result<Self, InvalidSpendCap> {
        SpendCap::new(CapPeriod::Rolling(period), limit)
    }

    /// What it is counted over.
    pub fn period(&self) -> CapPeriod {
        self.period
    }

    /// The most that may be spent per period, in micro-units.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

impl fmt::Display for SpendCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.period {
            CapPeriod::Rolling(length) => write!(f, "{}/{}", self.limit, length.as_millis()),
            calendar => write!(f, "{}/{}", self.limit, calendar.name()),
        }
    }
}

impl FromStr for SpendCap {
    type Err = InvalidSpendCap;

    /// Parses `limit/day`, `limit/week`, `limit/month` or `limit/period_ms`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (limit, period) = text.split_once('/').ok_or(InvalidSpendCap)?;
        let digits = |text: &str| {
            (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
                .then(|| text.parse::<u64>().ok())
                .flatten()
        };
        let limit = digits(limit).ok_or(InvalidSpendCap)?;
        let period = match period {
            "day" => CapPeriod::Day,
            "week" => CapPeriod::Week,
            "month" => CapPeriod::Month,
            millis => CapPeriod::Rolling(Duration::from_millis(
                digits(millis).ok_or(InvalidSpendCap)?,
            )),
        };
        SpendCap::new(period, limit)
    }
}

/// A [`SpendCap`] with a zero limit or a rolling period outside a millisecond to ten years, or
/// text that is not `limit/period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidSpendCap;

impl fmt::Display for InvalidSpendCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "a spend cap is a positive limit per day, week, month or rolling period of 1 ms to 10 years (limit/period)",
        )
    }
}

impl std::error::Error for InvalidSpendCap {}

/// Milliseconds since the Unix epoch (negative before it; saturating far beyond).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_core::spend::unix_millis;
/// assert_eq!(unix_millis(SystemTime::UNIX_EPOCH + Duration::from_micros(1_999)), 1);
/// assert_eq!(unix_millis(SystemTime::UNIX_EPOCH - Duration::from_micros(1)), -1);
/// ```
pub fn unix_millis(at: SystemTime) -> i64 {
    match at.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
        // Floored, so that an instant before the epoch falls in the millisecond holding it.
        Err(before) => {
            let before = before.duration();
            let millis = i64::try_from(before.as_millis()).unwrap_or(i64::MAX);
            let partial = before.as_nanos() % 1_000_000 != 0;
            -millis - i64::from(partial)
        }
    }
}

/// The instant `millis` milliseconds after the Unix epoch (before it when negative).
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_core::spend::from_unix_millis;
/// assert_eq!(from_unix_millis(1_500), SystemTime::UNIX_EPOCH + Duration::from_millis(1_500));
/// ```
pub fn from_unix_millis(millis: i64) -> SystemTime {
    let magnitude = Duration::from_millis(millis.unsigned_abs());
    if millis >= 0 {
        SystemTime::UNIX_EPOCH + magnitude
    } else {
        SystemTime::UNIX_EPOCH - magnitude
    }
}

/// `at` in RFC 3339, UTC, in whole seconds rounded up (a reset is never announced early):
/// `2027-01-01T00:00:00Z`.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use tollgate_core::spend::rfc3339;
/// assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
/// let leap = SystemTime::UNIX_EPOCH + Duration::from_millis(951_825_599_001);
/// assert_eq!(rfc3339(leap), "2000-02-29T12:00:00Z");
/// ```
pub fn rfc3339(at: SystemTime) -> String {
    let seconds = unix_millis(at).saturating_add(999).div_euclid(1_000);
    let day = seconds.div_euclid(86_400);
    let second = seconds.rem_euclid(86_400);
    let (year, month, date) = civil_from_days(day);
    format!(
        "{year:04}-{month:02}-{date:02}T{:02}:{:02}:{:02}Z",
        second / 3_600,
        second / 60 % 60,
        second % 60
    )
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    // Years start in March, so that the leap day ends them.
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date `days` after 1970-01-01, as (year, month, day) (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> SystemTime {
        let timestamp: jiff::Timestamp = text.parse().unwrap();
        from_unix_millis(timestamp.as_millisecond())
    }

    fn window(period: CapPeriod, instant: &str) -> (String, String, String) {
        let window = period.window(at(instant)).unwrap();
        (
            rfc3339(window.start()),
            rfc3339(window.end()),
            window.to_string(),
        )
    }

    #[test]
    fn calendar_math_agrees_with_jiff_on_every_day_from_1900_to_2400() {
        let mut date = jiff::civil::date(1900, 1, 1);
        let last = jiff::civil::date(2400, 12, 31);
        let mut days = days_from_civil(1900, 1, 1);
        while date <= last {
            let expected = (
                i64::from(date.year()),
                i64::from(date.month()),
                i64::from(date.day()),
            );
            assert_eq!(civil_from_days(days), expected, "{date}");
            assert_eq!(days_from_civil(expected.0, expected.1, expected.2), days);
            let noon = from_unix_millis(days * MILLIS_PER_DAY + 43_200_000);
            let week = CapPeriod::Week.window(noon).unwrap();
            let iso = date.iso_week_date();
            assert_eq!(
                week.to_string(),
                format!("{:04}-W{:02}", iso.year(), iso.week()),
                "{date}"
            );
            let monday =
                date - jiff::Span::new().days(i64::from(iso.weekday().to_monday_zero_offset()));
            assert_eq!(
                rfc3339(week.start()),
                format!("{monday}T00:00:00Z"),
                "{date}"
            );
            let month = CapPeriod::Month.window(noon).unwrap();
            assert_eq!(
                rfc3339(month.end()),
                format!("{}T00:00:00Z", date.last_of_month().tomorrow().unwrap()),
                "{date}"
            );
            date = date.tomorrow().unwrap();
            days += 1;
        }
    }

    #[test]
    fn month_ends_leap_days_and_year_ends_are_exact() {
        let month = |instant| window(CapPeriod::Month, instant);
        let day = |instant| window(CapPeriod::Day, instant);
        let week = |instant| window(CapPeriod::Week, instant);
        assert_eq!(
            month("2028-02-29T23:59:59.999Z"),
            (
                "2028-02-01T00:00:00Z".into(),
                "2028-03-01T00:00:00Z".into(),
                "2028-02".into()
            )
        );
        assert_eq!(month("2028-03-01T00:00:00Z").2, "2028-03");
        assert_eq!(month("2027-02-28T23:59:59.999Z").1, "2027-03-01T00:00:00Z");
        assert_eq!(
            month("2100-02-28T12:00:00Z").1,
            "2100-03-01T00:00:00Z",
            "not a leap year"
        );
        assert_eq!(
            month("2000-02-29T12:00:00Z").1,
            "2000-03-01T00:00:00Z",
            "a leap year"
        );
        assert_eq!(
            day("2028-02-29T00:00:00Z"),
            (
                "2028-02-29T00:00:00Z".into(),
                "2028-03-01T00:00:00Z".into(),
                "2028-02-29".into()
            )
        );
        assert_eq!(
            month("2026-12-31T23:59:59.999Z"),
            (
                "2026-12-01T00:00:00Z".into(),
                "2027-01-01T00:00:00Z".into(),
                "2026-12".into()
            )
        );
        assert_eq!(month("2027-01-01T00:00:00Z").0, "2027-01-01T00:00:00Z");
        assert_eq!(day("2026-12-31T23:59:59.999Z").1, "2027-01-01T00:00:00Z");
        // 2026-12-31 is a Thursday: its week runs into 2027 and is the 53rd of 2026.
        assert_eq!(
            week("2026-12-31T23:59:59.999Z"),
            (
                "2026-12-28T00:00:00Z".into(),
                "2027-01-04T00:00:00Z".into(),
                "2026-W53".into()
            )
        );
        assert_eq!(week("2027-01-03T23:59:59.999Z").2, "2026-W53");
        assert_eq!(week("2027-01-04T00:00:00Z").2, "2027-W01");
        // 2024-12-30, a Monday of 2024, is in the first week of 2025.
        assert_eq!(week("2024-12-31T12:00:00Z").2, "2025-W01");
        assert_eq!(week("1969-12-31T23:59:59.999Z").0, "1969-12-29T00:00:00Z");
    }

    #[test]
    fn instants_before_the_epoch_floor_to_their_millisecond() {
        let before = SystemTime::UNIX_EPOCH - Duration::from_nanos(1);
        assert_eq!(unix_millis(before), -1);
        assert_eq!(
            CapPeriod::Day.window(before).unwrap().to_string(),
            "1969-12-31"
        );
        assert_eq!(rfc3339(from_unix_millis(-1)), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn caps_round_trip_through_their_text() {
        for text in [
            "1/day",
            "5000000/week",
            "18446744073709551615/month",
            "7/1",
            "9/86400000",
        ] {
            let cap: SpendCap = text.parse().unwrap();
            assert_eq!(cap.to_string(), text);
        }
        for bad in [
            "",
            "/day",
            "0/day",
            "1/",
            "1/0",
            "-1/day",
            "1/+5",
            "1/Day",
            "1 /day",
            "1/316224000001",
        ] {
            assert!(bad.parse::<SpendCap>().is_err(), "{bad}");
        }
        assert_eq!(
            CapPeriod::Rolling(Duration::from_secs(86_400)).to_string(),
            "rolling 1d"
        );
        assert_eq!(
            CapPeriod::Rolling(Duration::from_millis(1_500)).to_string(),
            "rolling 1500ms"
        );
    }
}

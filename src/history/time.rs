//! Parsing the times support engineers type (RFC 3339, wall-clock times in
//! a zone, `yesterday`, `2h ago`, `14:00`) against an explicit "now", and
//! printing instants in one zone at one precision. No database here.

use anyhow::{anyhow, bail, Result};
use chrono::{
    DateTime, Days, LocalResult, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeDelta, TimeZone,
    Timelike, Utc,
};
use chrono_tz::Tz;
use serde_json::Value;

/// The forms a time may take, for error messages.
pub const FORMS: &str = "RFC 3339 (2024-03-05T14:00:00Z, 2024-03-05T14:00:00+01:00), \
\"YYYY-MM-DD HH:MM[:SS]\" or a date YYYY-MM-DD (midnight) in --tz (default UTC), \
a time of day HH:MM[:SS] (today in --tz), \"now\", \"today\" or \"yesterday\" (midnight in --tz, \
or followed by HH:MM[:SS]), or \"N UNIT ago\" with UNIT s, m, h, d or w \
(90s ago, 30m ago, 2h ago, 3 days ago, 1 week ago)";

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz> {
    name.trim().parse::<Tz>().map_err(|_| {
        anyhow!("unknown time zone {name:?}: use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

/// A typed time. Printed times are cut to the second, so a time typed to
/// the second covers that whole second: `--at 13:57:19` includes a change
/// printed as 13:57:19 (made at 13:57:19.250). Fractional seconds name an
/// exact instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub at: DateTime<Utc>,
    pub exact: bool,
}

impl Moment {
    /// The last instant a look-up at this moment includes.
    pub fn through(&self) -> DateTime<Utc> {
        if self.exact {
            self.at
        } else {
            self.at + TimeDelta::microseconds(999_999)
        }
    }
}

fn whole_second(t: DateTime<Utc>) -> Moment {
    Moment {
        at: t.with_nanosecond(0).unwrap_or(t),
        exact: false,
    }
}

/// `t` as PostgreSQL stores it (microseconds); exact when it has a fraction.
fn typed(t: DateTime<Utc>, text: &str) -> Moment {
    let micros = t.nanosecond() / 1_000 * 1_000;
    Moment {
        at: t.with_nanosecond(micros).unwrap_or(t),
        exact: text.contains('.'),
    }
}

/// Parses `text` as a moment; wall-clock times and the relative forms are
/// read in `tz`, relative to `now`.
pub fn parse_time_at(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<Moment> {
    let s = text.trim();
    let lower = s.to_ascii_lowercase();
    if lower == "now" {
        return Ok(whole_second(now));
    }
    if let Some(m) = relative(&lower, tz, now)? {
        return Ok(m);
    }
    if let Some(t) = parse_with_offset(s) {
        return Ok(typed(t, s));
    }
    if let Some(naive) = parse_local(s) {
        return Ok(typed(localize(naive, tz, s)?, s));
    }
    if let Some(clock) = parse_clock(s) {
        let today = now.with_timezone(&tz).date_naive();
        return Ok(typed(localize(today.and_time(clock), tz, s)?, s));
    }
    bail!("cannot parse time {text:?}: use {FORMS}")
}

/// `today`, `yesterday` (optionally with a time of day) and `N UNIT ago`;
/// `None` when `lower` is none of these.
fn relative(lower: &str, tz: Tz, now: DateTime<Utc>) -> Result<Option<Moment>> {
    let local_now = now.with_timezone(&tz).naive_local();
    for (word, back) in [("today", 0u64), ("yesterday", 1)] {
        let Some(rest) = lower.strip_prefix(word) else {
            continue;
        };
        let day = local_now.date() - Days::new(back);
        let rest = rest.trim();
        if rest.is_empty() {
            return Ok(Some(whole_second(start_of_day(day, tz))));
        }
        if let Some(clock) = parse_clock(rest) {
            let t = localize(day.and_time(clock), tz, lower)?;
            return Ok(Some(typed(t, rest)));
        }
        return Ok(None);
    }
    let Some(amount) = lower.strip_suffix("ago") else {
        return Ok(None);
    };
    let amount = amount.trim();
    let digits = amount.chars().take_while(char::is_ascii_digit).count();
    let (n, unit) = amount.split_at(digits);
    let n: i64 = match n {
        "" if unit.starts_with("a ") || unit.starts_with("an ") => 1,
        "" => return Ok(None),
        n => match n.parse() {
            Ok(n) => n,
            Err(_) => bail!("time {lower:?} is too far back"),
        },
    };
    let unit = unit
        .trim_start_matches("an ")
        .trim_start_matches("a ")
        .trim();
    let too_far = || anyhow!("time {lower:?} is too far back");
    let exact = |seconds: i64| -> Result<Option<Moment>> {
        let d = n
            .checked_mul(seconds)
            .and_then(TimeDelta::try_seconds)
            .ok_or_else(too_far)?;
        let t = now.checked_sub_signed(d).ok_or_else(too_far)?;
        Ok(Some(whole_second(t)))
    };
    // Days and weeks are calendar days in the zone (the same wall-clock
    // time), as people count them; a DST change makes such a day 23 or 25 h.
    let calendar = |days: i64| -> Result<Option<Moment>> {
        let d = n.checked_mul(days).ok_or_else(too_far)?;
        let naive = local_now
            .checked_sub_days(Days::new(d as u64))
            .ok_or_else(too_far)?;
        Ok(Some(whole_second(resolve(naive, tz))))
    };
    match unit {
        "s" | "sec" | "secs" | "second" | "seconds" => exact(1),
        "m" | "min" | "mins" | "minute" | "minutes" => exact(60),
        "h" | "hr" | "hrs" | "hour" | "hours" => exact(3600),
        "d" | "day" | "days" => calendar(1),
        "w" | "wk" | "wks" | "week" | "weeks" => calendar(7),
        _ => Ok(None),
    }
}

/// `HH:MM`, `HH:MM:SS` or `HH:MM:SS.ffffff`.
fn parse_clock(s: &str) -> Option<NaiveTime> {
    ["%H:%M", "%H:%M:%S", "%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveTime::parse_from_str(s, f).ok())
}

/// The first instant of `day` in `tz` (midnight, or the end of a DST gap
/// that swallows midnight).
fn start_of_day(day: NaiveDate, tz: Tz) -> DateTime<Utc> {
    resolve(day.and_hms_opt(0, 0, 0).expect("midnight"), tz)
}

/// A computed wall-clock time as an instant: in a DST gap it is read with
/// the offset before the gap (02:30 becomes 03:30 summer time); in an
/// overlap it is the first of the two.
fn resolve(naive: NaiveDateTime, tz: Tz) -> DateTime<Utc> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => t.with_timezone(&Utc),
        LocalResult::None => {
            let before = tz
                .offset_from_utc_datetime(&(naive - TimeDelta::days(1)))
                .fix();
            (naive - TimeDelta::seconds(before.local_minus_utc().into())).and_utc()
        }
    }
}

/// When a typed time lies after `now`: a note saying what is shown instead
/// (a time of day alone means today, even when that is still to come).
pub fn future_note(text: &str, m: &Moment, now: DateTime<Utc>, style: &Style) -> Option<String> {
    if m.at <= now {
        return None;
    }
    let hint = if parse_clock(text.trim()).is_some() {
        format!(
            " (a time of day means today; for yesterday's say \"yesterday {}\")",
            text.trim()
        )
    } else {
        String::new()
    };
    Some(format!(
        "{text:?} is {}, after now ({}){hint}: the latest recorded state is shown",
        style.display(m.at),
        style.display(now)
    ))
}

/// A time that states its offset: RFC 3339, or `2024-03-05 14:00:00 UTC`
/// (BigQuery's rendering) and `... Z`.
pub fn parse_with_offset(text: &str) -> Option<DateTime<Utc>> {
    let s = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    for suffix in [" UTC", " utc", "Z", "z"] {
        if let Some(rest) = s.strip_suffix(suffix) {
            if let Some(naive) = parse_naive(rest.trim_end()) {
                return Some(naive.and_utc());
            }
        }
    }
    None
}

/// A wall-clock time without an offset (`YYYY-MM-DD HH:MM[:SS]`, or a bare
/// date meaning midnight); it names an instant only together with a zone.
pub fn parse_local(text: &str) -> Option<NaiveDateTime> {
    let s = text.trim();
    parse_naive(s).or_else(|| {
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .ok()
            .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight"))
    })
}

fn parse_naive(s: &str) -> Option<NaiveDateTime> {
    const FORMATS: &[&str] = &[
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ];
    FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
}

/// `naive` read in `tz`; a typed time in a DST gap or overlap is an error.
pub fn localize(naive: NaiveDateTime, tz: Tz, text: &str) -> Result<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => Ok(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(a, b) => bail!(
            "time {text:?} is ambiguous in {tz} (clocks go back: it happens at {} and at {}); give the offset, e.g. {}",
            a.format("%H:%M %:z"),
            b.format("%H:%M %:z"),
            a.to_rfc3339()
        ),
        LocalResult::None => bail!(
            "time {text:?} does not exist in {tz} (clocks go forward over it); give a time outside the gap or an RFC 3339 time with an offset"
        ),
    }
}

/// How one output prints instants: every time in one zone, to the second
/// (or to the microsecond, as stored, when precise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub tz: Tz,
    pub precise: bool,
}

impl Style {
    pub fn new(tz: Tz, precise: bool) -> Self {
        Style { tz, precise }
    }

    /// For people: `2024-03-05 15:00:00 +01:00` (`15:00:00.123000` precise).
    pub fn display(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        if self.precise {
            local.format("%Y-%m-%d %H:%M:%S%.6f %:z").to_string()
        } else {
            local.format("%Y-%m-%d %H:%M:%S %:z").to_string()
        }
    }

    /// RFC 3339 for JSON: `2024-03-05T15:00:00+01:00` (`Z` in UTC).
    pub fn rfc3339(&self, t: DateTime<Utc>) -> String {
        let precision = if self.precise {
            chrono::SecondsFormat::Micros
        } else {
            chrono::SecondsFormat::Secs
        };
        t.with_timezone(&self.tz).to_rfc3339_opts(precision, true)
    }

    /// `v` with every string holding an RFC 3339 time (as `to_jsonb` writes
    /// timestamptz values) rewritten in this style, at any depth.
    pub fn json(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => match snapshot_time(s) {
                Some(t) => Value::String(self.rfc3339(t)),
                None => v.clone(),
            },
            Value::Array(items) => Value::Array(items.iter().map(|x| self.json(x)).collect()),
            Value::Object(m) => {
                Value::Object(m.iter().map(|(k, x)| (k.clone(), self.json(x))).collect())
            }
            other => other.clone(),
        }
    }

    /// A snapshot value as a table cell: times in this style, strings bare,
    /// null as `-`, the rest as JSON.
    pub fn cell(&self, v: Option<&Value>) -> String {
        match v {
            Some(Value::String(s)) => match snapshot_time(s) {
                Some(t) => self.display(t),
                None => s.clone(),
            },
            Some(Value::Null) | None => "-".into(),
            Some(other) => self.json(other).to_string(),
        }
    }
}

/// An RFC 3339 time with an offset inside a snapshot (`2024-03-05T12:57:19.25+00:00`).
fn snapshot_time(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    // cheap shape test first: most strings are no times
    if !(20..=40).contains(&b.len()) || !b[0].is_ascii_digit() || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn berlin() -> Tz {
        parse_tz("Europe/Berlin").unwrap()
    }

    /// Parses against a fixed "now" (most tests don't depend on it).
    fn at(text: &str, tz: Tz) -> DateTime<Utc> {
        parse_time_at(text, tz, utc("2030-01-01T00:00:00Z"))
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .at
    }

    fn rel(text: &str, tz: Tz, now: &str) -> DateTime<Utc> {
        parse_time_at(text, tz, utc(now))
            .unwrap_or_else(|e| panic!("{text} at {now}: {e}"))
            .at
    }

    fn err(text: &str, tz: Tz, now: &str) -> String {
        parse_time_at(text, tz, utc(now)).unwrap_err().to_string()
    }

    #[test]
    fn rfc3339_with_offsets() {
        let tz = berlin();
        assert_eq!(at("2024-03-05T14:00:00Z", tz), utc("2024-03-05T14:00:00Z"));
        assert_eq!(
            at("2024-03-05T14:00:00+01:00", tz),
            utc("2024-03-05T13:00:00Z")
        );
        assert_eq!(
            at("2024-03-05T14:00:00.250-05:00", tz),
            utc("2024-03-05T19:00:00.25Z")
        );
    }

    #[test]
    fn local_times_use_the_zone() {
        assert_eq!(
            at("2024-03-05 14:00", berlin()),
            utc("2024-03-05T13:00:00Z")
        );
        assert_eq!(
            at("2024-07-05 14:00:30", berlin()),
            utc("2024-07-05T12:00:30Z")
        );
        assert_eq!(at("2024-03-05 14:00", Tz::UTC), utc("2024-03-05T14:00:00Z"));
        assert_eq!(
            at("2024-03-05T14:00:00.5", Tz::UTC),
            utc("2024-03-05T14:00:00.5Z")
        );
    }

    #[test]
    fn bare_date_is_midnight_in_the_zone() {
        let ny = parse_tz("America/New_York").unwrap();
        assert_eq!(at("2024-03-05", ny), utc("2024-03-05T05:00:00Z"));
        assert_eq!(at("2024-03-05", Tz::UTC), utc("2024-03-05T00:00:00Z"));
    }

    #[test]
    fn utc_suffixes() {
        assert_eq!(
            at("2024-03-05 14:00:00.123456 UTC", berlin()),
            utc("2024-03-05T14:00:00.123456Z")
        );
    }

    #[test]
    fn a_time_to_the_second_covers_the_second() {
        let now = utc("2024-03-05T10:15:30.123456789Z");
        let m = parse_time_at("now", Tz::UTC, now).unwrap();
        assert_eq!(m.at, utc("2024-03-05T10:15:30Z"), "no fraction printed");
        assert_eq!(m.through(), utc("2024-03-05T10:15:30.999999Z"));
        let m = parse_time_at("2024-03-05 13:57:19", Tz::UTC, now).unwrap();
        assert_eq!(m.through(), utc("2024-03-05T13:57:19.999999Z"));
        // fractional seconds are exact, to the microsecond PostgreSQL keeps
        let m = parse_time_at("2024-03-05T13:57:19.2500009Z", Tz::UTC, now).unwrap();
        assert!(m.exact);
        assert_eq!(m.through(), utc("2024-03-05T13:57:19.250Z"));
        let m = parse_time_at("13:57:19.25", Tz::UTC, now).unwrap();
        assert_eq!(m.through(), utc("2024-03-05T13:57:19.25Z"));
    }

    #[test]
    fn now_today_yesterday() {
        let now = "2024-03-05T10:15:30Z";
        assert_eq!(rel("now", berlin(), now), utc("2024-03-05T10:15:30Z"));
        assert_eq!(rel("NOW", Tz::UTC, now), utc("2024-03-05T10:15:30Z"));
        assert_eq!(rel("today", berlin(), now), utc("2024-03-04T23:00:00Z"));
        assert_eq!(rel("yesterday", berlin(), now), utc("2024-03-03T23:00:00Z"));
        assert_eq!(rel("Yesterday", Tz::UTC, now), utc("2024-03-04T00:00:00Z"));
        assert_eq!(
            rel("yesterday 14:00", berlin(), now),
            utc("2024-03-04T13:00:00Z")
        );
        assert_eq!(
            rel("today 09:30:15", berlin(), now),
            utc("2024-03-05T08:30:15Z")
        );
        // "today" is the zone's date: at 23:30 UTC it is already tomorrow in Berlin
        assert_eq!(
            rel("today", berlin(), "2024-03-05T23:30:00Z"),
            utc("2024-03-05T23:00:00Z")
        );
    }

    #[test]
    fn time_of_day_is_today_in_the_zone() {
        let now = "2024-03-05T10:15:30Z"; // 11:15:30 in Berlin
        assert_eq!(rel("14:00", Tz::UTC, now), utc("2024-03-05T14:00:00Z"));
        assert_eq!(rel("09:00", berlin(), now), utc("2024-03-05T08:00:00Z"));
        assert_eq!(rel("9:00:30", berlin(), now), utc("2024-03-05T08:00:30Z"));
        // later today stays today (as date(1) and most tools read it); the
        // command prints a note that it lies in the future
        let m = parse_time_at("14:00", berlin(), utc(now)).unwrap();
        assert_eq!(m.at, utc("2024-03-05T13:00:00Z"));
        let style = Style::new(berlin(), false);
        let note = future_note("14:00", &m, utc(now), &style).unwrap();
        assert_eq!(
            note,
            "\"14:00\" is 2024-03-05 14:00:00 +01:00, after now (2024-03-05 11:15:30 +01:00) (a time of day means today; for yesterday's say \"yesterday 14:00\"): the latest recorded state is shown"
        );
        let m = parse_time_at("09:00", berlin(), utc(now)).unwrap();
        assert_eq!(future_note("09:00", &m, utc(now), &style), None);
    }

    #[test]
    fn durations_ago() {
        let now = "2024-03-05T10:15:30.700Z";
        for (text, want) in [
            ("2h ago", "2024-03-05T08:15:30Z"),
            ("2 hours ago", "2024-03-05T08:15:30Z"),
            ("an hour ago", "2024-03-05T09:15:30Z"),
            ("30m ago", "2024-03-05T09:45:30Z"),
            ("30 min ago", "2024-03-05T09:45:30Z"),
            ("90s ago", "2024-03-05T10:14:00Z"),
            ("1 second ago", "2024-03-05T10:15:29Z"),
            ("1d ago", "2024-03-04T10:15:30Z"),
            ("3 days ago", "2024-03-02T10:15:30Z"),
            ("a day ago", "2024-03-04T10:15:30Z"),
            ("1 week ago", "2024-02-27T10:15:30Z"),
            ("2w ago", "2024-02-20T10:15:30Z"),
            ("  2H AGO ", "2024-03-05T08:15:30Z"),
        ] {
            assert_eq!(rel(text, berlin(), now), utc(want), "{text}");
        }
        assert!(err("99999999999999 days ago", Tz::UTC, now).contains("too far back"));
        assert!(err("999999999999999999999h ago", Tz::UTC, now).contains("too far back"));
    }

    /// Europe/Berlin: clocks go forward 2024-03-31 02:00 -> 03:00 and back
    /// 2024-10-27 03:00 -> 02:00.
    #[test]
    fn dst_edges_in_berlin() {
        let tz = berlin();
        // the spring day is 23 hours long: "1 day ago" is the same wall-clock
        // time, "24h ago" is 24 hours
        let now = "2024-03-31T10:00:00Z"; // 12:00 summer time
        assert_eq!(rel("1 day ago", tz, now), utc("2024-03-30T11:00:00Z"));
        assert_eq!(rel("24h ago", tz, now), utc("2024-03-30T10:00:00Z"));
        assert_eq!(rel("today", tz, now), utc("2024-03-30T23:00:00Z"));
        assert_eq!(rel("yesterday", tz, now), utc("2024-03-29T23:00:00Z"));
        assert_eq!(rel("14:00", tz, now), utc("2024-03-31T12:00:00Z"));
        assert_eq!(rel("01:30", tz, now), utc("2024-03-31T00:30:00Z"));
        // the autumn day is 25 hours long
        let now = "2024-10-27T12:00:00Z"; // 13:00 winter time
        assert_eq!(rel("1d ago", tz, now), utc("2024-10-26T11:00:00Z"));
        assert_eq!(rel("today", tz, now), utc("2024-10-26T22:00:00Z"));
        assert_eq!(rel("14:00", tz, now), utc("2024-10-27T13:00:00Z"));
        // a computed time in the gap moves past it by the gap's length
        assert_eq!(
            rel("1 day ago", tz, "2024-04-01T00:30:00Z"), // 02:30 summer time
            utc("2024-03-31T01:30:00Z")                   // 03:30 summer time
        );
        // a computed time in the overlap is the first of the two
        assert_eq!(
            rel("1 day ago", tz, "2024-10-28T01:30:00Z"), // 02:30 winter time
            utc("2024-10-27T00:30:00Z")                   // 02:30 summer time
        );
        // hours ago across the change are plain hours
        assert_eq!(
            rel("2h ago", tz, "2024-03-31T01:30:00Z"),
            utc("2024-03-30T23:30:00Z")
        );
        // a typed time of day in the gap or the overlap is an error
        let gap = err("02:30", tz, "2024-03-31T10:00:00Z");
        assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
        let overlap = err("yesterday 02:30", tz, "2024-10-28T10:00:00Z");
        assert!(overlap.contains("ambiguous"), "{overlap}");
    }

    #[test]
    fn dst_gaps_and_overlaps_are_errors() {
        let now = utc("2030-01-01T00:00:00Z");
        let gap = parse_time_at("2024-03-31 02:30", berlin(), now)
            .unwrap_err()
            .to_string();
        assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
        let overlap = parse_time_at("2024-10-27 02:30", berlin(), now)
            .unwrap_err()
            .to_string();
        assert!(overlap.contains("ambiguous"), "{overlap}");
        assert!(
            overlap.contains("+02:00") && overlap.contains("+01:00"),
            "{overlap}"
        );
    }

    #[test]
    fn midnight_in_a_gap_is_the_first_instant_of_the_day() {
        // America/Havana skipped 00:00-01:00 on 2024-03-10
        let havana = parse_tz("America/Havana").unwrap();
        assert_eq!(
            rel("today", havana, "2024-03-10T18:00:00Z"),
            utc("2024-03-10T05:00:00Z")
        );
    }

    #[test]
    fn garbage_lists_the_forms() {
        for bad in [
            "last tuesday",
            "2024-13-01",
            "05.03.2024 14:00",
            "2024-03-05 25:00",
            "25:00",
            "3 fortnights ago",
            "ago",
            "-2h ago",
            "yesterday noon",
            "",
        ] {
            let e = err(bad, Tz::UTC, "2024-03-05T10:00:00Z");
            assert!(e.starts_with("cannot parse time"), "{e}");
            for form in [
                "RFC 3339",
                "YYYY-MM-DD HH:MM[:SS]",
                "yesterday",
                "2h ago",
                "HH:MM[:SS]",
            ] {
                assert!(e.contains(form), "{form} missing: {e}");
            }
        }
    }

    #[test]
    fn unknown_zone() {
        let e = parse_tz("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("IANA"), "{e}");
        assert_eq!(parse_tz("UTC").unwrap(), Tz::UTC);
    }

    #[test]
    fn one_zone_one_precision() {
        let t = utc("2024-03-05T13:00:00.123456Z");
        let plain = Style::new(berlin(), false);
        let precise = Style::new(berlin(), true);
        assert_eq!(plain.display(t), "2024-03-05 14:00:00 +01:00");
        assert_eq!(precise.display(t), "2024-03-05 14:00:00.123456 +01:00");
        assert_eq!(plain.rfc3339(t), "2024-03-05T14:00:00+01:00");
        assert_eq!(precise.rfc3339(t), "2024-03-05T14:00:00.123456+01:00");
        assert_eq!(
            Style::new(Tz::UTC, true).rfc3339(utc("2024-03-05T13:00:00Z")),
            "2024-03-05T13:00:00.000000Z"
        );
        // times inside snapshots follow the same style; other strings stay
        let snap = serde_json::json!({
            "updated_at": "2024-03-05T12:57:19.25+00:00",
            "nested": [{"at": "2024-03-05T12:57:19Z"}],
            "day": "2024-03-05",
            "naive": "2024-03-05T12:57:19",
            "name": "2024-03-05 sale",
        });
        assert_eq!(
            plain.json(&snap),
            serde_json::json!({
                "updated_at": "2024-03-05T13:57:19+01:00",
                "nested": [{"at": "2024-03-05T13:57:19+01:00"}],
                "day": "2024-03-05",
                "naive": "2024-03-05T12:57:19",
                "name": "2024-03-05 sale",
            })
        );
        assert_eq!(
            precise.cell(snap.get("updated_at")),
            "2024-03-05 13:57:19.250000 +01:00"
        );
        assert_eq!(plain.cell(snap.get("name")), "2024-03-05 sale");
        assert_eq!(plain.cell(None), "-");
        assert_eq!(plain.cell(Some(&serde_json::json!({"a": 1}))), "{\"a\":1}");
    }
}

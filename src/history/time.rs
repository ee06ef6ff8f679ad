//! Parsing the times support engineers type: RFC 3339, `YYYY-MM-DD HH:MM[:SS]`
//! in a time zone, a bare date, or `now`. No database here.

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The forms a time may take, for error messages.
pub const FORMS: &str = "RFC 3339 (2024-03-05T14:00:00Z, 2024-03-05T14:00:00+01:00), \
\"YYYY-MM-DD HH:MM[:SS]\" in --tz (default UTC), a bare date YYYY-MM-DD (midnight in --tz) or \"now\"";

/// Parses an IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_tz(name: &str) -> Result<Tz> {
    name.trim().parse::<Tz>().map_err(|_| {
        anyhow!("unknown time zone {name:?}: use an IANA name such as UTC, Europe/Berlin or America/New_York")
    })
}

/// Parses `text` as an instant; times without an offset are read in `tz`.
pub fn parse_time(text: &str, tz: Tz) -> Result<DateTime<Utc>> {
    parse_time_at(text, tz, Utc::now())
}

/// [`parse_time`] with an explicit "now" (for tests).
pub fn parse_time_at(text: &str, tz: Tz, now: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let s = text.trim();
    if s.eq_ignore_ascii_case("now") {
        return Ok(now);
    }
    if let Some(t) = parse_with_offset(s) {
        return Ok(t);
    }
    if let Some(naive) = parse_local(s) {
        return localize(naive, tz, s);
    }
    bail!("cannot parse time {text:?}: use {FORMS}")
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

/// `naive` read in `tz`; a time in a DST gap or overlap is an error.
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

/// Renders an instant in `tz` for people: `2024-03-05 15:00:00.123 +01:00`.
pub fn display(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    if t.timestamp_subsec_micros() == 0 {
        local.format("%Y-%m-%d %H:%M:%S %:z").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M:%S%.f %:z").to_string()
    }
}

/// RFC 3339 in `tz`, with microseconds when there are any (for JSON).
pub fn rfc3339(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    if t.timestamp_subsec_micros() == 0 {
        local.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    } else {
        local.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn rfc3339_with_offsets() {
        let tz = parse_tz("Europe/Berlin").unwrap();
        assert_eq!(
            parse_time("2024-03-05T14:00:00Z", tz).unwrap(),
            utc("2024-03-05T14:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-05T14:00:00+01:00", tz).unwrap(),
            utc("2024-03-05T13:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-05T14:00:00.250-05:00", tz).unwrap(),
            utc("2024-03-05T19:00:00.25Z")
        );
    }

    #[test]
    fn local_times_use_the_zone() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        assert_eq!(
            parse_time("2024-03-05 14:00", berlin).unwrap(),
            utc("2024-03-05T13:00:00Z")
        );
        assert_eq!(
            parse_time("2024-07-05 14:00:30", berlin).unwrap(),
            utc("2024-07-05T12:00:30Z")
        );
        assert_eq!(
            parse_time("2024-03-05 14:00", Tz::UTC).unwrap(),
            utc("2024-03-05T14:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-05T14:00:00.5", Tz::UTC).unwrap(),
            utc("2024-03-05T14:00:00.5Z")
        );
    }

    #[test]
    fn bare_date_is_midnight_in_the_zone() {
        let ny = parse_tz("America/New_York").unwrap();
        assert_eq!(
            parse_time("2024-03-05", ny).unwrap(),
            utc("2024-03-05T05:00:00Z")
        );
        assert_eq!(
            parse_time("2024-03-05", Tz::UTC).unwrap(),
            utc("2024-03-05T00:00:00Z")
        );
    }

    #[test]
    fn utc_suffixes_and_now() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        assert_eq!(
            parse_time("2024-03-05 14:00:00.123456 UTC", berlin).unwrap(),
            utc("2024-03-05T14:00:00.123456Z")
        );
        let now = utc("2030-01-01T00:00:00Z");
        assert_eq!(parse_time_at("now", berlin, now).unwrap(), now);
    }

    #[test]
    fn dst_gaps_and_overlaps_are_errors() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        let gap = parse_time("2024-03-31 02:30", berlin)
            .unwrap_err()
            .to_string();
        assert!(gap.contains("does not exist in Europe/Berlin"), "{gap}");
        let overlap = parse_time("2024-10-27 02:30", berlin)
            .unwrap_err()
            .to_string();
        assert!(overlap.contains("ambiguous"), "{overlap}");
        assert!(
            overlap.contains("+02:00") && overlap.contains("+01:00"),
            "{overlap}"
        );
    }

    #[test]
    fn garbage_lists_the_forms() {
        for bad in [
            "yesterday",
            "2024-13-01",
            "05.03.2024 14:00",
            "2024-03-05 25:00",
            "",
        ] {
            let e = parse_time(bad, Tz::UTC).unwrap_err().to_string();
            assert!(e.starts_with("cannot parse time"), "{e}");
            assert!(
                e.contains("RFC 3339") && e.contains("YYYY-MM-DD HH:MM[:SS]"),
                "{e}"
            );
        }
    }

    #[test]
    fn unknown_zone() {
        let e = parse_tz("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("IANA"), "{e}");
        assert_eq!(parse_tz("UTC").unwrap(), Tz::UTC);
    }

    #[test]
    fn display_in_zone() {
        let berlin = parse_tz("Europe/Berlin").unwrap();
        assert_eq!(
            display(utc("2024-03-05T13:00:00Z"), berlin),
            "2024-03-05 14:00:00 +01:00"
        );
        assert_eq!(
            rfc3339(utc("2024-03-05T13:00:00.000001Z"), Tz::UTC),
            "2024-03-05T13:00:00.000001Z"
        );
    }
}

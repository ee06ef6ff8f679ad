//! `history-import`: loads snapshot exports (NDJSON, one change a line) in
//! one transaction. Lines are parsed as they stream in and COPYed (binary)
//! into a temporary staging table, so memory stays flat; one INSERT ...
//! SELECT then adds the changes not present yet (keyed by an md5 of the
//! change's content), so importing the same file twice adds nothing.
//! Whatever PostgreSQL would refuse (a NUL character in a string) is
//! caught while parsing, so it is a bad line with a number, not a failed COPY.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use futures_util::pin_mut;
use serde::Serialize;
use serde_json::Value;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use crate::db::{PgResultExt, Schemas};

/// One change of an export line.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub customer_id: i64,
    pub campaign_id: i64,
    pub event_time: DateTime<Utc>,
    pub event_type: &'static str,
    pub snapshot: Value,
}

const CUSTOMER_KEYS: &[&str] = &["customer_id", "customerId"];
const CAMPAIGN_KEYS: &[&str] = &["campaign_id", "campaignId"];
const TIME_KEYS: &[&str] = &["event_time", "eventTime", "timestamp"];
const TYPE_KEYS: &[&str] = &["event_type", "eventType"];
const SNAPSHOT_KEYS: &[&str] = &["snapshot", "data"];

fn field<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Result<&'a Value, String> {
    keys.iter()
        .find_map(|k| obj.get(*k).filter(|v| !v.is_null()))
        .ok_or_else(|| format!("missing \"{}\"", keys[0]))
}

fn id(obj: &serde_json::Map<String, Value>, keys: &[&str]) -> Result<i64, String> {
    let v = field(obj, keys)?;
    let parsed = match v {
        Value::Number(n) => n.as_i64(),
        // BigQuery exports INT64 as strings.
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    parsed.ok_or_else(|| format!("\"{}\" must be an integer, got {v}", keys[0]))
}

/// Parses one NDJSON line. Extra keys are ignored; a snapshot may be an
/// object or a string holding a JSON object (as BigQuery exports JSON).
/// Times without an offset are read in `tz`, and refused without one.
pub fn parse_line(line: &str, tz: Option<Tz>) -> Result<Change, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "expected a JSON object".to_string())?;
    let customer_id = id(obj, CUSTOMER_KEYS)?;
    let campaign_id = id(obj, CAMPAIGN_KEYS)?;
    let t = field(obj, TIME_KEYS)?;
    let event_time = match t {
        Value::String(s) => event_time(s, tz)?,
        other => return Err(format!("\"event_time\" must be a time string, got {other}")),
    };
    let ty = field(obj, TYPE_KEYS)?;
    let event_type = match ty.as_str() {
        Some("created") => "created",
        Some("updated") => "updated",
        Some("deleted") => "deleted",
        _ => {
            return Err(format!(
                "\"event_type\" must be \"created\", \"updated\" or \"deleted\", got {ty}"
            ))
        }
    };
    let snap = field(obj, SNAPSHOT_KEYS)?;
    let snapshot = match snap {
        Value::Object(_) => snap.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(o @ Value::Object(_)) => o,
            _ => return Err("\"snapshot\" string does not hold a JSON object".into()),
        },
        other => {
            return Err(format!(
                "\"snapshot\" must be a JSON object, got {}",
                kind(other)
            ))
        }
    };
    // only a line with the escape can hold a NUL (raw control characters
    // are not valid JSON), so the walk is skipped for almost every line
    if line.contains("\\u0000") {
        if let Some(at) = nul_at(&snapshot, "snapshot") {
            return Err(format!(
                "{at} holds a NUL character (\\u0000), which PostgreSQL cannot store in text or jsonb; remove it from the export"
            ));
        }
    }
    Ok(Change {
        customer_id,
        campaign_id,
        event_time,
        event_type,
        snapshot,
    })
}

fn event_time(s: &str, tz: Option<Tz>) -> Result<DateTime<Utc>, String> {
    if let Some(t) = super::time::parse_with_offset(s) {
        return Ok(t);
    }
    match (super::time::parse_local(s), tz) {
        (Some(naive), Some(tz)) => {
            super::time::localize(naive, tz, s).map_err(|e| format!("\"event_time\": {e}"))
        }
        (Some(_), None) => Err(format!(
            "\"event_time\" {s:?} has no offset, so the instant is unknown: pass --tz <IANA zone> (e.g. --tz UTC or --tz Europe/Berlin) to read such times in that zone, or export times with Z or +HH:MM"
        )),
        (None, _) => Err(format!(
            "\"event_time\" {s:?} is not a time: use RFC 3339 (2024-03-05T14:00:00Z), \"YYYY-MM-DD HH:MM:SS[.ffffff] UTC\", or a time without an offset together with --tz"
        )),
    }
}

/// Where in `v` (named `at`) a string or key holds U+0000, if anywhere.
fn nul_at(v: &Value, at: &str) -> Option<String> {
    match v {
        Value::String(s) => s.contains('\0').then(|| format!("\"{at}\"")),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, x)| nul_at(x, &format!("{at}[{i}]"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            if k.contains('\0') {
                Some(format!("a key of \"{at}\""))
            } else {
                nul_at(x, &format!("{at}.{k}"))
            }
        }),
        _ => None,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// How the input is named in messages (`file.ndjson`, `stdin`).
    pub source: String,
    /// Write bad lines to `reject_file` instead of failing.
    pub skip_invalid: bool,
    pub reject_file: PathBuf,
    /// Do everything, then roll back.
    pub dry_run: bool,
    /// The zone of times without an offset; without one they are bad lines.
    pub tz: Option<Tz>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    pub source: String,
    pub lines: u64,
    pub valid: u64,
    pub inserted: u64,
    /// Valid changes that were already present (earlier import, or twice in the file).
    pub already_present: u64,
    pub rejected: u64,
    pub reject_file: Option<String>,
    /// The first few rejected lines.
    pub errors: Vec<LineError>,
    pub dry_run: bool,
}

/// A rejected line and why.
#[derive(Debug, Clone, Serialize)]
pub struct LineError {
    pub line: u64,
    pub error: String,
}

const SHOWN_ERRORS: usize = 10;
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// Imports NDJSON from `input` in one transaction (see the module doc).
pub async fn import<R: AsyncBufRead + Unpin>(
    client: &mut Client,
    schemas: &Schemas,
    mut input: R,
    opts: &ImportOptions,
    progress: &indicatif::ProgressBar,
) -> Result<ImportReport> {
    let mut report = ImportReport {
        source: opts.source.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let tx = client.transaction().await?;
    tx.batch_execute(
        "CREATE TEMP TABLE cdpctl_history_import (
             line bigint, customer_id bigint, campaign_id bigint,
             event_time timestamptz, event_type text, snapshot jsonb) ON COMMIT DROP",
    )
    .await
    .pg_context(|| "creating the import staging table".into())?;
    let sink = tx
        .copy_in(
            "COPY cdpctl_history_import (line, customer_id, campaign_id, event_time, event_type, snapshot) FROM STDIN BINARY",
        )
        .await
        .pg_context(|| "starting COPY into the staging table".into())?;
    let writer = BinaryCopyInWriter::new(
        sink,
        &[
            Type::INT8,
            Type::INT8,
            Type::INT8,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::JSONB,
        ],
    );
    pin_mut!(writer);
    let mut rejects: Option<std::io::BufWriter<std::fs::File>> = None;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = input
            .read_until(b'\n', &mut buf)
            .await
            .with_context(|| format!("reading {}", opts.source))?;
        if n == 0 {
            break;
        }
        report.lines += 1;
        if report.lines.is_multiple_of(4096) {
            progress.set_position(report.lines);
        }
        let mut raw = match buf.strip_suffix(b"\n") {
            Some(r) => r.strip_suffix(b"\r").unwrap_or(r),
            None => &buf[..],
        };
        if report.lines == 1 {
            // editors and spreadsheet exports put a byte-order mark first
            raw = raw.strip_prefix(UTF8_BOM).unwrap_or(raw);
        }
        let parsed = match std::str::from_utf8(raw) {
            Ok(s) if s.trim().is_empty() => continue,
            Ok(s) => parse_line(s, opts.tz),
            Err(_) if report.lines == 1 && (raw.starts_with(b"\xff\xfe") || raw.starts_with(b"\xfe\xff")) => {
                Err("not valid UTF-8: the file is UTF-16 (it starts with a UTF-16 byte-order mark); convert it to UTF-8".to_string())
            }
            Err(_) => Err("not valid UTF-8".to_string()),
        };
        match parsed {
            Ok(c) => {
                report.valid += 1;
                let line = report.lines as i64;
                writer
                    .as_mut()
                    .write(&[
                        &line,
                        &c.customer_id,
                        &c.campaign_id,
                        &c.event_time,
                        &c.event_type,
                        &c.snapshot,
                    ])
                    .await
                    .pg_context(|| format!("staging line {line}"))?;
            }
            Err(reason) if opts.skip_invalid => {
                report.rejected += 1;
                if report.errors.len() < SHOWN_ERRORS {
                    report.errors.push(LineError {
                        line: report.lines,
                        error: reason,
                    });
                }
                if !opts.dry_run {
                    if rejects.is_none() {
                        let f = std::fs::File::create(&opts.reject_file).with_context(|| {
                            format!(
                                "creating the reject file {}; choose another with --reject-file",
                                opts.reject_file.display()
                            )
                        })?;
                        rejects = Some(std::io::BufWriter::new(f));
                        report.reject_file = Some(opts.reject_file.display().to_string());
                    }
                    let w = rejects.as_mut().expect("opened above");
                    w.write_all(raw)
                        .and_then(|_| w.write_all(b"\n"))
                        .with_context(|| format!("writing {}", opts.reject_file.display()))?;
                }
            }
            Err(reason) => bail!(
                "{} line {}: {reason}; nothing was imported (fix the line, or pass --skip-invalid to write bad lines to a reject file and import the rest)",
                opts.source,
                report.lines
            ),
        }
    }
    progress.set_position(report.lines);
    if let Some(mut w) = rejects {
        w.flush()
            .with_context(|| format!("writing {}", opts.reject_file.display()))?;
    }
    writer
        .finish()
        .await
        .pg_context(|| "finishing COPY into the staging table".into())?;
    let inserted = tx
        .execute(
            &schemas.substitute(
                "INSERT INTO {{history}}.campaign_snapshots
                        (customer_id, campaign_id, event_time, event_type, snapshot, import_key)
                 SELECT customer_id, campaign_id, event_time, event_type, snapshot,
                        md5(concat_ws('|', customer_id, campaign_id,
                                      (extract(epoch FROM event_time) * 1000000)::bigint,
                                      event_type, snapshot::text))::uuid
                   FROM cdpctl_history_import
                  ORDER BY event_time, line
                 ON CONFLICT (import_key) WHERE import_key IS NOT NULL DO NOTHING",
            ),
            &[],
        )
        .await
        .pg_context(|| format!("adding the changes of {} to the history", opts.source))?;
    report.inserted = inserted;
    report.already_present = report.valid - inserted;
    if opts.dry_run {
        tx.rollback().await?;
    } else {
        tx.commit()
            .await
            .map_err(|e| anyhow!(e))
            .context("committing the import")?;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_a_line() {
        let c = parse_line(
            r#"{"customer_id": 7, "campaign_id": "12", "event_time": "2024-03-05T14:00:00.5+01:00", "event_type": "updated", "snapshot": {"name": "x"}, "extra": 1}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.customer_id, 7);
        assert_eq!(c.campaign_id, 12);
        assert_eq!(c.event_time.to_rfc3339(), "2024-03-05T13:00:00.500+00:00");
        assert_eq!(c.event_type, "updated");
        assert_eq!(c.snapshot, json!({"name": "x"}));
    }

    #[test]
    fn bigquery_shapes() {
        let c = parse_line(
            r#"{"customerId": "7", "campaignId": 3, "eventTime": "2024-03-05 14:00:00.123456 UTC", "eventType": "deleted", "data": "{\"a\": 1}"}"#,
            None,
        )
        .unwrap();
        assert_eq!(c.event_time.timestamp_subsec_micros(), 123456);
        assert_eq!(c.snapshot, json!({"a": 1}));
    }

    #[test]
    fn bad_lines_say_why() {
        let cases = [
            ("{", "not valid JSON"),
            ("[1]", "expected a JSON object"),
            (r#"{"campaign_id":1}"#, "missing \"customer_id\""),
            (
                r#"{"customer_id":"x1","campaign_id":1}"#,
                "\"customer_id\" must be an integer",
            ),
            (
                r#"{"customer_id":1,"campaign_id":1,"event_time":"yesterday","event_type":"created","snapshot":{}}"#,
                "\"event_time\" \"yesterday\" is not a time",
            ),
            (
                r#"{"customer_id":1,"campaign_id":1,"event_time":"2024-01-01T00:00:00Z","event_type":"modified","snapshot":{}}"#,
                "\"event_type\" must be \"created\", \"updated\" or \"deleted\", got \"modified\"",
            ),
            (
                r#"{"customer_id":1,"campaign_id":1,"event_time":"2024-01-01T00:00:00Z","event_type":"created","snapshot":[1]}"#,
                "\"snapshot\" must be a JSON object, got an array",
            ),
        ];
        for (line, want) in cases {
            let e = parse_line(line, None).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
    }

    fn with_time(t: &str) -> String {
        format!(
            r#"{{"customer_id":1,"campaign_id":1,"event_time":"{t}","event_type":"created","snapshot":{{}}}}"#
        )
    }

    #[test]
    fn times_without_an_offset_need_a_zone() {
        for naive in ["2024-03-05 14:00:00", "2024-03-05T14:00:00.5", "2024-03-05"] {
            let e = parse_line(&with_time(naive), None).unwrap_err();
            assert!(e.contains("has no offset") && e.contains("--tz"), "{e}");
        }
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let c = parse_line(&with_time("2024-03-05 14:00:00"), Some(berlin)).unwrap();
        assert_eq!(c.event_time.to_rfc3339(), "2024-03-05T13:00:00+00:00");
        // an offset wins over the zone
        let c = parse_line(&with_time("2024-03-05T14:00:00Z"), Some(berlin)).unwrap();
        assert_eq!(c.event_time.to_rfc3339(), "2024-03-05T14:00:00+00:00");
        let c = parse_line(&with_time("2024-03-05 14:00:00 UTC"), None).unwrap();
        assert_eq!(c.event_time.to_rfc3339(), "2024-03-05T14:00:00+00:00");
        let e = parse_line(&with_time("2024-03-31 02:30"), Some(berlin)).unwrap_err();
        assert!(e.contains("does not exist in Europe/Berlin"), "{e}");
    }

    #[test]
    fn nul_characters_are_bad_lines_naming_where() {
        let cases = [
            (r#"{"a": "x\u0000y"}"#, "\"snapshot.a\" holds a NUL"),
            (
                r#"{"a": {"b": [1, "\u0000"]}}"#,
                "\"snapshot.a.b[1]\" holds a NUL",
            ),
            (r#"{"k\u0000": 1}"#, "a key of \"snapshot\" holds a NUL"),
            // a snapshot string holding JSON with the escape inside
            (r#""{\"a\": \"\\u0000\"}""#, "\"snapshot.a\" holds a NUL"),
        ];
        for (snap, want) in cases {
            let line = format!(
                r#"{{"customer_id":1,"campaign_id":1,"event_time":"2024-01-01T00:00:00Z","event_type":"created","snapshot":{snap}}}"#
            );
            let e = parse_line(&line, None).unwrap_err();
            assert!(e.contains(want), "{line}: {e}");
        }
        // an escaped backslash before "u0000" is no NUL
        let line = r#"{"customer_id":1,"campaign_id":1,"event_time":"2024-01-01T00:00:00Z","event_type":"created","snapshot":{"a":"\\u0000"}}"#;
        assert_eq!(parse_line(line, None).unwrap().snapshot["a"], "\\u0000");
    }
}

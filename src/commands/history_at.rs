//! `cdpctl history-at`: a customer's campaigns as they were at a moment,
//! what changed between two moments, or one campaign's timeline.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use chrono_tz::Tz;
use serde_json::{json, Map, Value};

use crate::error::Usage;
use crate::history::diff::{self, cell, CampaignChangeKind};
use crate::history::query::{self, SnapshotRow};
use crate::history::{time, HistoryConfig};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Customer whose campaigns to show
    #[arg(long, value_name = "ID")]
    pub customer: i64,
    /// The moment to look at: RFC 3339, "YYYY-MM-DD HH:MM[:SS]" (in --tz), a date or "now"
    #[arg(long, value_name = "TIME", required_unless_present = "timeline")]
    pub at: Option<String>,
    /// Only these campaigns (space- or comma-separated, or repeat the flag)
    #[arg(long, value_name = "ID", value_delimiter = ',', num_args = 1..)]
    pub campaign: Vec<i64>,
    /// Fields (columns) to show, comma-separated; "all" for the whole snapshot
    /// [default: history.default_fields: name,status,priority,updated_at]
    #[arg(long, value_name = "A,B,C", value_delimiter = ',')]
    pub fields: Option<Vec<String>>,
    /// Show deleted campaigns too
    #[arg(long)]
    pub include_deleted: bool,
    /// Per campaign, the fields that changed between TIME0 and --at
    #[arg(long, value_name = "TIME0", conflicts_with = "timeline")]
    pub diff_from: Option<String>,
    /// Every change of one campaign (--campaign ID), oldest first, up to --at if given
    #[arg(long)]
    pub timeline: bool,
    /// Time zone (IANA name) for times without an offset and for display
    /// [default: history.time_zone or UTC]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let hc = HistoryConfig::from_config(&app.config)?;
    let tz = match &args.tz {
        Some(z) => time::parse_tz(z).map_err(|e| Usage(format!("--tz: {e}")))?,
        None => hc.time_zone()?,
    };
    let parse = |flag: &str, s: &str| {
        time::parse_time(s, tz).map_err(|e| anyhow::Error::new(Usage(format!("{flag}: {e}"))))
    };
    let at = args.at.as_deref().map(|s| parse("--at", s)).transpose()?;
    let from = args
        .diff_from
        .as_deref()
        .map(|s| parse("--diff-from", s))
        .transpose()?;
    if args.timeline && args.campaign.len() != 1 {
        return Err(Usage("--timeline needs exactly one --campaign ID".into()).into());
    }
    let all_fields = args
        .fields
        .as_ref()
        .is_some_and(|f| f.len() == 1 && f[0] == "all");
    let requested: Option<Vec<String>> = args.fields.clone().filter(|_| !all_fields);

    let db = app.connect("history-at").await?;
    db.require_initialized().await?;
    if !query::customer_known(&db.client, &db.schemas, args.customer).await? {
        bail!(
            "customer {} has no recorded campaign history; check the customer id (history is captured once history.campaigns_table is set and `cdpctl init` ran, or loaded with `cdpctl history-import`)",
            args.customer
        );
    }
    let campaigns = (!args.campaign.is_empty()).then_some(args.campaign.as_slice());

    if args.timeline {
        let rows =
            query::timeline(&db.client, &db.schemas, args.customer, args.campaign[0], at).await?;
        return timeline(app, &args, &hc, requested.as_deref(), tz, &rows);
    }
    let at = at.expect("clap requires --at without --timeline");
    let now_rows =
        query::state_at(&db.client, &db.schemas, args.customer, at, campaigns, true).await?;
    if let Some(from) = from {
        let from_rows = query::state_at(
            &db.client,
            &db.schemas,
            args.customer,
            from,
            campaigns,
            true,
        )
        .await?;
        return diff_report(
            app,
            &args,
            &hc,
            requested.as_deref(),
            tz,
            from,
            at,
            &from_rows,
            &now_rows,
        );
    }
    state_report(
        app,
        &args,
        &hc,
        requested.as_deref(),
        all_fields,
        tz,
        at,
        now_rows,
    )
}

fn pick(snapshot: &Value, fields: &[String]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.clone(), snapshot.get(f).cloned().unwrap_or(Value::Null)))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn state_report(
    app: &App,
    args: &Args,
    hc: &HistoryConfig,
    requested: Option<&[String]>,
    all_fields: bool,
    tz: Tz,
    at: chrono::DateTime<chrono::Utc>,
    rows: Vec<SnapshotRow>,
) -> Result<()> {
    let hidden = if args.include_deleted {
        0
    } else {
        rows.iter().filter(|r| r.is_deleted()).count()
    };
    let rows: Vec<SnapshotRow> = rows
        .into_iter()
        .filter(|r| args.include_deleted || !r.is_deleted())
        .collect();
    let fields = diff::choose_fields(
        requested,
        &hc.default_fields,
        rows.iter().map(|r| &r.snapshot),
    );
    let doc = json!({
        "customer_id": args.customer,
        "at": time::rfc3339(at, tz),
        "time_zone": tz.name(),
        "campaigns": rows.iter().map(|r| json!({
            "campaign_id": r.campaign_id,
            "event_type": r.event_type,
            "event_time": time::rfc3339(r.event_time, tz),
            "fields": if all_fields { r.snapshot.clone() } else { Value::Object(pick(&r.snapshot, &fields)) },
        })).collect::<Vec<_>>(),
        "deleted_hidden": hidden,
    });
    app.out.emit(&doc, || {
        let mut s = format!(
            "customer {} at {}: {} campaign(s)",
            args.customer,
            time::display(at, tz),
            rows.len()
        );
        if hidden > 0 {
            s.push_str(&format!(
                " ({hidden} deleted not shown; --include-deleted shows them)"
            ));
        }
        s.push('\n');
        if rows.is_empty() {
            return s;
        }
        let cols: Vec<String> = if all_fields {
            diff::choose_fields(None, &[], rows.iter().map(|r| &r.snapshot))
        } else {
            fields.clone()
        };
        let mut header = vec!["campaign".to_string()];
        header.extend(cols.iter().cloned());
        header.push("last change".into());
        let mut t = crate::output::table(header);
        for r in &rows {
            let mut line = vec![r.campaign_id.to_string()];
            line.extend(cols.iter().map(|f| cell(r.snapshot.get(f))));
            line.push(format!(
                "{} {}",
                r.event_type,
                time::display(r.event_time, tz)
            ));
            t.add_row(line);
        }
        s.push_str(&t.to_string());
        s
    })
}

fn visible(rows: &[SnapshotRow]) -> BTreeMap<i64, Value> {
    rows.iter()
        .filter(|r| !r.is_deleted())
        .map(|r| (r.campaign_id, r.snapshot.clone()))
        .collect()
}

fn absent_or(v: Option<&Value>) -> String {
    match v {
        None => "(absent)".into(),
        some => cell(some),
    }
}

#[allow(clippy::too_many_arguments)]
fn diff_report(
    app: &App,
    args: &Args,
    hc: &HistoryConfig,
    requested: Option<&[String]>,
    tz: Tz,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
    from_rows: &[SnapshotRow],
    to_rows: &[SnapshotRow],
) -> Result<()> {
    let (before, after) = (visible(from_rows), visible(to_rows));
    let changes = diff::diff_states(&before, &after, requested);
    // Created and deleted campaigns show the display fields, not every field.
    let shown = diff::choose_fields(
        requested,
        &hc.default_fields,
        before.values().chain(after.values()),
    );
    let changes: Vec<diff::CampaignDiff> = changes
        .into_iter()
        .map(|mut c| {
            if c.change != CampaignChangeKind::Updated {
                c.fields.retain(|f| shown.contains(&f.field));
            }
            c
        })
        .filter(|c| c.change != CampaignChangeKind::Updated || !c.fields.is_empty())
        .collect();
    let doc = json!({
        "customer_id": args.customer,
        "from": time::rfc3339(from, tz),
        "to": time::rfc3339(to, tz),
        "time_zone": tz.name(),
        "campaigns": changes,
    });
    app.out.emit(&doc, || {
        let mut s = format!(
            "customer {}: changes from {} to {}: {} campaign(s) changed\n",
            args.customer,
            time::display(from, tz),
            time::display(to, tz),
            changes.len()
        );
        if changes.is_empty() {
            return s;
        }
        let mut t = crate::output::table(["campaign", "change", "field", "before", "after"]);
        for c in &changes {
            let kind = serde_json::to_value(c.change)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            if c.fields.is_empty() {
                t.add_row(vec![
                    c.campaign_id.to_string(),
                    kind,
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                continue;
            }
            for (i, f) in c.fields.iter().enumerate() {
                let (id, k) = if i == 0 {
                    (c.campaign_id.to_string(), kind.clone())
                } else {
                    (String::new(), String::new())
                };
                t.add_row(vec![
                    id,
                    k,
                    f.field.clone(),
                    absent_or(f.before.as_ref()),
                    absent_or(f.after.as_ref()),
                ]);
            }
        }
        s.push_str(&t.to_string());
        s
    })
}

fn timeline(
    app: &App,
    args: &Args,
    hc: &HistoryConfig,
    requested: Option<&[String]>,
    tz: Tz,
    rows: &[SnapshotRow],
) -> Result<()> {
    let campaign = args.campaign[0];
    let shown = diff::choose_fields(
        requested,
        &hc.default_fields,
        rows.iter().map(|r| &r.snapshot),
    );
    let mut entries = Vec::new();
    let mut prev: Option<&Value> = None;
    for r in rows {
        let changes = match r.event_type.as_str() {
            // A (re-)creation or a deletion: its display fields.
            "created" | "deleted" => diff::diff_fields(None, Some(&r.snapshot), Some(&shown)),
            _ => diff::diff_fields(prev, Some(&r.snapshot), requested),
        };
        entries.push((r, changes));
        prev = Some(&r.snapshot);
    }
    let doc = json!({
        "customer_id": args.customer,
        "campaign_id": campaign,
        "time_zone": tz.name(),
        "changes": entries.iter().map(|(r, ch)| json!({
            "event_time": time::rfc3339(r.event_time, tz),
            "event_type": r.event_type,
            "changes": ch,
            "snapshot": r.snapshot,
        })).collect::<Vec<_>>(),
    });
    app.out.emit(&doc, || {
        let mut s = format!(
            "campaign {campaign} of customer {}: {} change(s)\n",
            args.customer,
            entries.len()
        );
        if entries.is_empty() {
            return s;
        }
        let mut t = crate::output::table(["time", "event", "fields"]);
        for (r, ch) in &entries {
            let text: Vec<String> = ch
                .iter()
                .map(|f| match r.event_type.as_str() {
                    "created" | "deleted" => format!("{}: {}", f.field, cell(f.after.as_ref())),
                    _ => format!(
                        "{}: {} -> {}",
                        f.field,
                        absent_or(f.before.as_ref()),
                        absent_or(f.after.as_ref())
                    ),
                })
                .collect();
            let text = if text.is_empty() {
                "(no field changed)".to_string()
            } else {
                text.join("\n")
            };
            t.add_row(vec![
                time::display(r.event_time, tz),
                r.event_type.clone(),
                text,
            ]);
        }
        s.push_str(&t.to_string());
        s
    })
}

//! `cdpctl history-at`: a customer's campaigns as they were at a moment,
//! what changed between two moments (and who changed it), or the timeline
//! of every change with its actor.

use std::collections::{BTreeMap, HashMap};

use anyhow::{bail, Result};
use chrono::Utc;
use serde_json::{json, Map, Value};

use crate::error::Usage;
use crate::history::diff::{self, CampaignChangeKind};
use crate::history::query::{self, Actor, SnapshotRow};
use crate::history::time::{self, Moment, Style};
use crate::history::HistoryConfig;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Customer whose campaigns to show
    #[arg(long, value_name = "ID")]
    pub customer: i64,
    /// The moment to look at: RFC 3339; "YYYY-MM-DD HH:MM[:SS]", a date or
    /// HH:MM[:SS] (today) in --tz; now, today, yesterday [HH:MM]; "2h ago",
    /// "30m ago", "3 days ago", "1 week ago"
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
    /// Per campaign, the fields that changed between TIME0 and --at, and who
    /// changed them
    #[arg(long, value_name = "TIME0", conflicts_with = "timeline")]
    pub diff_from: Option<String>,
    /// Every change with who made it, oldest first: of the --campaign(s)
    /// given, else of all the customer's campaigns; up to --at if given
    #[arg(long)]
    pub timeline: bool,
    /// Time zone (IANA name) for times without an offset and for every time
    /// printed [default: history.time_zone or UTC]
    #[arg(long, value_name = "ZONE")]
    pub tz: Option<String>,
    /// Print times to the microsecond, as stored [default: to the second]
    #[arg(long)]
    pub precise: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let hc = HistoryConfig::from_config(&app.config)?;
    let tz = match &args.tz {
        Some(z) => time::parse_tz(z).map_err(|e| Usage(format!("--tz: {e}")))?,
        None => hc.time_zone()?,
    };
    let style = Style::new(tz, args.precise);
    let now = Utc::now();
    let parse = |flag: &str, s: &str| -> Result<Moment> {
        let m = time::parse_time_at(s, tz, now)
            .map_err(|e| anyhow::Error::new(Usage(format!("{flag}: {e}"))))?;
        if let Some(note) = time::future_note(s, &m, now, &style) {
            app.out.info(format!("note: {flag} {note}"));
        }
        Ok(m)
    };
    let at = args.at.as_deref().map(|s| parse("--at", s)).transpose()?;
    let from = args
        .diff_from
        .as_deref()
        .map(|s| parse("--diff-from", s))
        .transpose()?;
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
    let report = Report {
        app,
        args: &args,
        hc: &hc,
        requested: requested.as_deref(),
        style,
    };

    if args.timeline {
        let until = at.map(|m| m.through());
        let rows =
            query::timeline(&db.client, &db.schemas, args.customer, campaigns, until).await?;
        return report.timeline(at, &rows);
    }
    let at = at.expect("clap requires --at without --timeline");
    let (c, s) = (&db.client, &db.schemas);
    let now_rows = query::state_at(c, s, args.customer, at.through(), campaigns, true).await?;
    if let Some(from) = from {
        let from_rows =
            query::state_at(c, s, args.customer, from.through(), campaigns, true).await?;
        let (lo, hi) = if from.through() <= at.through() {
            (from.through(), at.through())
        } else {
            (at.through(), from.through())
        };
        let by = query::changed_by(c, s, args.customer, campaigns, lo, hi).await?;
        return report.diff(from, at, &from_rows, &now_rows, &by);
    }
    report.state(all_fields, at, now_rows)
}

/// What every rendering needs.
struct Report<'a> {
    app: &'a App,
    args: &'a Args,
    hc: &'a HistoryConfig,
    requested: Option<&'a [String]>,
    style: Style,
}

/// `v` (an object) with the actor columns added.
fn with_actor(mut v: Value, actor: &Actor) -> Value {
    if let (Value::Object(m), Ok(Value::Object(a))) = (&mut v, serde_json::to_value(actor)) {
        m.extend(a);
    }
    v
}

/// ` by alice@support (app_user via billing-ui)`, or nothing.
fn by_suffix(actor: &Actor) -> String {
    actor
        .describe()
        .map(|d| format!(" by {d}"))
        .unwrap_or_default()
}

fn pick(snapshot: &Value, fields: &[String]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.clone(), snapshot.get(f).cloned().unwrap_or(Value::Null)))
        .collect()
}

fn visible(rows: &[SnapshotRow]) -> BTreeMap<i64, Value> {
    rows.iter()
        .filter(|r| !r.is_deleted())
        .map(|r| (r.campaign_id, r.snapshot.clone()))
        .collect()
}

impl Report<'_> {
    /// Prints `doc` (every time in it in the output's style) or the table.
    fn emit(&self, doc: Value, human: impl FnOnce() -> String) -> Result<()> {
        self.app.out.emit(&self.style.json(&doc), human)
    }

    fn absent_or(&self, v: Option<&Value>) -> String {
        match v {
            None => "(absent)".into(),
            some => self.style.cell(some),
        }
    }

    fn state(self, all_fields: bool, at: Moment, rows: Vec<SnapshotRow>) -> Result<()> {
        let (args, style) = (self.args, self.style);
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
            self.requested,
            &self.hc.default_fields,
            rows.iter().map(|r| &r.snapshot),
        );
        let doc = json!({
            "customer_id": args.customer,
            "at": style.rfc3339(at.at),
            "time_zone": style.tz.name(),
            "campaigns": rows.iter().map(|r| with_actor(json!({
                "campaign_id": r.campaign_id,
                "event_type": r.event_type,
                "event_time": style.rfc3339(r.event_time),
                "fields": if all_fields { r.snapshot.clone() } else { Value::Object(pick(&r.snapshot, &fields)) },
            }), &r.actor)).collect::<Vec<_>>(),
            "deleted_hidden": hidden,
        });
        self.emit(doc, || {
            let mut s = format!(
                "customer {} at {}: {} campaign(s)",
                args.customer,
                style.display(at.at),
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
                line.extend(cols.iter().map(|f| style.cell(r.snapshot.get(f))));
                line.push(format!(
                    "{} {}{}",
                    r.event_type,
                    style.display(r.event_time),
                    by_suffix(&r.actor)
                ));
                t.add_row(line);
            }
            s.push_str(&t.to_string());
            s
        })
    }

    fn diff(
        self,
        from: Moment,
        to: Moment,
        from_rows: &[SnapshotRow],
        to_rows: &[SnapshotRow],
        by: &BTreeMap<i64, Vec<Actor>>,
    ) -> Result<()> {
        let (args, style) = (self.args, self.style);
        let (before, after) = (visible(from_rows), visible(to_rows));
        let changes = diff::diff_states(&before, &after, self.requested);
        // Created and deleted campaigns show the display fields, not every field.
        let shown = diff::choose_fields(
            self.requested,
            &self.hc.default_fields,
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
        let none = Vec::new();
        let actors = |id: i64| by.get(&id).unwrap_or(&none);
        let doc = json!({
            "customer_id": args.customer,
            "from": style.rfc3339(from.at),
            "to": style.rfc3339(to.at),
            "time_zone": style.tz.name(),
            "campaigns": changes.iter().map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                v["changed_by"] = json!(actors(c.campaign_id));
                v
            }).collect::<Vec<_>>(),
        });
        let any_actor = changes
            .iter()
            .any(|c| actors(c.campaign_id).iter().any(Actor::is_known));
        self.emit(doc, || {
            let mut s = format!(
                "customer {}: changes from {} to {}: {} campaign(s) changed\n",
                args.customer,
                style.display(from.at),
                style.display(to.at),
                changes.len()
            );
            if changes.is_empty() {
                return s;
            }
            let mut header = vec!["campaign", "change", "field", "before", "after"];
            if any_actor {
                header.push("changed by");
            }
            let mut t = crate::output::table(header);
            for c in &changes {
                let kind = serde_json::to_value(c.change)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                let who: Vec<String> = actors(c.campaign_id)
                    .iter()
                    .map(|a| a.describe().unwrap_or_else(|| "(not recorded)".into()))
                    .collect();
                let lines: Vec<[String; 3]> = if c.fields.is_empty() {
                    vec![["-".into(), "-".into(), "-".into()]]
                } else {
                    c.fields
                        .iter()
                        .map(|f| {
                            [
                                f.field.clone(),
                                self.absent_or(f.before.as_ref()),
                                self.absent_or(f.after.as_ref()),
                            ]
                        })
                        .collect()
                };
                for (i, [field, before, after]) in lines.into_iter().enumerate() {
                    let first = i == 0;
                    let mut row = vec![
                        if first {
                            c.campaign_id.to_string()
                        } else {
                            String::new()
                        },
                        if first { kind.clone() } else { String::new() },
                        field,
                        before,
                        after,
                    ];
                    if any_actor {
                        row.push(if first { who.join("\n") } else { String::new() });
                    }
                    t.add_row(row);
                }
            }
            s.push_str(&t.to_string());
            s
        })
    }

    fn timeline(self, at: Option<Moment>, rows: &[SnapshotRow]) -> Result<()> {
        let (args, style) = (self.args, self.style);
        let single = (args.campaign.len() == 1).then(|| args.campaign[0]);
        let shown = diff::choose_fields(
            self.requested,
            &self.hc.default_fields,
            rows.iter().map(|r| &r.snapshot),
        );
        // Each change against the previous snapshot of the same campaign.
        let mut prev: HashMap<i64, &Value> = HashMap::new();
        let mut entries = Vec::new();
        for r in rows {
            let changes = match r.event_type.as_str() {
                // A (re-)creation or a deletion: its display fields.
                "created" | "deleted" => diff::diff_fields(None, Some(&r.snapshot), Some(&shown)),
                _ => diff::diff_fields(
                    prev.get(&r.campaign_id).copied(),
                    Some(&r.snapshot),
                    self.requested,
                ),
            };
            entries.push((r, changes));
            prev.insert(r.campaign_id, &r.snapshot);
        }
        let mut doc = json!({
            "customer_id": args.customer,
            "campaigns": args.campaign,
            "at": at.map(|m| style.rfc3339(m.at)),
            "time_zone": style.tz.name(),
            "changes": entries.iter().map(|(r, ch)| with_actor(json!({
                "campaign_id": r.campaign_id,
                "event_time": style.rfc3339(r.event_time),
                "event_type": r.event_type,
                "changes": ch,
                "snapshot": r.snapshot,
            }), &r.actor)).collect::<Vec<_>>(),
        });
        if let Some(c) = single {
            doc["campaign_id"] = json!(c);
        }
        let any_actor = rows.iter().any(|r| r.actor.is_known());
        self.emit(doc, || {
            let mut s = match single {
                Some(c) => format!(
                    "campaign {c} of customer {}: {} change(s)\n",
                    args.customer,
                    entries.len()
                ),
                None => format!(
                    "customer {}: {} change(s) of {} campaign(s)\n",
                    args.customer,
                    entries.len(),
                    prev.len()
                ),
            };
            if entries.is_empty() {
                return s;
            }
            let mut header = vec!["time"];
            if single.is_none() {
                header.push("campaign");
            }
            header.push("event");
            if any_actor {
                header.push("by");
            }
            header.push("fields");
            let mut t = crate::output::table(header);
            for (r, ch) in &entries {
                let text: Vec<String> = ch
                    .iter()
                    .map(|f| match r.event_type.as_str() {
                        "created" | "deleted" => {
                            format!("{}: {}", f.field, style.cell(f.after.as_ref()))
                        }
                        _ => format!(
                            "{}: {} -> {}",
                            f.field,
                            self.absent_or(f.before.as_ref()),
                            self.absent_or(f.after.as_ref())
                        ),
                    })
                    .collect();
                let text = if text.is_empty() {
                    "(no field changed)".to_string()
                } else {
                    text.join("\n")
                };
                let mut row = vec![style.display(r.event_time)];
                if single.is_none() {
                    row.push(r.campaign_id.to_string());
                }
                row.push(r.event_type.clone());
                if any_actor {
                    row.push(r.actor.describe().unwrap_or_else(|| "-".into()));
                }
                row.push(text);
                t.add_row(row);
            }
            s.push_str(&t.to_string());
            s
        })
    }
}

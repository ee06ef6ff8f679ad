//! Generator of the sample CDP. Everything is streamed into PostgreSQL with
//! COPY, so the same code seeds a 1k-customer demo and a 10M-event benchmark.

use anyhow::{Context, Result};
use bytes::Bytes;
use futures_util::SinkExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use crate::db::{PgResultExt, Schemas};

#[derive(Debug, Clone)]
pub struct GenOptions {
    pub customers: u64,
    pub seed: u64,
    /// Average events per customer (uniform in 1..=2*avg-1).
    pub events_per_customer: u32,
    /// Number of cookie-rotation chains (each event shares one cookie with the
    /// next), the deep shapes that make label propagation slow.
    pub chains: u64,
    pub chain_len: u64,
    /// Share of sign-in events carrying a junk identifier (percent).
    pub junk_percent: u32,
    /// Extra identifiers on every event (`xid0`, `xid1`, ...: per-customer
    /// values rotating like cookies), each with a stitching rule; 0 keeps the
    /// standard data set. One extra gives ~3 identifiers per event.
    pub extra_identifiers: u32,
    /// Base time: events fall in the 90 days before it.
    pub now: chrono::DateTime<chrono::Utc>,
    /// E-mail events carry the e-mail platform's contact id (customer `c`
    /// is contact [`contact_id`]`(c)` of the sample audiences) and the
    /// `contact_id` attribute picks it up, so campaign-linked groups have
    /// keys to queue. Off in the benchmarks, which keep the data set they
    /// were measured on.
    pub contact_ids: bool,
}

impl Default for GenOptions {
    fn default() -> Self {
        Self {
            customers: 1000,
            seed: 42,
            events_per_customer: 10,
            chains: 2,
            chain_len: 50,
            junk_percent: 1,
            extra_identifiers: 0,
            now: chrono::DateTime::parse_from_rfc3339("2026-11-01T12:00:00Z")
                .unwrap()
                .with_timezone(&chrono::Utc),
            contact_ids: true,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenSummary {
    pub sources: u64,
    pub event_types: u64,
    pub stitching_rules: u64,
    pub attributes: u64,
    pub customers: u64,
    pub events: u64,
}

/// The event catalogue: (source, type, version, identifier fields).
pub const EVENT_TYPES: &[(&str, &str, &str, &[&str])] = &[
    (
        "web",
        "page_view",
        "1-0-0",
        &["cookie_id", "ga_id", "email"],
    ),
    ("web", "signin", "1-0-0", &["cookie_id", "email", "user_id"]),
    ("app", "app_open", "1-0-0", &["device_id", "user_id"]),
    (
        "app",
        "purchase",
        "1-0-0",
        &["device_id", "user_id", "email"],
    ),
    ("email", "email_open", "1-0-0", &["email"]),
    ("email", "email_click", "1-0-0", &["email"]),
];

/// The stitching attribute for each identifier field and its value expression.
pub const IDENTIFIERS: &[(&str, &str, &str)] = &[
    ("cookie_id", "stitching_cookie_id", "payload->>'cookie_id'"),
    ("ga_id", "stitching_ga_id", "payload->>'ga_id'"),
    ("email", "stitching_email", "lower(payload->>'email')"),
    ("user_id", "stitching_user_id", "payload->>'user_id'"),
    ("device_id", "stitching_device_id", "payload->>'device_id'"),
];

/// Event id of a (source, type, version): a stable hex digest.
pub fn event_id(source: &str, ty: &str, version: &str) -> String {
    let d = Sha256::digest(format!("{source}/{ty}/{version}").as_bytes());
    hex::encode(&d[..16])
}

/// A deterministic UUID string from the generator's random stream.
pub fn uuid_from(rng: &mut SmallRng) -> String {
    let v: u128 = rng.gen();
    let v =
        (v & !(0xf000u128 << 64) | (0x4000u128 << 64)) & !(0xc000u128 << 48) | (0x8000u128 << 48);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Attribute definitions covering every calculation type (and the contact
/// id, see [`GenOptions::contact_ids`]).
pub fn attribute_definitions(s: &Schemas, opt: &GenOptions) -> Vec<serde_json::Value> {
    let ctx = format!(
        "SELECT count(*)::numeric / greatest((SELECT value FROM {}.context WHERE key = 'avg_events_per_entity')::numeric, 1) AS value FROM base",
        s.attr
    );
    let mut defs = vec![
        json!({"id": "first_source", "type": "first", "value": "source_id"}),
        json!({"id": "last_device_family", "type": "last", "value": "payload->>'device_family'",
               "sources": ["web", "app"]}),
        json!({"id": "favourite_page", "type": "most_frequent", "value": "payload->>'page'",
               "types": ["page_view"]}),
        json!({"id": "rarest_page", "type": "least_frequent", "value": "payload->>'page'",
               "types": ["page_view"]}),
        json!({"id": "emails", "type": "list", "value": "lower(payload->>'email')"}),
        json!({"id": "avg_purchase", "type": "avg", "value": "payload->>'amount'",
               "types": ["purchase"]}),
        json!({"id": "total_spent", "type": "sum", "value": "payload->>'amount'",
               "types": ["purchase"], "filter": "payload->>'currency' = 'EUR'"}),
        json!({"id": "max_purchase", "type": "max", "value": "payload->>'amount'", "types": ["purchase"]}),
        json!({"id": "min_purchase", "type": "min", "value": "payload->>'amount'", "types": ["purchase"]}),
        json!({"id": "unique_pages", "type": "num_of_unique", "value": "payload->>'page'"}),
        json!({"id": "any_campaign", "type": "value", "value": "payload->>'campaign'",
               "sources": ["email"]}),
        json!({"id": "favourite_category", "type": "most_frequent", "value": "payload->'items'",
               "outer_value": "jsonb_array_elements(value)->>'category'",
               "outer_weight": "1", "types": ["purchase"]}),
        json!({"id": "event_count", "type": "custom", "query": "SELECT count(*) AS value FROM base"}),
        json!({"id": "engagement", "type": "custom", "query": ctx}),
    ];
    if opt.contact_ids {
        defs.push(
            json!({"id": "contact_id", "type": "last", "value": "payload->>'contact_id'",
                         "sources": ["email"]}),
        );
    }
    defs
}

struct CopyBuf<'a> {
    sink: std::pin::Pin<Box<tokio_postgres::CopyInSink<Bytes>>>,
    buf: String,
    what: &'a str,
}

impl<'a> CopyBuf<'a> {
    fn new(sink: tokio_postgres::CopyInSink<Bytes>, what: &'a str) -> Result<CopyBuf<'a>> {
        Ok(Self {
            sink: Box::pin(sink),
            buf: String::with_capacity(1 << 20),
            what,
        })
    }

    async fn row(&mut self, fields: &[&str]) -> Result<()> {
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                self.buf.push('\t');
            }
            copy_escape(&mut self.buf, f);
        }
        self.buf.push('\n');
        if self.buf.len() > (1 << 20) {
            let chunk = std::mem::replace(&mut self.buf, String::with_capacity(1 << 20));
            self.sink
                .send(Bytes::from(chunk))
                .await
                .pg_context(|| format!("COPY into {}", self.what))?;
        }
        Ok(())
    }

    async fn finish(mut self) -> Result<u64> {
        let chunk = std::mem::take(&mut self.buf);
        if !chunk.is_empty() {
            self.sink
                .send(Bytes::from(chunk))
                .await
                .pg_context(|| format!("COPY into {}", self.what))?;
        }
        self.sink
            .as_mut()
            .finish()
            .await
            .pg_context(|| format!("finishing COPY into {}", self.what))
    }
}

/// Escapes one field for COPY's text format.
pub fn copy_escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
}

const PAGES: &[&str] = &[
    "/",
    "/pricing",
    "/blog",
    "/docs",
    "/contact",
    "/product/a",
    "/product/b",
    "/checkout",
];
const FAMILIES: &[&str] = &["iPhone", "Android", "Mac", "Windows", "Linux"];
const CATEGORIES: &[&str] = &["shoes", "shirts", "books", "garden", "toys"];
const JUNK: &[&str] = &[
    "test@test.com",
    "undefined",
    "null",
    "0",
    "-1",
    "",
    " ",
    "unknown",
];

/// Seeds the catalogue, stitching config, attribute definitions, a context
/// key and the customer events. Runs in one transaction.
pub async fn load(client: &mut Client, s: &Schemas, opt: &GenOptions) -> Result<GenSummary> {
    let mut sum = GenSummary::default();
    let tx = client.transaction().await?;
    for (src, name) in [
        ("web", "Website"),
        ("app", "Mobile app"),
        ("email", "E-mail"),
    ] {
        tx.execute(
            &format!(
                "INSERT INTO {}.sources (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                s.cdp
            ),
            &[&src, &name],
        )
        .await
        .pg_context(|| "seeding sources".into())?;
        sum.sources += 1;
    }
    for (src, ty, ver, _) in EVENT_TYPES {
        let id = event_id(src, ty, ver);
        tx.execute(
            &format!(
                "INSERT INTO {}.events (id, source_id, type, version, name) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                s.cdp
            ),
            &[&id, src, ty, ver, &format!("{src} {ty}")],
        )
        .await
        .pg_context(|| "seeding the event catalogue".into())?;
        sum.event_types += 1;
    }
    for (_, attr, _) in IDENTIFIERS {
        tx.execute(
            &format!(
                "INSERT INTO {}.attributes (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                s.cdp
            ),
            &[attr, attr],
        )
        .await?;
    }
    for (src, ty, ver, fields) in EVENT_TYPES {
        for f in *fields {
            let (_, attr, expr) = IDENTIFIERS.iter().find(|(n, _, _)| n == f).unwrap();
            tx.execute(
                &format!(
                    "INSERT INTO {}.stitching_attributes_config (attribute_id, event_id, value_expression)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    s.ps
                ),
                &[attr, &event_id(src, ty, ver), expr],
            )
            .await
            .pg_context(|| "seeding the stitching config".into())?;
            sum.stitching_rules += 1;
        }
    }
    for k in 0..opt.extra_identifiers {
        let attr = format!("stitching_xid{k}");
        tx.execute(
            &format!(
                "INSERT INTO {}.attributes (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                s.cdp
            ),
            &[&attr, &attr],
        )
        .await?;
        for (src, ty, ver, _) in EVENT_TYPES {
            tx.execute(
                &format!(
                    "INSERT INTO {}.stitching_attributes_config (attribute_id, event_id, value_expression)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                    s.ps
                ),
                &[&attr, &event_id(src, ty, ver), &format!("payload->>'xid{k}'")],
            )
            .await
            .pg_context(|| "seeding the stitching config".into())?;
            sum.stitching_rules += 1;
        }
    }
    for def in attribute_definitions(s, opt) {
        let id = def["id"].as_str().unwrap().to_string();
        tx.execute(
            &format!(
                "INSERT INTO {}.attributes (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                s.cdp
            ),
            &[&id, &id],
        )
        .await?;
        tx.execute(
            &format!(
                "INSERT INTO {}.attributes (id, definition) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET definition = EXCLUDED.definition",
                s.attr
            ),
            &[&id, &def],
        )
        .await
        .pg_context(|| "seeding attribute definitions".into())?;
        sum.attributes += 1;
    }
    tx.execute(
        &format!(
            "INSERT INTO {}.context (key, query) VALUES ('avg_events_per_entity', $1) ON CONFLICT (key) DO NOTHING",
            s.attr
        ),
        &[&format!(
            "SELECT round(count(*)::numeric / greatest((SELECT count(*) FROM {}.customer_entities), 1), 2) FROM {}.customer_events",
            s.attr, s.ce
        )],
    )
    .await?;

    let sink = tx
        .copy_in(&format!(
            "COPY {}.customer_events (id, source_id, type, version, event_time, payload) FROM STDIN",
            s.ce
        ))
        .await
        .pg_context(|| "starting COPY into customer_events".into())?;
    let mut copy = CopyBuf::new(sink, "customer_events")?;
    let mut rng = SmallRng::seed_from_u64(opt.seed);
    let span = 90 * 86_400i64;
    let base = opt.now.timestamp() - span;
    for c in 0..opt.customers {
        let n_cookies = rng.gen_range(1..=3u32);
        let has_email = rng.gen_bool(0.7);
        let has_user = rng.gen_bool(0.5);
        let has_app = rng.gen_bool(0.4);
        let shares_device = rng.gen_bool(0.005);
        let family = FAMILIES[rng.gen_range(0..FAMILIES.len())];
        let email = if rng.gen_bool(0.2) {
            format!("User{c}@Example.com")
        } else {
            format!("user{c}@example.com")
        };
        let n_events = rng.gen_range(1..=(2 * opt.events_per_customer.max(1) - 1));
        for _ in 0..n_events {
            let mut ts = base + rng.gen_range(0..span);
            if rng.gen_bool(0.02) {
                // a late event: recorded long before the rest of the history
                ts -= 200 * 86_400;
            }
            let cookie_k = rng.gen_range(0..n_cookies);
            let cookie = if shares_device && cookie_k == 0 {
                format!("ck-{}-0", c + 1)
            } else {
                format!("ck-{c}-{cookie_k}")
            };
            let pick = rng.gen_range(0..100u32);
            let (src, ty, payload) = if pick < 45 || (!has_email && !has_app && pick < 80) {
                let mut p = json!({"cookie_id": cookie, "ga_id": format!("ga-{c}-{cookie_k}"),
                    "page": PAGES[rng.gen_range(0..PAGES.len())], "device_family": family});
                if has_email && rng.gen_bool(0.3) {
                    p["email"] = json!(email);
                }
                if rng.gen_bool(0.01) {
                    p = json!({"page": "/", "device_family": "bot"});
                }
                ("web", "page_view", p)
            } else if pick < 60 {
                let mut p = json!({"cookie_id": cookie, "device_family": family});
                if has_email {
                    p["email"] = json!(email);
                }
                if has_user {
                    p["user_id"] = json!(format!("u{c}"));
                }
                if rng.gen_range(0..100) < opt.junk_percent {
                    p["email"] = json!(JUNK[rng.gen_range(0..JUNK.len())]);
                    p["user_id"] = json!(JUNK[rng.gen_range(0..JUNK.len())]);
                }
                ("web", "signin", p)
            } else if pick < 80 && has_app {
                let mut p = json!({"device_id": format!("dev-{c}"), "device_family": family,
                    "app_version": format!("3.{}", rng.gen_range(0..5))});
                if has_user {
                    p["user_id"] = json!(format!("u{c}"));
                }
                let ty = if rng.gen_bool(0.3) {
                    "purchase"
                } else {
                    "app_open"
                };
                if ty == "purchase" {
                    let items: Vec<_> = (0..rng.gen_range(1..4))
                        .map(|_| {
                            json!({"category": CATEGORIES[rng.gen_range(0..CATEGORIES.len())],
                                         "price": rng.gen_range(1..200)})
                        })
                        .collect();
                    p["amount"] = json!(format!("{:.2}", rng.gen_range(5.0..500.0f64)));
                    p["currency"] = json!(if rng.gen_bool(0.8) { "EUR" } else { "USD" });
                    p["items"] = json!(items);
                    if has_email {
                        p["email"] = json!(email);
                    }
                    if rng.gen_bool(0.02) {
                        p["amount"] = json!("n/a");
                    }
                }
                ("app", ty, p)
            } else if has_email {
                let ty = if rng.gen_bool(0.7) {
                    "email_open"
                } else {
                    "email_click"
                };
                let mut p =
                    json!({"email": email, "campaign": format!("nl-{}", rng.gen_range(1..20))});
                if opt.contact_ids {
                    p["contact_id"] = json!(super::audiences::contact_id(c as usize));
                }
                ("email", ty, p)
            } else {
                (
                    "web",
                    "page_view",
                    json!({"cookie_id": cookie, "page": "/", "device_family": family}),
                )
            };
            let mut payload = payload;
            for k in 0..opt.extra_identifiers {
                payload[format!("xid{k}")] = json!(format!("x{k}-{c}-{}", rng.gen_range(0..3u32)));
            }
            let id = uuid_from(&mut rng);
            let t = chrono::DateTime::from_timestamp(ts, 0)
                .unwrap()
                .to_rfc3339();
            copy.row(&[&id, src, ty, "1-0-0", &t, &payload.to_string()])
                .await?;
            sum.events += 1;
        }
        sum.customers += 1;
    }
    for ch in 0..opt.chains {
        for i in 0..opt.chain_len {
            let id = uuid_from(&mut rng);
            let ts = base + rng.gen_range(0..span);
            let t = chrono::DateTime::from_timestamp(ts, 0)
                .unwrap()
                .to_rfc3339();
            // consecutive events share one cookie: a path graph
            // (alternately through cookie_id and ga_id)
            let mut p = json!({"cookie_id": format!("chain-{ch}-{}", i.div_ceil(2)),
                "ga_id": format!("chainga-{ch}-{}", i / 2),
                "page": "/", "device_family": "Linux"});
            for k in 0..opt.extra_identifiers {
                p[format!("xid{k}")] = json!(format!("xc{k}-{ch}-{i}"));
            }
            copy.row(&[&id, "web", "page_view", "1-0-0", &t, &p.to_string()])
                .await?;
            sum.events += 1;
        }
        sum.customers += 1;
    }
    copy.finish().await?;
    tx.commit().await.context("committing the sample data")?;
    Ok(sum)
}

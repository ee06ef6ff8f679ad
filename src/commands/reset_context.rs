//! `cdpctl reset-context [KEY...]`: mark context keys stale so the next
//! calc-attrs recomputes them, or recompute them now.

use anyhow::Result;
use serde_json::json;

use crate::attrs::context;
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Keys to reset (default: every key)
    pub keys: Vec<String>,
    /// Recompute them immediately instead of on the next calc-attrs
    #[arg(long)]
    pub now: bool,
    /// Show which keys would be reset; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let mut db = app.connect("reset-context").await?;
    db.require_initialized().await?;
    let keys = context::resolve_keys(&db, &args.keys).await?;
    if args.dry_run {
        return app.out.emit(&json!({"dry_run": true, "keys": keys}), || {
            format!(
                "would reset {} key(s): {} (dry run: nothing changed)",
                keys.len(),
                keys.join(", ")
            )
        });
    }
    if args.now {
        crate::attrs::lock(&db).await?;
        let values = context::refresh(&mut db, &keys).await?;
        return app.out.emit(&json!({"recomputed": values}), || {
            let mut t = crate::output::table(["key", "value"]);
            for v in &values {
                t.add_row(vec![
                    v.key.clone(),
                    v.value.clone().unwrap_or_else(|| "NULL".into()),
                ]);
            }
            t.to_string()
        });
    }
    context::reset(&db, &keys).await?;
    app.out.emit(&json!({"reset": keys}), || {
        if keys.is_empty() {
            "no context keys defined; nothing to reset".into()
        } else {
            format!(
                "marked {} key(s) stale: {}; the next calc-attrs recomputes them",
                keys.len(),
                keys.join(", ")
            )
        }
    })
}

//! `cdpctl init`: create or upgrade the schema from `sql/`.

use anyhow::Result;
use serde_json::json;

use crate::schema::{self, State};
use crate::App;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the SQL that would run and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

pub async fn run(app: &App, args: Args) -> Result<()> {
    let mut db = app.connect("init").await?;
    db.lock_job("init").await?;
    let unknown = schema::unknown_applied(&db).await?;
    if !unknown.is_empty() {
        anyhow::bail!(
            "{} has migration(s) applied that this cdpctl does not ship: {}; it was initialised by a newer cdpctl (run that version, or upgrade this one) — nothing was changed",
            db.params.dbname(),
            unknown.join(", ")
        );
    }
    let plan = schema::plan(&db).await?;
    let pending: Vec<_> = plan
        .iter()
        .filter(|(_, s)| *s == State::Pending)
        .map(|(m, _)| *m)
        .collect();
    if args.dry_run {
        let mut sql = schema::render(&db, &pending);
        for s in post_migrate_sql(&db).await? {
            sql.push_str(&format!("\n{s};"));
        }
        let labels: Vec<String> = pending.iter().map(|m| m.label()).collect();
        return app.out.emit(
            &json!({"dry_run": true, "pending": labels, "sql": sql}),
            || {
                if pending.is_empty() && !sql.contains("\n-- config: ") {
                    "-- schema is up to date; nothing would change".into()
                } else {
                    format!("-- dry run: nothing was changed\n{sql}")
                }
            },
        );
    }
    let applied = schema::apply(&mut db).await?;
    let extra = crate::commands::init::post_migrate(&mut db).await?;
    let total = plan.len();
    app.out.emit(
        &json!({
            "database": db.params.dbname(),
            "applied": applied,
            "up_to_date": applied.is_empty() && extra.is_empty(),
            "migrations": total,
            "extra": extra,
        }),
        || {
            let mut s = String::new();
            if applied.is_empty() {
                s.push_str(&format!(
                    "schema is up to date ({total} migrations applied earlier){}\n",
                    if extra.is_empty() {
                        "; nothing changed"
                    } else {
                        ""
                    }
                ));
            } else {
                for m in &applied {
                    s.push_str(&format!("applied sql/{m}.sql\n"));
                }
                s.push_str(&format!(
                    "database \"{}\" is at migration {}\n",
                    db.params.dbname(),
                    schema::MIGRATIONS.last().map(|m| m.version).unwrap_or("-")
                ));
            }
            for e in &extra {
                s.push_str(e);
                s.push('\n');
            }
            s
        },
    )
}

/// Steps that depend on the config rather than on a versioned file (such as
/// capture triggers on a configured table). Each returns lines describing what
/// it changed; nothing when everything was already in place.
pub async fn post_migrate(db: &mut crate::db::Db) -> Result<Vec<String>> {
    let mut changed = Vec::new();
    changed.extend(crate::history::capture::install(db).await?);
    changed.extend(crate::db::eval::install(db).await?);
    Ok(changed)
}

/// The SQL `post_migrate` would run, for `init --dry-run`.
pub async fn post_migrate_sql(db: &crate::db::Db) -> Result<Vec<String>> {
    let mut sql = Vec::new();
    sql.extend(crate::history::capture::dry_run_sql(db).await?);
    sql.extend(crate::db::eval::install_dry_run());
    Ok(sql)
}

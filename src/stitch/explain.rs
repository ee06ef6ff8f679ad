//! `cdpctl stitch explain`: which entity an event, identifier or entity id
//! belongs to, its identifiers and merge history, and the shortest chain of
//! events and identifiers linking two items.

use std::collections::{HashMap, VecDeque};

use anyhow::{bail, Result};
use serde::Serialize;

use crate::db::{Db, PgResultExt};

/// What the user asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemRef {
    Event(String),
    Entity(String),
    Identifier {
        attribute_id: String,
        value: String,
    },
    /// A bare uuid: an event if one has it, else an entity.
    Uuid(String),
}

impl ItemRef {
    pub fn parse(s: &str) -> Result<ItemRef> {
        if let Some(v) = s.strip_prefix("event:") {
            return Ok(ItemRef::Event(check_uuid(v)?));
        }
        if let Some(v) = s.strip_prefix("entity:") {
            return Ok(ItemRef::Entity(check_uuid(v)?));
        }
        if let Some((a, v)) = s.split_once('=') {
            if a.is_empty() {
                bail!("{s:?}: expected ATTRIBUTE=VALUE, e.g. stitching_email=jane@example.com");
            }
            return Ok(ItemRef::Identifier {
                attribute_id: a.to_string(),
                value: v.to_string(),
            });
        }
        if check_uuid(s).is_ok() {
            return Ok(ItemRef::Uuid(s.to_lowercase()));
        }
        bail!("{s:?}: expected an event id (event:UUID), an entity id (entity:UUID) or an identifier ATTRIBUTE=VALUE")
    }
}

fn check_uuid(s: &str) -> Result<String> {
    let hex: String = s.chars().filter(|c| *c != '-').collect();
    if hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(s.to_lowercase())
    } else {
        bail!("{s:?} is not a uuid")
    }
}

/// A node of the event–identifier graph.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Node {
    Event { id: String },
    Identifier { id: i64 },
}

#[derive(Debug, Clone, Serialize)]
pub struct Resolved {
    pub item: String,
    pub entity: Option<String>,
    /// When the id given was absorbed: the chain of merges followed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub followed: Vec<String>,
    #[serde(skip)]
    pub node: Option<Node>,
    /// Refusals recorded for this item (blocked values, limits).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MergeRow {
    pub absorbed: String,
    pub survivor: String,
    pub merged_at: String,
    pub absorbed_events: i64,
    pub bridge_event: Option<String>,
    pub bridge_identifier: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub kind: &'static str,
    pub label: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub items: Vec<Resolved>,
    pub entity: Option<String>,
    pub events: i64,
    pub identifiers: Vec<String>,
    pub identifiers_total: i64,
    pub merges: Vec<MergeRow>,
    /// Shortest chain between the two items (event, identifier, event, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<Vec<Step>>,
    /// Why no path exists, when two items were given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_linked: Option<String>,
}

async fn resolve(db: &Db, item: &str, r: &ItemRef) -> Result<Resolved> {
    let s = &db.schemas;
    let c = &db.client;
    let mut out = Resolved {
        item: item.to_string(),
        entity: None,
        followed: Vec::new(),
        node: None,
        refused: Vec::new(),
    };
    let event_entity = |id: String| async move {
        c.query_opt(
            &s.substitute(
                "SELECT entity_id::text FROM {{ps}}.event_entities WHERE event_id = $1::text::uuid",
            ),
            &[&id],
        )
        .await
        .pg_context(|| "looking up the event".into())
        .map(|r| r.map(|r| r.get::<_, String>(0)))
    };
    let mut entity_id = None;
    match r {
        ItemRef::Event(id) => {
            out.node = Some(Node::Event { id: id.clone() });
            out.entity = event_entity(id.clone()).await?;
        }
        ItemRef::Uuid(id) => {
            if let Some(e) = event_entity(id.clone()).await? {
                out.node = Some(Node::Event { id: id.clone() });
                out.entity = Some(e);
            } else {
                entity_id = Some(id.clone());
            }
        }
        ItemRef::Entity(id) => entity_id = Some(id.clone()),
        ItemRef::Identifier {
            attribute_id,
            value,
        } => {
            if let Some(row) = c
                .query_opt(
                    &s.substitute("SELECT id, entity_id::text FROM {{ps}}.identifiers WHERE hashtextextended(value, 0) = hashtextextended($2, 0) AND attribute_id = $1 AND value = $2"),
                    &[attribute_id, value],
                )
                .await
                .pg_context(|| "looking up the identifier".into())?
            {
                out.node = Some(Node::Identifier { id: row.get(0) });
                out.entity = Some(row.get(1));
            }
            out.refused = c
                .query(
                    &s.substitute("SELECT DISTINCT reason FROM {{ps}}.refused_edges WHERE attribute_id = $1 AND value = $2"),
                    &[attribute_id, value],
                )
                .await
                .pg_context(|| "looking up refused edges".into())?
                .iter()
                .map(|r| r.get(0))
                .collect();
        }
    }
    if let Some(mut id) = entity_id {
        // follow merges when the id was absorbed
        for _ in 0..1000 {
            let live = c
                .query_opt(
                    &s.substitute("SELECT 1 FROM {{ps}}.entities WHERE id = $1::text::uuid"),
                    &[&id],
                )
                .await
                .pg_context(|| "looking up the entity".into())?
                .is_some();
            if live {
                out.entity = Some(id);
                break;
            }
            let next = c
                .query_opt(
                    &s.substitute("SELECT survivor::text FROM {{ps}}.entity_merges WHERE absorbed = $1::text::uuid ORDER BY merged_at DESC LIMIT 1"),
                    &[&id],
                )
                .await
                .pg_context(|| "following merges".into())?;
            match next {
                Some(r) => {
                    out.followed
                        .push(format!("{id} was absorbed into {}", r.get::<_, String>(0)));
                    id = r.get(0);
                }
                None => break,
            }
        }
    }
    Ok(out)
}

/// Explains one or two items.
pub async fn explain(db: &Db, items: &[String]) -> Result<Explanation> {
    let s = &db.schemas;
    let c = &db.client;
    let mut resolved = Vec::new();
    for it in items {
        let r = ItemRef::parse(it)?;
        resolved.push(resolve(db, it, &r).await?);
    }
    let entity = resolved.iter().find_map(|r| r.entity.clone());
    let mut ex = Explanation {
        items: resolved.clone(),
        entity: entity.clone(),
        events: 0,
        identifiers: Vec::new(),
        identifiers_total: 0,
        merges: Vec::new(),
        path: None,
        not_linked: None,
    };
    let Some(entity) = entity else {
        if resolved.iter().all(|r| r.refused.is_empty()) {
            bail!(
                "{} not found in the stitched data; is it stitched yet (cdpctl status shows the backlog)?",
                items.join(" / ")
            );
        }
        return Ok(ex);
    };
    let r = c
        .query_one(
            &s.substitute(
                "SELECT coalesce((SELECT events FROM {{ps}}.entities WHERE id = $1::text::uuid), 0),
                        (SELECT count(*) FROM {{ps}}.identifiers WHERE entity_id = $1::text::uuid)",
            ),
            &[&entity],
        )
        .await
        .pg_context(|| "reading the entity".into())?;
    ex.events = r.get(0);
    ex.identifiers_total = r.get(1);
    ex.identifiers = c
        .query(
            &s.substitute(
                "SELECT attribute_id || '=' || value FROM {{ps}}.identifiers
                  WHERE entity_id = $1::text::uuid ORDER BY attribute_id, value LIMIT 100",
            ),
            &[&entity],
        )
        .await
        .pg_context(|| "reading the entity's identifiers".into())?
        .iter()
        .map(|r| r.get(0))
        .collect();
    ex.merges = c
        .query(
            &s.substitute(
                "WITH RECURSIVE h AS (
                    SELECT m.*, 1 AS depth FROM {{ps}}.entity_merges m WHERE m.survivor = $1::text::uuid
                    UNION ALL
                    SELECT m.*, h.depth + 1 FROM {{ps}}.entity_merges m JOIN h ON m.survivor = h.absorbed
                     WHERE h.depth < 100)
                 SELECT h.absorbed::text, h.survivor::text,
                        to_char(h.merged_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || ' UTC',
                        h.absorbed_events, h.bridge_event_id::text, i.attribute_id || '=' || i.value
                   FROM h LEFT JOIN {{ps}}.identifiers i ON i.id = h.bridge_identifier_id
                  ORDER BY h.merged_at, h.absorbed LIMIT 1000",
            ),
            &[&entity],
        )
        .await
        .pg_context(|| "reading the merge history".into())?
        .iter()
        .map(|r| MergeRow {
            absorbed: r.get(0),
            survivor: r.get(1),
            merged_at: r.get(2),
            absorbed_events: r.get(3),
            bridge_event: r.get(4),
            bridge_identifier: r.get(5),
        })
        .collect();
    if resolved.len() == 2 {
        let (a, b) = (&resolved[0], &resolved[1]);
        if a.entity != b.entity {
            ex.not_linked = Some(format!(
                "not linked: {} is in entity {} and {} in entity {}",
                a.item,
                a.entity.as_deref().unwrap_or("none"),
                b.item,
                b.entity.as_deref().unwrap_or("none")
            ));
        } else if let (Some(na), Some(nb)) = (&a.node, &b.node) {
            ex.path = Some(shortest_path(db, &entity, na, nb).await?);
        }
    }
    Ok(ex)
}

async fn shortest_path(db: &Db, entity: &str, from: &Node, to: &Node) -> Result<Vec<Step>> {
    let s = &db.schemas;
    let c = &db.client;
    let edges = super::entity_edges(db, entity).await?;
    let mut adj: HashMap<Node, Vec<Node>> = HashMap::new();
    for (ev, id) in edges {
        let e = Node::Event { id: ev };
        let i = Node::Identifier { id };
        adj.entry(e.clone()).or_default().push(i.clone());
        adj.entry(i).or_default().push(e);
    }
    let path = bfs(&adj, from, to).unwrap_or_default();
    // labels
    let ev_ids: Vec<String> = path
        .iter()
        .filter_map(|n| match n {
            Node::Event { id } => Some(id.clone()),
            _ => None,
        })
        .collect();
    let id_ids: Vec<i64> = path
        .iter()
        .filter_map(|n| match n {
            Node::Identifier { id } => Some(*id),
            _ => None,
        })
        .collect();
    let ev_label: HashMap<String, String> = c
        .query(
            &s.substitute(
                "SELECT id::text, source_id || '/' || type || '/' || version || ' at ' ||
                        to_char(event_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')
                   FROM {{ce}}.customer_events WHERE id = ANY($1::text[]::uuid[])",
            ),
            &[&ev_ids],
        )
        .await
        .pg_context(|| "reading the path's events".into())?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let id_label: HashMap<i64, String> = c
        .query(
            &s.substitute(
                "SELECT id, attribute_id || '=' || value FROM {{ps}}.identifiers WHERE id = ANY($1)",
            ),
            &[&id_ids],
        )
        .await
        .pg_context(|| "reading the path's identifiers".into())?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    Ok(path
        .iter()
        .map(|n| match n {
            Node::Event { id } => Step {
                kind: "event",
                label: format!("{id} ({})", ev_label.get(id).cloned().unwrap_or_default()),
            },
            Node::Identifier { id } => Step {
                kind: "identifier",
                label: id_label.get(id).cloned().unwrap_or_default(),
            },
        })
        .collect())
}

/// Shortest path by breadth-first search; `None` when unreachable.
pub fn bfs<N: Clone + Eq + std::hash::Hash>(
    adj: &HashMap<N, Vec<N>>,
    from: &N,
    to: &N,
) -> Option<Vec<N>> {
    let mut prev: HashMap<N, N> = HashMap::new();
    let mut queue = VecDeque::from([from.clone()]);
    prev.insert(from.clone(), from.clone());
    while let Some(n) = queue.pop_front() {
        if n == *to {
            let mut path = vec![n.clone()];
            let mut cur = n;
            while cur != *from {
                cur = prev[&cur].clone();
                path.push(cur.clone());
            }
            path.reverse();
            return Some(path);
        }
        for m in adj.get(&n).map(|v| v.as_slice()).unwrap_or(&[]) {
            if !prev.contains_key(m) {
                prev.insert(m.clone(), n.clone());
                queue.push_back(m.clone());
            }
        }
    }
    None
}

/// Human rendering.
pub fn render(ex: &Explanation) -> String {
    let mut s = String::new();
    for r in &ex.items {
        s.push_str(&format!(
            "{}: entity {}\n",
            r.item,
            r.entity.as_deref().unwrap_or("none")
        ));
        for f in &r.followed {
            s.push_str(&format!("  {f}\n"));
        }
        for f in &r.refused {
            s.push_str(&format!("  refused: {f}\n"));
        }
    }
    if let Some(e) = &ex.entity {
        s.push_str(&format!(
            "\nentity {e}: {} events, {} identifiers\n",
            crate::output::num(ex.events),
            crate::output::num(ex.identifiers_total)
        ));
        for i in &ex.identifiers {
            s.push_str(&format!("  {i}\n"));
        }
        if (ex.identifiers.len() as i64) < ex.identifiers_total {
            s.push_str(&format!(
                "  … and {} more\n",
                ex.identifiers_total - ex.identifiers.len() as i64
            ));
        }
    }
    if !ex.merges.is_empty() {
        let mut t = crate::output::table(["merged at", "absorbed", "into", "events", "bridge"]);
        for m in &ex.merges {
            t.add_row(vec![
                m.merged_at.clone(),
                m.absorbed.clone(),
                m.survivor.clone(),
                m.absorbed_events.to_string(),
                format!(
                    "{} via event {}",
                    m.bridge_identifier.as_deref().unwrap_or("?"),
                    m.bridge_event.as_deref().unwrap_or("?")
                ),
            ]);
        }
        s.push_str(&format!("\nmerge history:\n{t}\n"));
    }
    if let Some(p) = &ex.path {
        s.push_str(&format!(
            "\nshortest link ({} hops):\n",
            p.len().saturating_sub(1)
        ));
        for (k, st) in p.iter().enumerate() {
            s.push_str(&format!(
                "  {}{} {}\n",
                if k == 0 { "" } else { "→ " },
                st.kind,
                st.label
            ));
        }
    }
    if let Some(n) = &ex.not_linked {
        s.push_str(&format!("\n{n}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_items() {
        assert_eq!(
            ItemRef::parse("stitching_email=a=b").unwrap(),
            ItemRef::Identifier {
                attribute_id: "stitching_email".into(),
                value: "a=b".into()
            }
        );
        assert!(matches!(
            ItemRef::parse("event:0b7c1a52-9a5e-4c1e-8f5e-000000000001").unwrap(),
            ItemRef::Event(_)
        ));
        assert!(ItemRef::parse("nonsense").is_err());
    }

    #[test]
    fn bfs_finds_shortest() {
        let mut adj: HashMap<u32, Vec<u32>> = HashMap::new();
        for (a, b) in [(1, 2), (2, 3), (3, 4), (1, 5), (5, 4)] {
            adj.entry(a).or_default().push(b);
            adj.entry(b).or_default().push(a);
        }
        assert_eq!(bfs(&adj, &1, &4).unwrap(), vec![1, 5, 4]);
        assert!(bfs(&adj, &1, &9).is_none());
    }
}

//! Field-by-field differences between campaign snapshots, and the choice of
//! columns to show. Pure functions over JSON; no database here.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FieldChangeKind {
    Added,
    Removed,
    Changed,
}

/// One field that differs between two snapshots.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub change: FieldChangeKind,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CampaignChangeKind {
    /// Absent (or deleted) before, present after.
    Created,
    /// Present before, absent (or deleted) after.
    Deleted,
    Updated,
}

/// What happened to one campaign between two moments.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignDiff {
    pub campaign_id: i64,
    pub change: CampaignChangeKind,
    pub fields: Vec<FieldChange>,
}

fn as_map(v: Option<&Value>) -> Map<String, Value> {
    match v {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            let mut m = Map::new();
            m.insert("value".into(), other.clone());
            m
        }
        None => Map::new(),
    }
}

/// The top-level fields that differ between `before` and `after` (missing
/// snapshot = no fields), sorted by field name, optionally only `only`.
pub fn diff_fields(
    before: Option<&Value>,
    after: Option<&Value>,
    only: Option<&[String]>,
) -> Vec<FieldChange> {
    let b = as_map(before);
    let a = as_map(after);
    let keys: BTreeSet<&String> = b.keys().chain(a.keys()).collect();
    keys.into_iter()
        .filter(|k| only.is_none_or(|o| o.iter().any(|f| f == *k)))
        .filter_map(|k| {
            let (bv, av) = (b.get(k), a.get(k));
            let change = match (bv, av) {
                (None, Some(_)) => FieldChangeKind::Added,
                (Some(_), None) => FieldChangeKind::Removed,
                (Some(x), Some(y)) if x != y => FieldChangeKind::Changed,
                _ => return None,
            };
            Some(FieldChange {
                field: k.clone(),
                change,
                before: bv.cloned(),
                after: av.cloned(),
            })
        })
        .collect()
}

/// Per campaign, what changed between two visible states (campaign id →
/// snapshot, deleted campaigns left out). Unchanged campaigns are omitted.
pub fn diff_states(
    before: &BTreeMap<i64, Value>,
    after: &BTreeMap<i64, Value>,
    only: Option<&[String]>,
) -> Vec<CampaignDiff> {
    let ids: BTreeSet<i64> = before.keys().chain(after.keys()).copied().collect();
    ids.into_iter()
        .filter_map(|id| {
            let (b, a) = (before.get(&id), after.get(&id));
            let change = match (b, a) {
                (None, Some(_)) => CampaignChangeKind::Created,
                (Some(_), None) => CampaignChangeKind::Deleted,
                _ => CampaignChangeKind::Updated,
            };
            let fields = diff_fields(b, a, only);
            if change == CampaignChangeKind::Updated && fields.is_empty() {
                return None;
            }
            Some(CampaignDiff {
                campaign_id: id,
                change,
                fields,
            })
        })
        .collect()
}

/// Columns to show: the requested ones; else the defaults that occur in at
/// least one snapshot; else (none occurs) every field, in first-seen order.
pub fn choose_fields<'a>(
    requested: Option<&[String]>,
    defaults: &[String],
    snapshots: impl IntoIterator<Item = &'a Value> + Clone,
) -> Vec<String> {
    if let Some(r) = requested {
        return r.to_vec();
    }
    let present = |f: &String| {
        snapshots
            .clone()
            .into_iter()
            .any(|s| s.as_object().is_some_and(|m| m.contains_key(f)))
    };
    let chosen: Vec<String> = defaults.iter().filter(|f| present(f)).cloned().collect();
    if !chosen.is_empty() {
        return chosen;
    }
    let mut all: Vec<String> = Vec::new();
    for s in snapshots {
        if let Some(m) = s.as_object() {
            for k in m.keys() {
                if !all.contains(k) {
                    all.push(k.clone());
                }
            }
        }
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_changes() {
        let b = json!({"name": "A", "priority": 2, "gone": true, "same": [1]});
        let a = json!({"name": "B", "priority": 2, "new": null, "same": [1]});
        let d = diff_fields(Some(&b), Some(&a), None);
        assert_eq!(
            d,
            vec![
                FieldChange {
                    field: "gone".into(),
                    change: FieldChangeKind::Removed,
                    before: Some(json!(true)),
                    after: None
                },
                FieldChange {
                    field: "name".into(),
                    change: FieldChangeKind::Changed,
                    before: Some(json!("A")),
                    after: Some(json!("B"))
                },
                FieldChange {
                    field: "new".into(),
                    change: FieldChangeKind::Added,
                    before: None,
                    after: Some(json!(null))
                },
            ]
        );
        let only = vec!["name".to_string()];
        assert_eq!(diff_fields(Some(&b), Some(&a), Some(&only)).len(), 1);
    }

    #[test]
    fn state_changes() {
        let before = BTreeMap::from([
            (1, json!({"name": "kept", "priority": 1})),
            (2, json!({"name": "moved", "priority": 2})),
            (3, json!({"name": "dropped", "priority": 3})),
        ]);
        let after = BTreeMap::from([
            (1, json!({"name": "kept", "priority": 1})),
            (2, json!({"name": "moved", "priority": 3})),
            (4, json!({"name": "fresh", "priority": 1})),
        ]);
        let d = diff_states(&before, &after, None);
        let kinds: Vec<(i64, CampaignChangeKind)> =
            d.iter().map(|c| (c.campaign_id, c.change)).collect();
        assert_eq!(
            kinds,
            vec![
                (2, CampaignChangeKind::Updated),
                (3, CampaignChangeKind::Deleted),
                (4, CampaignChangeKind::Created)
            ]
        );
        assert_eq!(d[0].fields.len(), 1);
        assert_eq!(d[0].fields[0].field, "priority");
        assert!(d[1]
            .fields
            .iter()
            .all(|f| f.change == FieldChangeKind::Removed));
        assert!(d[2]
            .fields
            .iter()
            .all(|f| f.change == FieldChangeKind::Added));
    }

    #[test]
    fn field_choice() {
        let snaps = [
            json!({"id": 1, "name": "x", "status": "on"}),
            json!({"id": 2}),
        ];
        let defaults: Vec<String> = ["name", "priority", "status"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            choose_fields(None, &defaults, &snaps),
            vec!["name", "status"]
        );
        let req = vec!["id".to_string()];
        assert_eq!(choose_fields(Some(&req), &defaults, &snaps), vec!["id"]);
        let other = [json!({"title": "t", "rank": 1})];
        assert_eq!(
            choose_fields(None, &defaults, &other),
            vec!["title", "rank"]
        );
    }
}

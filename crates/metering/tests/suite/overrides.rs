//! Per-project limit overrides: set, replace, list; "every model" as `None`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_metering::{LimitOverride, StoreError};
use uuid::Uuid;

use crate::support::TestDb;

fn limits(project: Uuid, model: Option<&str>, rpm: u64, at: &str) -> LimitOverride {
    LimitOverride {
        project_id: project,
        model: model.map(str::to_owned),
        requests_per_minute: rpm,
        tokens_per_minute: rpm * 1_000,
        updated_at: at.parse().unwrap(),
    }
}

pub async fn overrides_are_set_replaced_and_listed(db: &TestDb) {
    let store = &db.store;
    assert!(store.limit_overrides().await.unwrap().is_empty());
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let mut expected = vec![
        limits(one, None, 10, "2026-12-01T00:00:00Z"),
        limits(one, Some("model-a"), 5, "2026-12-01T00:00:01Z"),
        limits(two, None, 7, "2026-12-01T00:00:02Z"),
    ];
    for entry in &expected {
        store.set_limit_override(entry).await.unwrap();
    }
    let listed = |mut all: Vec<LimitOverride>| {
        all.sort_by(|a, b| (a.project_id, &a.model).cmp(&(b.project_id, &b.model)));
        all
    };
    expected = listed(expected);
    assert_eq!(listed(store.limit_overrides().await.unwrap()), expected);

    let replacement = limits(one, None, 20, "2026-12-02T00:00:00Z");
    store.set_limit_override(&replacement).await.unwrap();
    let max = LimitOverride {
        requests_per_minute: i64::MAX as u64,
        tokens_per_minute: i64::MAX as u64,
        ..limits(one, Some("model-a"), 1, "2026-12-02T00:00:01Z")
    };
    store.set_limit_override(&max).await.unwrap();
    let too_many = LimitOverride {
        tokens_per_minute: u64::MAX,
        ..max.clone()
    };
    assert!(matches!(
        store.set_limit_override(&too_many).await,
        Err(StoreError::OutOfRange(_))
    ));
    for entry in &mut expected {
        if entry.project_id == one {
            *entry = if entry.model.is_none() {
                replacement.clone()
            } else {
                max.clone()
            };
        }
    }
    assert_eq!(listed(store.limit_overrides().await.unwrap()), expected);
}

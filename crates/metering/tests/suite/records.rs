//! Usage records: idempotent inserts, time ranges, exact prices, migrations beside others.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_core::ServicePlan;
use gateway_metering::{Outcome, TokenCounts, UsageQuery, UsageRecord};
use uuid::Uuid;

use crate::support::{cached_record, dec, discounted, everything, price, record, TestDb};

pub async fn inserting_a_record_twice_keeps_one(db: &TestDb) {
    let project = Uuid::new_v4();
    let base = price("0.45", "0.65");
    let first = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-11-30T10:00:00Z",
        &base,
        (27, 8),
    );
    let second = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-11-30T10:00:01Z",
        &base,
        (1, 2),
    );
    let store = &db.store;
    assert_eq!(store.insert_records(&[]).await.unwrap(), 0);
    assert_eq!(
        store
            .insert_records(std::slice::from_ref(&first))
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .insert_records(std::slice::from_ref(&first))
            .await
            .unwrap(),
        0
    );
    let both = [first.clone(), second.clone()];
    assert_eq!(store.insert_records(&both).await.unwrap(), 1);
    assert_eq!(store.insert_records(&both).await.unwrap(), 0);
    assert_eq!(store.records(&everything(project)).await.unwrap(), both);
}

pub async fn a_flush_of_thousands_of_records_is_stored_whole(db: &TestDb) {
    let project = Uuid::new_v4();
    let base = price("0.45", "0.65");
    let many: Vec<UsageRecord> = (0..1_201)
        .map(|i| {
            let time = format!("2026-11-30T10:{:02}:{:02}Z", i / 60 % 60, i % 60);
            record(project, Uuid::new_v4(), "m", &time, &base, (i, 1))
        })
        .collect();
    let store = &db.store;
    assert_eq!(store.insert_records(&many[..700]).await.unwrap(), 700);
    assert_eq!(
        store.insert_records(&many).await.unwrap(),
        501,
        "only the new ones"
    );
    let stored = store.records(&everything(project)).await.unwrap();
    assert_eq!(stored.len(), 1_201);
    assert_eq!(
        stored.iter().map(|r| r.input_tokens).sum::<u64>(),
        (0..1_201).sum::<u64>()
    );
}

pub async fn ranges_include_from_and_exclude_to(db: &TestDb) {
    let project = Uuid::new_v4();
    let base = price("1", "1");
    let at = |time: &str| record(project, Uuid::new_v4(), "m", time, &base, (1, 1));
    let times = [
        "2026-11-30T09:59:59.999Z",
        "2026-11-30T10:00:00Z",
        "2026-11-30T10:00:00.5Z",
        "2026-11-30T11:00:00Z",
    ];
    let records: Vec<UsageRecord> = times.iter().map(|time| at(time)).collect();
    let elsewhere = record(Uuid::new_v4(), Uuid::new_v4(), "m", times[1], &base, (1, 1));
    db.store.insert_records(&records).await.unwrap();
    db.store.insert_records(&[elsewhere]).await.unwrap();
    let between = |from: Option<&str>, to: Option<&str>| UsageQuery {
        project_id: project,
        from: from.map(|t| t.parse().unwrap()),
        to: to.map(|t| t.parse().unwrap()),
    };
    let cases = [
        (between(Some(times[1]), Some(times[3])), &records[1..3]),
        (between(Some(times[2]), None), &records[2..]),
        (between(None, Some(times[2])), &records[..2]),
        (between(Some(times[1]), Some(times[1])), &records[..0]),
        (everything(project), &records[..]),
    ];
    for (query, expected) in cases {
        let got = db.store.records(&query).await.unwrap();
        assert_eq!(got, expected, "{query:?}");
        let rows = db
            .store
            .usage_rows(&query, gateway_metering::report::GroupBy::Model)
            .await
            .unwrap();
        let requests: u64 = rows.iter().map(|row| row.requests).sum();
        assert_eq!(requests, expected.len() as u64, "{query:?}");
    }
}

pub async fn prices_round_trip_exactly(db: &TestDb) {
    let project = Uuid::new_v4();
    let fine = price("0.0000000123456789012345678", "12345678901234.5678");
    let mut scaled = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-12-01T00:00:00Z",
        &fine,
        (3, 7),
    );
    scaled.input_price = dec("0.450");
    scaled.plan = ServicePlan::Premium;
    scaled.exact = false;
    scaled.outcome = Outcome::Cancelled;
    let exact = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-12-01T00:00:01Z",
        &fine,
        (3, 7),
    );
    db.store
        .insert_records(&[scaled.clone(), exact.clone()])
        .await
        .unwrap();
    let got = db.store.records(&everything(project)).await.unwrap();
    assert_eq!(got, [scaled.clone(), exact.clone()]);
    for (stored, original) in got.iter().zip([&scaled, &exact]) {
        let text = |r: &UsageRecord| {
            let prices = [r.input_price, r.output_price, r.cost];
            prices.map(|d| d.to_string())
        };
        assert_eq!(text(stored), text(original));
    }
    assert_eq!(got[1].cost, fine.cost(&exact_counts(3, 0, 7)));
}

/// Exact counts of `input` tokens (`cached_input` of them cached) and `output` tokens.
fn exact_counts(input: u64, cached_input: u64, output: u64) -> TokenCounts {
    TokenCounts {
        input,
        cached_input,
        output,
        exact: true,
    }
}

pub async fn cached_input_tokens_and_their_price_round_trip(db: &TestDb) {
    let project = Uuid::new_v4();
    let cheap = discounted(price("0.45", "0.65"), "0.045");
    let cached = cached_record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-12-01T00:00:00Z",
        &cheap,
        (1_000, 600, 10),
    );
    assert_eq!(cached.cached_input_tokens, 600);
    assert_eq!(cached.cached_input_price, dec("0.045"));
    // (1,000 − 600) × 0.45 + 600 × 0.045 + 10 × 0.65, per million.
    assert_eq!(cached.cost, dec("0.0002135"));
    assert_eq!(cached.cost, cheap.cost(&exact_counts(1_000, 600, 10)));
    let uncached = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-12-01T00:00:01Z",
        &cheap,
        (1_000, 10),
    );
    db.store
        .insert_records(&[cached.clone(), uncached.clone()])
        .await
        .unwrap();
    let got = db.store.records(&everything(project)).await.unwrap();
    assert_eq!(got, [cached, uncached]);
    assert_eq!(got[0].cached_input_price.to_string(), "0.045");
    assert_eq!(got[1].cached_input_tokens, 0);
}

pub async fn migrations_ignore_other_migrators(db: &TestDb) {
    let project = Uuid::new_v4();
    let base = price("1", "1");
    let kept = record(
        project,
        Uuid::new_v4(),
        "m",
        "2026-12-01T00:00:00Z",
        &base,
        (1, 1),
    );
    db.store
        .insert_records(std::slice::from_ref(&kept))
        .await
        .unwrap();
    let again = db.reopen().await;
    // As gateway-auth's migrator would leave them: a version before ours and one after.
    db.add_foreign_migration(20_260_520_000_001).await;
    db.add_foreign_migration(20_991_231_000_001).await;
    let third = db.reopen().await;
    assert_eq!(third.records(&everything(project)).await.unwrap(), [kept]);
    assert_eq!(again.records(&everything(project)).await.unwrap().len(), 1);
}

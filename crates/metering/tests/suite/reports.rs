//! Sums per model, day and key, and the reports built on them.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_core::ServicePlan;
use gateway_metering::report::{usage_report, GroupBy, UsageRow};
use gateway_metering::{Granularity, Price, UsageRecord};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::support::{cached_record, dec, discounted, everything, price, record, TestDb};

/// The row a test expects, at base-plan EUR prices.
fn row(group: &str, month: &str, price: &Price, sums: [u64; 4]) -> UsageRow {
    UsageRow {
        group: group.to_owned(),
        plan: ServicePlan::Base,
        month: month.to_owned(),
        currency: "EUR".to_owned(),
        input_price: price.input_per_million,
        cached_input_price: price.cached_input_per_million,
        output_price: price.output_per_million,
        requests: sums[0],
        input_tokens: sums[1],
        cached_input_tokens: 0,
        output_tokens: sums[2],
        estimated_requests: sums[3],
    }
}

fn cost(records: &[UsageRecord]) -> Decimal {
    records.iter().map(|r| r.cost).sum()
}

pub async fn rows_group_by_model_day_and_key(db: &TestDb) {
    let (project, a, b) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let p = price("0.45", "0.65");
    let mut estimated = record(project, b, "m2", "2026-12-01T00:00:00Z", &p, (300_000, 0));
    estimated.exact = false;
    let records = [
        record(
            project,
            a,
            "m1",
            "2026-11-30T23:59:59Z",
            &p,
            (1_000_000, 500_000),
        ),
        estimated,
        record(project, a, "m1", "2026-12-01T12:00:00Z", &p, (1, 1)),
    ];
    db.store.insert_records(&records).await.unwrap();
    let query = everything(project);
    let rows = |group_by| db.store.usage_rows(&query, group_by);

    let by_model = rows(GroupBy::Model).await.unwrap();
    let expected = [
        row("m1", "2026-11", &p, [1, 1_000_000, 500_000, 0]),
        row("m1", "2026-12", &p, [1, 1, 1, 0]),
        row("m2", "2026-12", &p, [1, 300_000, 0, 1]),
    ];
    assert_eq!(by_model, expected);
    let by_day = rows(GroupBy::Day).await.unwrap();
    let expected = [
        row("2026-11-30", "2026-11", &p, [1, 1_000_000, 500_000, 0]),
        row("2026-12-01", "2026-12", &p, [2, 300_001, 1, 1]),
    ];
    assert_eq!(by_day, expected);
    let mut by_key = rows(GroupBy::Key).await.unwrap();
    by_key.sort_by(|x, y| (&x.group, &x.month).cmp(&(&y.group, &y.month)));
    let mut expected = vec![
        row(&a.to_string(), "2026-11", &p, [1, 1_000_000, 500_000, 0]),
        row(&a.to_string(), "2026-12", &p, [1, 1, 1, 0]),
        row(&b.to_string(), "2026-12", &p, [1, 300_000, 0, 1]),
    ];
    expected.sort_by(|x, y| (&x.group, &x.month).cmp(&(&y.group, &y.month)));
    assert_eq!(by_key, expected);

    let blocks = Granularity::PerStartedMillion;
    let report = usage_report(&*db.store, &query, GroupBy::Model, blocks)
        .await
        .unwrap();
    assert_eq!(report.total[0].cost, cost(&records));
    assert_eq!(report.total[0].requests, 3);
    let amounts: Vec<_> = report
        .billing
        .iter()
        .map(|l| (&*l.month, l.amount))
        .collect();
    assert_eq!(
        amounts,
        [("2026-11", dec("1.10")), ("2026-12", dec("1.10"))]
    );
    assert_eq!(report.billed_total[0].amount, dec("2.20"));
}

pub async fn a_price_change_splits_rows_and_billing_lines(db: &TestDb) {
    let (project, key) = (Uuid::new_v4(), Uuid::new_v4());
    let (old, new) = (price("0.45", "0.65"), price("0.50", "0.70"));
    let plus = Price {
        plan: ServicePlan::Plus,
        ..price("1", "2")
    };
    let records = [
        record(
            project,
            key,
            "m",
            "2026-12-01T00:00:00Z",
            &old,
            (1_000_000, 0),
        ),
        record(
            project,
            key,
            "m",
            "2026-12-15T00:00:00Z",
            &new,
            (2_000_000, 1_000_000),
        ),
        record(project, key, "big", "2026-12-15T00:00:00Z", &plus, (1, 1)),
    ];
    db.store.insert_records(&records).await.unwrap();
    let query = everything(project);
    let rows = db.store.usage_rows(&query, GroupBy::Model).await.unwrap();
    let prices: Vec<_> = rows.iter().map(|r| (&*r.group, r.input_price)).collect();
    assert_eq!(
        prices,
        [("big", dec("1")), ("m", dec("0.45")), ("m", dec("0.50"))]
    );

    let report = usage_report(&*db.store, &query, GroupBy::Model, Granularity::Prorated)
        .await
        .unwrap();
    assert_eq!(report.groups.len(), 2);
    assert_eq!(report.groups[1].usage.cost, cost(&records[..2]));
    let lines: Vec<_> = report
        .billing
        .iter()
        .map(|l| (l.plan, l.input_price_per_million, l.amount))
        .collect();
    assert_eq!(
        lines,
        [
            (ServicePlan::Base, dec("0.45"), dec("0.45")),
            (ServicePlan::Base, dec("0.50"), dec("1.7")),
            (ServicePlan::Plus, dec("1"), dec("0.000003")),
        ]
    );
    assert_eq!(report.billed_total[0].amount, report.total[0].cost);
    assert_eq!(report.total[0].cost, cost(&records));
}

pub async fn cached_input_is_summed_and_billed_at_its_price(db: &TestDb) {
    let (project, key) = (Uuid::new_v4(), Uuid::new_v4());
    let full = price("0.45", "0.65");
    let cheap = discounted(price("0.45", "0.65"), "0.045");
    let at = |price: &Price, tokens| {
        cached_record(project, key, "m", "2026-12-01T00:00:00Z", price, tokens)
    };
    let records = [
        at(&cheap, (1_000_000, 600_000, 10)),
        at(&cheap, (500_000, 400_000, 0)),
        at(&full, (1_000_000, 0, 0)),
    ];
    db.store.insert_records(&records).await.unwrap();
    let query = everything(project);
    let rows = db.store.usage_rows(&query, GroupBy::Model).await.unwrap();
    let sums: Vec<_> = rows
        .iter()
        .map(|r| (r.cached_input_price, r.input_tokens, r.cached_input_tokens))
        .collect();
    assert_eq!(
        sums,
        [
            (dec("0.045"), 1_500_000, 1_000_000),
            (dec("0.45"), 1_000_000, 0)
        ]
    );

    let report = usage_report(&*db.store, &query, GroupBy::Model, Granularity::Prorated)
        .await
        .unwrap();
    let total = &report.total[0];
    assert_eq!(
        (total.input_tokens, total.cached_input_tokens),
        (2_500_000, 1_000_000)
    );
    // 500,000 × 0.45 + 1,000,000 × 0.045 + 10 × 0.65 + 1,000,000 × 0.45, per million.
    assert_eq!(total.cost, dec("0.7200065"));
    assert_eq!(total.cost, cost(&records));
    let lines: Vec<_> = report
        .billing
        .iter()
        .map(|l| {
            let cached = (l.cached_input_price_per_million, l.cached_input_tokens);
            (cached, l.cached_input_amount, l.amount)
        })
        .collect();
    assert_eq!(
        lines,
        [
            ((dec("0.045"), 1_000_000), dec("0.045"), dec("0.2700065")),
            ((dec("0.45"), 0), dec("0"), dec("0.45")),
        ]
    );
    assert_eq!(report.billed_total[0].amount, total.cost);
    let csv = report.to_csv();
    assert!(
        csv.starts_with("group,currency,requests,input_tokens,output_tokens,estimated_requests,cost,cached_input_tokens\r\n"),
        "{csv}"
    );
    assert!(
        csv.contains("\r\nm,EUR,3,2500000,10,0,0.7200065,1000000\r\n"),
        "{csv}"
    );
}

//! The audit log: an event for every action and refusal, paging, NDJSON, append-only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeDelta;
use gateway_auth::{write_ndjson, AuditAction, AuditOutcome, AuditQuery, Clock as _, UpdateToken};

use crate::support::{create, ctx, Fixture, TestDb, REGION};

pub async fn audit_records_every_action(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "audit").await;
    let other = Fixture::new(db.store.clone(), "outsider").await;
    let m = &f.management;
    let t = m
        .create_token(&f.member, f.project, REGION, create("a", None), &ctx("c1"))
        .await
        .unwrap()
        .token;
    let patch = UpdateToken {
        name: Some("b".into()),
        description: None,
        labels: None,
    };
    m.update_token(&f.member, f.project, REGION, t.id, patch, &ctx("c2"))
        .await
        .unwrap();
    m.delete_token(&f.owner, f.project, REGION, t.id, &ctx("c3"))
        .await
        .unwrap();
    let _ = m
        .create_token(&f.viewer, f.project, REGION, create("v", None), &ctx("c4"))
        .await;
    let _ = m
        .get_token(&other.owner, f.project, REGION, t.id, &ctx("c5"))
        .await;
    let _ = m
        .create_token(
            &f.owner,
            f.project,
            REGION,
            create("x", Some("2x")),
            &ctx("c6"),
        )
        .await;
    let _ = m
        .delete_token(&f.owner, f.project, REGION, t.id, &ctx("c7"))
        .await;
    m.record_unauthenticated(f.project, &ctx("c8"))
        .await
        .unwrap();
    let made_up = uuid::Uuid::new_v4();
    m.record_unauthenticated(made_up, &ctx("c9")).await.unwrap();
    let filter = gateway_auth::audit::AuditFilter {
        project_id: made_up,
        from: None,
        to: None,
        after_sequence: 0,
        limit: 10,
    };
    assert!(
        db.store.audit_events(&filter).await.unwrap().is_empty(),
        "a request on a project that does not exist is not written"
    );

    let events = m
        .export_audit(&f.viewer, f.project, &AuditQuery::default(), &ctx("read"))
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    let ours: Vec<_> = events
        .iter()
        .filter(|e| {
            e.record
                .request_id
                .as_deref()
                .is_some_and(|r| r.starts_with('c'))
        })
        .collect();
    let summary: Vec<_> = ours
        .iter()
        .map(|e| {
            (
                e.record.request_id.clone().unwrap(),
                e.record.action,
                e.record.outcome,
                e.record.reason.clone(),
            )
        })
        .collect();
    let s = |r: &str, a, o, reason: Option<&str>| (r.to_owned(), a, o, reason.map(str::to_owned));
    use AuditAction::*;
    use AuditOutcome::*;
    assert_eq!(
        summary,
        vec![
            s("c1", TokenCreate, Success, None),
            s("c2", TokenUpdate, Success, None),
            s("c3", TokenDelete, Success, None),
            s("c4", TokenCreate, Failure, Some("forbidden")),
            s("c5", TokenRead, Failure, Some("not_found")),
            s("c6", TokenCreate, Failure, Some("invalid:ttlDuration")),
            s("c7", TokenDelete, Failure, Some("not_found")),
            s("c8", Authenticate, Failure, Some("unauthenticated")),
        ]
    );
    let first = &ours[0].record;
    assert_eq!(first.actor.as_ref(), Some(&f.member));
    assert_eq!(first.target_token_id, Some(t.id));
    assert_eq!(first.source_ip, Some("192.0.2.7".parse().unwrap()));
    assert_eq!(first.changes["name"], "a");
    assert!(!first.changes.contains_key("content"));
    assert_eq!(ours[1].record.changes["name"], "b");
    assert_eq!(ours[4].record.actor.as_ref(), Some(&other.owner));
    assert!(events.iter().any(|e| e.record.action == PrincipalAdd));
    assert!(events.iter().all(|e| e.record.project_id == f.project));
    // The outsider's own log shows nothing of it; the log cannot be rewritten.
    let theirs = other
        .management
        .export_audit(
            &other.owner,
            other.project,
            &AuditQuery::default(),
            &ctx("x"),
        )
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    assert!(theirs
        .iter()
        .all(|e| e.record.project_id == other.project && e.record.request_id.is_none()));
    assert!(
        !db.tamper_with_audit().await,
        "audit_events accepted an UPDATE"
    );
}

pub async fn audit_paging(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "paging").await;
    let m = &f.management;
    let start = f.clock.now();
    let mut ids = Vec::new();
    for i in 0..25 {
        f.clock.advance(TimeDelta::minutes(1));
        ids.push(
            m.create_token(
                &f.owner,
                f.project,
                REGION,
                create(&format!("p{i}"), None),
                &ctx("p"),
            )
            .await
            .unwrap()
            .token
            .id,
        );
    }
    let mut query = AuditQuery {
        from: Some(start + TimeDelta::seconds(30)),
        limit: Some(10),
        ..AuditQuery::default()
    };
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = m
            .audit_page(&f.viewer, f.project, &query, &ctx("read"))
            .await
            .unwrap();
        pages += 1;
        assert!(page.events.len() <= 10);
        seen.extend(page.events);
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(
        seen.iter()
            .map(|e| e.record.target_token_id.unwrap())
            .collect::<Vec<_>>(),
        ids
    );
    assert!(seen.windows(2).all(|w| w[0].sequence < w[1].sequence));
    // from is inclusive, to exclusive: minutes 5..=9 are five events.
    let window = AuditQuery {
        from: Some(start + TimeDelta::minutes(5)),
        to: Some(start + TimeDelta::minutes(10)),
        ..AuditQuery::default()
    };
    let page = m
        .audit_page(&f.owner, f.project, &window, &ctx("read"))
        .await
        .unwrap();
    assert_eq!(
        page.events
            .iter()
            .map(|e| e.record.target_token_id.unwrap())
            .collect::<Vec<_>>(),
        ids[4..9]
    );
    assert_eq!(page.next_cursor, None);
    let mut ndjson = Vec::new();
    write_ndjson(&page.events, &mut ndjson).unwrap();
    let lines: Vec<serde_json::Value> = String::from_utf8(ndjson)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[0]["action"], "token.create");
    assert_eq!(lines[0]["projectId"], f.project.to_string());
    assert!(lines[0]["sequence"].is_i64() && lines[0]["targetTokenId"].is_string());
}

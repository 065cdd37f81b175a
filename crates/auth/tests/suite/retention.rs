//! Retention of personal data: the job pseudonymizes exactly the audit events older than the
//! period, once, on every replica, and the log accepts no other change.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use gateway_auth::retention::PSEUDONYM_PREFIX;
use gateway_auth::{AuditAction, AuditEvent, AuditQuery, Clock as _, Management, ManualClock};

use crate::support::{create, ctx, Fixture, TestDb, REGION};

const PERIOD: TimeDelta = TimeDelta::days(30);

async fn all_events(f: &Fixture) -> Vec<AuditEvent> {
    f.management
        .export_audit(&f.viewer, f.project, &AuditQuery::default(), &ctx("read"))
        .await
        .unwrap()
        .all()
        .await
        .unwrap()
}

/// Some events with personal data: a token created by the member, a refused attempt by the
/// viewer and an unauthenticated request, each from an IP address.
async fn act(f: &Fixture, tag: &str) {
    let m = &f.management;
    m.create_token(&f.member, f.project, REGION, create(tag, None), &ctx(tag))
        .await
        .unwrap();
    let _ = m
        .create_token(&f.viewer, f.project, REGION, create(tag, None), &ctx(tag))
        .await;
    m.record_unauthenticated(f.project, &ctx(tag))
        .await
        .unwrap();
}

fn is_pseudonym(text: &str) -> bool {
    text.strip_prefix(PSEUDONYM_PREFIX)
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `before` as the job must leave it: subjects pseudonymized (the operator's kept), e-mails
/// cleared, no IP; everything else the same.
fn assert_pseudonymized(before: &AuditEvent, after: &AuditEvent) {
    let (b, a) = (&before.record, &after.record);
    assert_eq!(
        (
            before.sequence,
            b.id,
            b.time,
            b.project_id,
            b.action,
            b.outcome
        ),
        (
            after.sequence,
            a.id,
            a.time,
            a.project_id,
            a.action,
            a.outcome
        )
    );
    assert_eq!(
        (&b.reason, b.target_token_id, &b.request_id),
        (&a.reason, a.target_token_id, &a.request_id)
    );
    assert_eq!(a.source_ip, None);
    match (&b.actor, &a.actor) {
        (None, None) => {}
        (Some(old), Some(new)) if old.subject == "gateway-admin" => assert_eq!(old, new),
        (Some(_), Some(new)) => {
            assert!(is_pseudonym(&new.subject), "{new:?}");
            assert_eq!(new.email, "");
        }
        other => panic!("actor changed shape: {other:?}"),
    }
    for (field, value) in &b.changes {
        let new = &a.changes[field];
        match field.as_str() {
            "subject" => assert!(is_pseudonym(new.as_str().unwrap()), "{new}"),
            "email" => assert_eq!(new, ""),
            _ => assert_eq!(new, value, "changes.{field}"),
        }
    }
    assert_eq!(a.changes.len(), b.changes.len());
}

pub async fn retention_pseudonymizes_exactly_the_old_events(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "retention").await;
    act(&f, "old").await;
    f.clock.advance(TimeDelta::days(10));
    let recent_time = f.clock.now();
    act(&f, "recent").await;
    let before = all_events(&f).await;
    let due = before
        .iter()
        .filter(|e| e.record.time < recent_time)
        .count();
    assert!(due >= 7, "the fixture's events and three old ones: {due}");

    // Nothing is 30 days old yet.
    let early = f.management.pseudonymize_audit_log(PERIOD).await.unwrap();
    assert_eq!(early.events, 0);
    assert_eq!(all_events(&f).await, before);

    // Exactly 30 days after the recent events: they are not older than the period yet.
    f.clock.advance(PERIOD);
    let run = f.management.pseudonymize_audit_log(PERIOD).await.unwrap();
    assert_eq!(run.cutoff, recent_time);
    assert_eq!(run.events, due as u64);
    let after = all_events(&f).await;
    assert_eq!(after.len(), before.len());
    for (b, a) in before.iter().zip(&after) {
        if b.record.time < recent_time {
            assert_pseudonymized(b, a);
        } else {
            assert_eq!(a, b, "a recent event changed");
        }
    }
    assert_one_pseudonym_per_subject(&f, &after, recent_time);
    assert_no_personal_data_left(db, &f, &after, recent_time).await;

    // Idempotent; then a microsecond later the recent events are due.
    let again = f.management.pseudonymize_audit_log(PERIOD).await.unwrap();
    assert_eq!(again.events, 0);
    assert_eq!(all_events(&f).await, after);
    f.clock.advance(TimeDelta::microseconds(1));
    let rest = f.management.pseudonymize_audit_log(PERIOD).await.unwrap();
    assert_eq!(rest.events, (before.len() - due) as u64);
    let last = all_events(&f).await;
    for (b, a) in after.iter().zip(&last).skip(due) {
        assert_pseudonymized(b, a);
    }
    assert_eq!(last[..due], after[..due]);
    assert_one_pseudonym_per_subject(&f, &last, f.clock.now());
    assert_no_personal_data_left(db, &f, &last, f.clock.now()).await;
}

/// One subject, one pseudonym: the member's as actor and as the subject it was added with.
fn assert_one_pseudonym_per_subject(f: &Fixture, events: &[AuditEvent], before: DateTime<Utc>) {
    let old = || events.iter().filter(|e| e.record.time < before);
    let added = |role: &str| {
        old()
            .find(|e| {
                e.record.action == AuditAction::PrincipalAdd && e.record.changes["role"] == role
            })
            .map(|e| e.record.changes["subject"].as_str().unwrap().to_owned())
            .unwrap()
    };
    let (member, viewer) = (added("member"), added("viewer"));
    assert_ne!(member, viewer);
    let actors: Vec<&str> = old()
        .filter_map(|e| e.record.actor.as_ref())
        .map(|actor| actor.subject.as_str())
        .filter(|subject| *subject != "gateway-admin")
        .collect();
    assert!(!actors.is_empty());
    assert!(
        actors.iter().all(|s| *s == member || *s == viewer),
        "{actors:?}"
    );
    assert!(actors.contains(&member.as_str()) && actors.contains(&viewer.as_str()));
    assert!(!member.contains(&f.member.subject));
}

/// The database holds the member's and viewer's subject and e-mail (and the IP) in the
/// principals' tables only once their events are old, not in the audit log.
async fn assert_no_personal_data_left(
    db: &TestDb,
    f: &Fixture,
    events: &[AuditEvent],
    before: DateTime<Utc>,
) {
    let recent = events.iter().any(|e| e.record.time >= before);
    let cells = db.dump().await;
    for person in [&f.member, &f.viewer] {
        for text in [&person.subject, &person.email] {
            let in_log = cells
                .iter()
                .any(|(table, _, value)| table == "audit_events" && value.contains(text.as_str()));
            // Recent events still name them (as actors); the old ones no longer do.
            assert_eq!(in_log, recent, "{text} in audit_events");
            assert!(cells
                .iter()
                .any(|(table, _, value)| table == "principals" && value == text.as_str()));
        }
    }
    let old_ips = events
        .iter()
        .filter(|e| e.record.time < before)
        .filter(|e| e.record.source_ip.is_some())
        .count();
    assert_eq!(old_ips, 0);
}

pub async fn retention_on_replicas_at_once(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "replicated").await;
    // More than one batch (500) of events with an actor and an IP.
    for i in 0..260 {
        act(&f, &format!("r{i}")).await;
    }
    let before = all_events(&f).await;
    f.clock.advance(PERIOD + TimeDelta::seconds(1));
    let now = f.clock.now();
    let replicas = [db.store.clone(), db.replica().await, db.replica().await];
    let runs = replicas.map(|store| {
        let clock = Arc::new(ManualClock::new(now));
        let management = Management::with_clock(store, clock);
        tokio::spawn(async move { management.pseudonymize_audit_log(PERIOD).await })
    });
    let mut total = 0;
    for run in runs {
        total += run.await.unwrap().unwrap().events;
    }
    assert_eq!(total, before.len() as u64, "each event exactly once");
    let after = all_events(&f).await;
    for (b, a) in before.iter().zip(&after) {
        assert_pseudonymized(b, a);
    }
    // Pseudonymized once, not twice: the member's actor pseudonym is its principal.add one.
    assert_one_pseudonym_per_subject(&f, &after, now);
}

pub async fn the_log_accepts_no_other_change(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "guarded").await;
    act(&f, "x").await;
    let tries = [
        // Pseudonymizing while rewriting what happened.
        "UPDATE audit_events SET pseudonymized = TRUE, actor_email = NULL, source_ip = NULL, \
         action = 'token.read'",
        // Pseudonymizing while keeping the e-mail.
        "UPDATE audit_events SET pseudonymized = TRUE, source_ip = NULL",
        "UPDATE audit_events SET request_id = 'forged'",
        "DELETE FROM audit_events",
    ];
    for sql in tries {
        assert!(!db.execute(sql).await, "accepted: {sql}");
    }
    f.clock.advance(PERIOD * 2);
    let run = f.management.pseudonymize_audit_log(PERIOD).await.unwrap();
    assert!(run.events > 0);
    // Once pseudonymized, an event cannot be changed again (nor un-pseudonymized).
    for sql in [
        "UPDATE audit_events SET actor_subject = 'someone', pseudonymized = TRUE, \
         actor_email = NULL, source_ip = NULL",
        "UPDATE audit_events SET pseudonymized = FALSE",
    ] {
        assert!(!db.execute(sql).await, "accepted: {sql}");
    }
    let invalid = f
        .management
        .pseudonymize_audit_log(TimeDelta::zero())
        .await
        .unwrap_err();
    assert_eq!(invalid.field(), Some("retention"));
}

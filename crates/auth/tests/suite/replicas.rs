//! Concurrency and several replicas on one database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_auth::{AuditAction, AuditQuery, AuthError, KeyVerifier, Management};
use uuid::Uuid;

use crate::support::{create, ctx, Fixture, TestDb, REGION};

pub async fn parallel_creates_and_deletes(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "parallel").await;
    let m = Arc::new(f.management.clone());
    let mut tasks = Vec::new();
    for i in 0..64 {
        let (m, actor, project): (Arc<Management>, _, _) = (m.clone(), f.owner.clone(), f.project);
        tasks.push(tokio::spawn(async move {
            let c = ctx(&format!("par{i}"));
            let created = m
                .create_token(&actor, project, REGION, create(&format!("k{i}"), None), &c)
                .await
                .unwrap();
            if i % 2 == 1 {
                m.delete_token(&actor, project, REGION, created.token.id, &c)
                    .await
                    .unwrap();
            }
            (i, created)
        }));
    }
    let mut created = Vec::new();
    for task in tasks {
        created.push(task.await.unwrap());
    }
    let listed = m
        .list_tokens(&f.owner, f.project, REGION, None, &ctx("list"))
        .await
        .unwrap();
    let mut kept: Vec<Uuid> = created
        .iter()
        .filter(|(i, _)| i % 2 == 0)
        .map(|(_, c)| c.token.id)
        .collect();
    let mut listed_ids: Vec<Uuid> = listed.iter().map(|t| t.id).collect();
    kept.sort();
    listed_ids.sort();
    assert_eq!(listed_ids, kept);
    let events = m
        .export_audit(&f.owner, f.project, &AuditQuery::default(), &ctx("read"))
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    assert!(events.windows(2).all(|w| w[0].sequence < w[1].sequence));
    for (i, c) in &created {
        let of_key: Vec<_> = events
            .iter()
            .filter(|e| e.record.target_token_id == Some(c.token.id))
            .map(|e| e.record.action)
            .collect();
        let expected = if i % 2 == 1 {
            vec![AuditAction::TokenCreate, AuditAction::TokenDelete]
        } else {
            vec![AuditAction::TokenCreate]
        };
        assert_eq!(of_key, expected, "key {i}");
    }
    let verifier = KeyVerifier::new(db.store.clone());
    for (i, c) in &created {
        assert_eq!(
            verifier.verify(c.content.expose()).await.is_ok(),
            i % 2 == 0,
            "key {i}"
        );
    }
}

pub async fn revocation_reaches_other_replicas(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "replicas").await;
    let replica = KeyVerifier::new(db.replica().await);
    let created = f
        .management
        .create_token(&f.owner, f.project, REGION, create("r", None), &ctx("r"))
        .await
        .unwrap();
    let key = created.content.expose();
    replica.verify(key).await.unwrap();
    replica.verify(key).await.unwrap();
    f.management
        .delete_token(&f.owner, f.project, REGION, created.token.id, &ctx("r"))
        .await
        .unwrap();
    let deleted = Instant::now();
    while replica.verify(key).await.is_ok() {
        assert!(
            deleted.elapsed() < Duration::from_secs(1),
            "revocation not seen within one second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(deleted.elapsed() < Duration::from_secs(1));
}

pub async fn verified_keys_outlive_a_database_outage_within_the_grace(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "outage").await;
    let (store, pool) = db.closable_replica().await;
    let replica = KeyVerifier::new(store)
        .with_max_age(Duration::from_millis(50))
        .with_outage_grace(Duration::from_millis(800));
    let mut keys = Vec::new();
    for name in ["seen", "unseen"] {
        let created = f
            .management
            .create_token(&f.owner, f.project, REGION, create(name, None), &ctx(name))
            .await
            .unwrap();
        keys.push(created.content.expose().to_owned());
    }
    let verified = replica.verify(&keys[0]).await.unwrap();
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(replica.verify(&keys[0]).await.unwrap(), verified);
    assert_eq!(replica.verify(&keys[0]).await.unwrap(), verified);
    assert!(
        matches!(replica.verify(&keys[1]).await, Err(AuthError::Store(_))),
        "a key never verified is not accepted while the database is away"
    );
    assert!(matches!(
        replica.verify("sk-not-a-key").await,
        Err(AuthError::InvalidKey)
    ));
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert!(
        matches!(replica.verify(&keys[0]).await, Err(AuthError::Store(_))),
        "past the grace the key needs the database again"
    );
}

pub async fn without_a_grace_an_outage_fails_verification(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "no-grace").await;
    let (store, pool) = db.closable_replica().await;
    let replica = KeyVerifier::new(store).with_max_age(Duration::from_millis(50));
    let created = f
        .management
        .create_token(&f.owner, f.project, REGION, create("k", None), &ctx("k"))
        .await
        .unwrap();
    let key = created.content.expose();
    replica.verify(key).await.unwrap();
    pool.close().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(matches!(
        replica.verify(key).await,
        Err(AuthError::Store(_))
    ));
}

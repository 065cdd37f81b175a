//! Token lifecycle: create, read, list, update, delete; expiry; TTLs, validation, masking.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use chrono::TimeDelta;
use gateway_auth::{
    AuditAction, AuditQuery, AuthError, Clock as _, KeyVerifier, LabelPatch, Labels, Management,
    Token, TokenState, UpdateToken, NEVER_EXPIRES,
};

use crate::support::{create, ctx, Fixture, TestDb, REGION};

pub async fn crud(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "crud").await;
    let m = &f.management;
    let now = f.clock.now();
    let created = m
        .create_token(
            &f.member,
            f.project,
            REGION,
            create("ci", Some("30d")),
            &ctx("r1"),
        )
        .await
        .unwrap();
    assert_eq!(created.token.state, TokenState::Active);
    assert_eq!(created.token.valid_until, Some(now + TimeDelta::days(30)));
    let json = serde_json::to_value(&created).unwrap();
    for field in [
        "id",
        "name",
        "description",
        "region",
        "state",
        "validUntil",
        "content",
    ] {
        assert!(json.get(field).is_some(), "{field} missing in {json}");
    }
    assert_eq!(json["state"], "active");
    assert_eq!(json["region"], REGION);
    assert!(!format!("{created:?}").contains(created.content.expose()));

    let id = created.token.id;
    let got = m
        .get_token(&f.viewer, f.project, REGION, id, &ctx("r2"))
        .await
        .unwrap();
    assert_eq!(got, created.token);
    let listed = m
        .list_tokens(&f.viewer, f.project, REGION, None, &ctx("r3"))
        .await
        .unwrap();
    assert_eq!(listed, vec![created.token.clone()]);
    assert!(m
        .list_tokens(&f.owner, f.project, "eu02", None, &ctx("r"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        m.get_token(&f.owner, f.project, "eu02", id, &ctx("r"))
            .await,
        Err(AuthError::NotFound)
    ));

    let patch = UpdateToken {
        name: Some("renamed".into()),
        description: Some(String::new()),
        labels: None,
    };
    let updated = m
        .update_token(&f.owner, f.project, REGION, id, patch, &ctx("r4"))
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_deref()),
        ("renamed", None)
    );
    let patch = UpdateToken {
        name: None,
        description: Some("again".into()),
        labels: None,
    };
    let updated = m
        .update_token(&f.owner, f.project, REGION, id, patch, &ctx("r5"))
        .await
        .unwrap();
    assert_eq!(
        (updated.name.as_str(), updated.description.as_deref()),
        ("renamed", Some("again"))
    );
    assert_eq!(
        m.get_token(&f.owner, f.project, REGION, id, &ctx("r"))
            .await
            .unwrap(),
        updated
    );

    let verifier = KeyVerifier::new(db.store.clone())
        .with_max_age(Duration::ZERO)
        .with_clock(f.clock.clone());
    let key = verifier.verify(created.content.expose()).await.unwrap();
    assert_eq!(
        (key.project_id, key.key_id, key.allows_model("any")),
        (f.project, id, true)
    );

    m.delete_token(&f.member, f.project, REGION, id, &ctx("r6"))
        .await
        .unwrap();
    assert!(matches!(
        m.get_token(&f.owner, f.project, REGION, id, &ctx("r"))
            .await,
        Err(AuthError::NotFound)
    ));
    assert!(matches!(
        m.delete_token(&f.owner, f.project, REGION, id, &ctx("r"))
            .await,
        Err(AuthError::NotFound)
    ));
    assert!(m
        .list_tokens(&f.owner, f.project, REGION, None, &ctx("r"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        verifier.verify(created.content.expose()).await,
        Err(AuthError::InvalidKey)
    ));

    // Restriction to listed models, created by the operator.
    let mut request = create("restricted", None);
    request.allowed_models = Some(vec!["llama-3.1-8b".into()]);
    let restricted = m.create_key(f.project, REGION, request).await.unwrap();
    assert_eq!(restricted.token.valid_until, None);
    let key = verifier.verify(restricted.content.expose()).await.unwrap();
    assert!(key.allows_model("llama-3.1-8b") && !key.allows_model("other"));
}

/// A key used in the second half of its cache life is read again in the background: it is
/// still served after its first read would have expired, and a deletion takes effect within
/// the cache age of the last read.
pub async fn keys_in_use_are_read_again_ahead_and_revocation_still_holds(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "ahead").await;
    let m = &f.management;
    let created = m
        .create_token(
            &f.member,
            f.project,
            REGION,
            create("ahead", None),
            &ctx("a1"),
        )
        .await
        .unwrap();
    let max_age = Duration::from_secs(2);
    let verifier = KeyVerifier::new(db.store.clone()).with_max_age(max_age);
    let key = created.content.expose();
    let start = tokio::time::Instant::now();
    verifier.verify(key).await.unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(1_200)).await;
    verifier.verify(key).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    m.delete_token(&f.member, f.project, REGION, created.token.id, &ctx("a2"))
        .await
        .unwrap();
    tokio::time::sleep_until(start + Duration::from_millis(2_300)).await;
    assert!(
        verifier.verify(key).await.is_ok(),
        "served from the entry read again at 1.2 s, not read at 2.3 s"
    );
    let deadline = start + Duration::from_millis(1_200) + max_age + Duration::from_millis(500);
    loop {
        match verifier.verify(key).await {
            Err(AuthError::InvalidKey) => break,
            Ok(_) => assert!(tokio::time::Instant::now() < deadline, "revocation late"),
            Err(other) => panic!("{other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn expiry_makes_tokens_inactive(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "expiry").await;
    let m = &f.management;
    let c = ctx("exp");
    let created = m
        .create_token(
            &f.owner,
            f.project,
            REGION,
            create("short", Some("90m")),
            &c,
        )
        .await
        .unwrap();
    let verifier = KeyVerifier::new(db.store.clone()).with_clock(f.clock.clone());
    verifier.verify(created.content.expose()).await.unwrap();
    f.clock.advance(TimeDelta::minutes(89));
    verifier.verify(created.content.expose()).await.unwrap();
    f.clock.advance(TimeDelta::minutes(1));
    // Cached or not, an expired key fails at once.
    assert!(matches!(
        verifier.verify(created.content.expose()).await,
        Err(AuthError::InvalidKey)
    ));
    let token = m
        .get_token(&f.viewer, f.project, REGION, created.token.id, &c)
        .await
        .unwrap();
    assert_eq!(token.state, TokenState::Inactive);
    let listed = m
        .list_tokens(&f.viewer, f.project, REGION, None, &c)
        .await
        .unwrap();
    assert_eq!(listed[0].state, TokenState::Inactive);
    assert_eq!(
        serde_json::to_value(&listed[0]).unwrap()["state"],
        "inactive"
    );
    // Exactly one expiry event, however often it is observed.
    m.sweep_expired().await.unwrap();
    let events = m
        .export_audit(&f.owner, f.project, &AuditQuery::default(), &c)
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    let expiries: Vec<_> = events
        .iter()
        .filter(|e| e.record.action == AuditAction::TokenExpire)
        .collect();
    assert_eq!(expiries.len(), 1);
    assert_eq!(expiries[0].record.target_token_id, Some(created.token.id));
    assert_eq!(expiries[0].record.actor, None);
    assert_eq!(expiries[0].record.changes["state"], "inactive");
}

pub async fn ttl_and_validation(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "ttl").await;
    let m = &f.management;
    let c = ctx("ttl");
    let now = f.clock.now();
    for (ttl, delta) in [
        ("30d", TimeDelta::days(30)),
        ("12h", TimeDelta::hours(12)),
        ("90m", TimeDelta::minutes(90)),
        ("45s", TimeDelta::seconds(45)),
    ] {
        let t = m
            .create_token(&f.owner, f.project, REGION, create(ttl, Some(ttl)), &c)
            .await
            .unwrap();
        assert_eq!(t.token.valid_until, Some(now + delta), "{ttl}");
    }
    let field = |r: Result<(), AuthError>| match r {
        Err(AuthError::Validation { field, .. }) => field,
        other => panic!("expected a validation error, got {other:?}"),
    };
    assert_eq!(
        field(
            m.create_token(&f.owner, f.project, REGION, create("x", Some("5y")), &c)
                .await
                .map(drop)
        ),
        "ttlDuration"
    );
    assert_eq!(
        field(
            m.create_token(&f.owner, f.project, REGION, create("x", Some("0d")), &c)
                .await
                .map(drop)
        ),
        "ttlDuration"
    );
    assert_eq!(
        field(
            m.create_token(&f.owner, f.project, REGION, create("", None), &c)
                .await
                .map(drop)
        ),
        "name"
    );
    assert_eq!(
        field(
            m.create_token(&f.owner, f.project, "EU 01", create("x", None), &c)
                .await
                .map(drop)
        ),
        "regionId"
    );
    let patch = UpdateToken {
        name: Some(" ".into()),
        description: None,
        labels: None,
    };
    let id = m
        .list_tokens(&f.owner, f.project, REGION, None, &c)
        .await
        .unwrap()[0]
        .id;
    assert_eq!(
        field(
            m.update_token(&f.owner, f.project, REGION, id, patch, &c)
                .await
                .map(drop)
        ),
        "name"
    );
    let bad_cursor = AuditQuery {
        cursor: Some("x".into()),
        ..AuditQuery::default()
    };
    assert_eq!(
        field(
            m.audit_page(&f.owner, f.project, &bad_cursor, &c)
                .await
                .map(drop)
        ),
        "cursor"
    );
    // Masking: listings show the public id only.
    let created = m
        .create_token(&f.owner, f.project, REGION, create("masked", None), &c)
        .await
        .unwrap();
    let secret = created.content.expose();
    let public_id = secret.split('-').nth(1).unwrap();
    assert_eq!(created.token.masked_content, format!("sk-{public_id}-****"));
    let listing = serde_json::to_string(
        &m.list_tokens(&f.owner, f.project, REGION, None, &c)
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(listing.contains(&created.token.masked_content) && !listing.contains(secret));
}

pub async fn never_expiring_tokens_have_the_zero_time(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "never").await;
    let m = &f.management;
    let c = ctx("never");
    let created = m
        .create_token(&f.owner, f.project, REGION, create("forever", None), &c)
        .await
        .unwrap();
    assert_eq!(created.token.valid_until, None);
    let json = serde_json::to_value(&created).unwrap();
    assert_eq!(json["validUntil"], NEVER_EXPIRES);
    assert_eq!(json["state"], "active");
    // The zero time is a placeholder: the key works whatever the clock says.
    f.clock.advance(TimeDelta::days(365 * 20));
    let verifier = KeyVerifier::new(db.store.clone()).with_clock(f.clock.clone());
    verifier.verify(created.content.expose()).await.unwrap();
    let listed = m
        .list_tokens(&f.viewer, f.project, REGION, None, &c)
        .await
        .unwrap();
    let json = serde_json::to_value(&listed).unwrap();
    assert_eq!(json[0]["validUntil"], NEVER_EXPIRES);
    assert_eq!(json[0]["state"], "active");
    assert_eq!(serde_json::from_value::<Vec<Token>>(json).unwrap(), listed);
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

pub async fn labels_round_trip_and_select(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "labels").await;
    let m = &f.management;
    let c = ctx("labels");
    let mut ids = Vec::new();
    for (name, pairs) in [
        ("prod-ml", &[("env", "prod"), ("team", "ml")][..]),
        ("dev", &[("env", "dev")][..]),
        ("bare", &[][..]),
    ] {
        let mut request = create(name, None);
        request.labels = (!pairs.is_empty()).then(|| labels(pairs));
        let created = m
            .create_token(&f.member, f.project, REGION, request, &c)
            .await
            .unwrap();
        assert_eq!(created.token.labels, labels(pairs));
        let got = m
            .get_token(&f.viewer, f.project, REGION, created.token.id, &c)
            .await
            .unwrap();
        assert_eq!(got.labels, labels(pairs));
        ids.push(created.token.id);
        // Listings are oldest first.
        f.clock.advance(TimeDelta::seconds(1));
    }
    let (viewer, project) = (&f.viewer, f.project);
    let select = |selector: &'static str| async move {
        m.list_tokens(viewer, project, REGION, Some(selector), &ctx("sel"))
            .await
            .map(|tokens| tokens.into_iter().map(|t| t.name).collect::<Vec<_>>())
    };
    assert_eq!(select("env=prod").await.unwrap(), ["prod-ml"]);
    assert_eq!(select("env").await.unwrap(), ["prod-ml", "dev"]);
    assert_eq!(select("env!=prod").await.unwrap(), ["dev", "bare"]);
    assert_eq!(select("!team,env").await.unwrap(), ["dev"]);
    assert_eq!(
        select("env=prod,team=ops").await.unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(select("").await.unwrap(), ["prod-ml", "dev", "bare"]);
    match select("env in (prod)").await {
        Err(AuthError::Validation { field, message }) => {
            assert_eq!(field, "label_selector");
            assert!(
                message.contains("use key=value, key!=value, key or !key"),
                "{message}"
            );
        }
        other => panic!("expected a validation error, got {other:?}"),
    }

    // A patch sets and removes keys, `{}` removes every label; absent labels stay.
    let id = ids[0];
    let patch = |labels: LabelPatch| UpdateToken {
        labels: Some(labels),
        ..UpdateToken::default()
    };
    let updated = m
        .update_token(
            &f.owner,
            f.project,
            REGION,
            id,
            patch(
                [
                    ("team".to_owned(), None),
                    ("tier".to_owned(), Some("gold".to_owned())),
                ]
                .into(),
            ),
            &c,
        )
        .await
        .unwrap();
    assert_eq!(updated.labels, labels(&[("env", "prod"), ("tier", "gold")]));
    let renamed = m
        .update_token(
            &f.owner,
            f.project,
            REGION,
            id,
            UpdateToken {
                name: Some("prod ml".into()),
                ..UpdateToken::default()
            },
            &c,
        )
        .await
        .unwrap();
    assert_eq!(renamed.labels, updated.labels);
    assert_eq!(select("tier=gold").await.unwrap(), ["prod ml"]);
    let cleared = m
        .update_token(
            &f.owner,
            f.project,
            REGION,
            id,
            patch(LabelPatch::new()),
            &c,
        )
        .await
        .unwrap();
    assert!(cleared.labels.is_empty());
    assert_eq!(
        m.get_token(&f.viewer, f.project, REGION, id, &c)
            .await
            .unwrap(),
        cleared
    );

    // Refused labels name the field and the rule; the refusals are audited.
    let mut bad = create("bad", None);
    bad.labels = Some(labels(&[("stackit-x", "1")]));
    let refused = m.create_token(&f.owner, f.project, REGION, bad, &c).await;
    assert!(
        matches!(&refused, Err(AuthError::Validation { field: "labels", message })
            if message.contains("reserved")),
        "{refused:?}"
    );
    let full: LabelPatch = (0..65).map(|i| (format!("k{i}"), None)).collect();
    let refused = m
        .update_token(&f.owner, f.project, REGION, id, patch(full), &c)
        .await;
    assert!(
        matches!(
            &refused,
            Err(AuthError::Validation {
                field: "labels",
                ..
            })
        ),
        "{refused:?}"
    );
    let events = m
        .export_audit(&f.owner, f.project, &AuditQuery::default(), &c)
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    let reasons: Vec<_> = events
        .iter()
        .filter_map(|e| e.record.reason.as_deref())
        .collect();
    assert_eq!(
        reasons,
        ["invalid:label_selector", "invalid:labels", "invalid:labels"]
    );
    let label_changes: Vec<_> = events
        .iter()
        .filter(|e| e.record.action == AuditAction::TokenUpdate && e.record.reason.is_none())
        .map(|e| e.record.changes.get("labels").cloned())
        .collect();
    assert_eq!(
        label_changes,
        [
            Some(serde_json::json!({"env": "prod", "tier": "gold"})),
            None,
            Some(serde_json::json!({})),
        ]
    );
}

pub async fn concurrent_label_patches_keep_every_change(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "racing").await;
    let mut request = create("racing", None);
    request.labels = Some(labels(&[("keep", "1")]));
    let id = f
        .management
        .create_token(&f.owner, f.project, REGION, request, &ctx("r"))
        .await
        .unwrap()
        .token
        .id;
    // Eight writers, half of them on another replica, each adding its own label at once.
    let replica = Management::new(db.replica().await);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let m = if i % 2 == 0 {
            f.management.clone()
        } else {
            replica.clone()
        };
        let (actor, project) = (f.owner.clone(), f.project);
        tasks.push(tokio::spawn(async move {
            let patch = UpdateToken {
                labels: Some([(format!("w{i}"), Some(i.to_string()))].into()),
                ..UpdateToken::default()
            };
            m.update_token(&actor, project, REGION, id, patch, &ctx("w"))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let token = f
        .management
        .get_token(&f.viewer, f.project, REGION, id, &ctx("r"))
        .await
        .unwrap();
    let mut expected = labels(&[("keep", "1")]);
    expected.extend((0..8).map(|i| (format!("w{i}"), i.to_string())));
    assert_eq!(token.labels, expected);
}

//! Who may do what: isolation between projects, roles, credentials, and that no plaintext
//! secret reaches the database.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use chrono::TimeDelta;
use gateway_auth::{AuditQuery, AuthError, KeyVerifier, Role, UpdateToken};
use uuid::Uuid;

use crate::support::{create, ctx, Fixture, TestDb, REGION};

pub async fn isolation_across_projects(db: &TestDb) {
    let a = Fixture::new(db.store.clone(), "alpha").await;
    let b = Fixture::new(db.store.clone(), "beta").await;
    let m = &a.management;
    let b_token = m
        .create_token(&b.owner, b.project, REGION, create("b", None), &ctx("b"))
        .await
        .unwrap();
    let a_token = m
        .create_token(&a.owner, a.project, REGION, create("a", None), &ctx("a"))
        .await
        .unwrap();
    let (bid, aid) = (b_token.token.id, a_token.token.id);
    let c = ctx("attack");
    let patch = || UpdateToken {
        name: Some("pwned".into()),
        description: None,
        labels: None,
    };
    let not_found =
        |r: Result<(), AuthError>| assert!(matches!(r, Err(AuthError::NotFound)), "{r:?}");
    // A's owner against project B, with B's ids, with A's ids, and with unknown ids.
    for (project, id) in [
        (b.project, bid),
        (b.project, aid),
        (a.project, bid),
        (Uuid::new_v4(), bid),
    ] {
        not_found(
            m.get_token(&a.owner, project, REGION, id, &c)
                .await
                .map(drop),
        );
        not_found(
            m.update_token(&a.owner, project, REGION, id, patch(), &c)
                .await
                .map(drop),
        );
        not_found(m.delete_token(&a.owner, project, REGION, id, &c).await);
    }
    not_found(
        m.list_tokens(&a.owner, b.project, REGION, None, &c)
            .await
            .map(drop),
    );
    not_found(
        m.create_token(&a.owner, b.project, REGION, create("x", None), &c)
            .await
            .map(drop),
    );
    not_found(
        m.audit_page(&a.owner, b.project, &AuditQuery::default(), &c)
            .await
            .map(drop),
    );
    // Nothing of B changed, and A's listing shows only A's token.
    let still = m
        .get_token(&b.viewer, b.project, REGION, bid, &ctx("b"))
        .await
        .unwrap();
    assert_eq!(still, b_token.token);
    let listed = m
        .list_tokens(&a.viewer, a.project, REGION, None, &ctx("a"))
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|t| t.id).collect::<Vec<_>>(), vec![aid]);
    // Each principal lists only the projects it has a role on, with that role.
    let listed = m.projects(&a.owner).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| (p.id, p.role)).collect::<Vec<_>>(),
        vec![(a.project, Role::Owner)]
    );
    assert_eq!(listed[0].name, "alpha");
    let listed = m.projects(&b.viewer).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| (p.id, p.role)).collect::<Vec<_>>(),
        vec![(b.project, Role::Viewer)]
    );
    m.add_principal(b.project, &a.member.subject, &a.member.email, Role::Viewer)
        .await
        .unwrap();
    let listed = m.projects(&a.member).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| (&*p.name, p.role))
            .collect::<Vec<_>>(),
        vec![("alpha", Role::Member), ("beta", Role::Viewer)]
    );
    // A key names its own project only.
    let verifier = KeyVerifier::new(db.store.clone());
    assert_eq!(
        verifier
            .verify(b_token.content.expose())
            .await
            .unwrap()
            .project_id,
        b.project
    );
    assert_eq!(
        verifier
            .verify(a_token.content.expose())
            .await
            .unwrap()
            .project_id,
        a.project
    );
}

pub async fn roles_and_credentials(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "roles").await;
    let m = &f.management;
    let c = ctx("roles");
    let token = m
        .create_token(&f.owner, f.project, REGION, create("t", None), &c)
        .await
        .unwrap()
        .token;
    let forbidden =
        |r: Result<(), AuthError>| assert!(matches!(r, Err(AuthError::Forbidden)), "{r:?}");
    forbidden(
        m.create_token(&f.viewer, f.project, REGION, create("v", None), &c)
            .await
            .map(drop),
    );
    forbidden(
        m.update_token(
            &f.viewer,
            f.project,
            REGION,
            token.id,
            UpdateToken::default(),
            &c,
        )
        .await
        .map(drop),
    );
    forbidden(
        m.delete_token(&f.viewer, f.project, REGION, token.id, &c)
            .await,
    );
    m.audit_page(&f.viewer, f.project, &AuditQuery::default(), &c)
        .await
        .unwrap();

    let unauthenticated =
        |r: Result<_, AuthError>| assert!(matches!(r, Err(AuthError::Unauthenticated)));
    for bad in [
        "",
        "gmt-",
        "Bearer x",
        "sk-aaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ] {
        unauthenticated(m.authenticate_management_token(bad).await);
    }
    let real = m
        .create_management_token(&f.owner.subject, Some("1h".parse().unwrap()))
        .await
        .unwrap();
    let mut forged = real.content.expose().to_owned();
    let last = forged.pop().unwrap();
    forged.push(if last == 'a' { 'b' } else { 'a' });
    unauthenticated(m.authenticate_management_token(&forged).await);
    assert_eq!(
        m.authenticate_management_token(real.content.expose())
            .await
            .unwrap(),
        f.owner
    );
    f.clock.advance(TimeDelta::hours(1));
    unauthenticated(m.authenticate_management_token(real.content.expose()).await);
    assert!(matches!(
        m.create_management_token("nobody", None).await,
        Err(AuthError::NotFound)
    ));
    assert!(matches!(
        m.add_principal(Uuid::new_v4(), "s", "s@x.org", gateway_auth::Role::Owner)
            .await,
        Err(AuthError::NotFound)
    ));

    let verifier = KeyVerifier::new(db.store.clone());
    for bad in [
        "",
        "sk-",
        real.content.expose(),
        "sk-aaaaaaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
    ] {
        assert!(matches!(
            verifier.verify(bad).await,
            Err(AuthError::InvalidKey)
        ));
    }
}

pub async fn secrets_are_never_stored(db: &TestDb) {
    let f = Fixture::new(db.store.clone(), "secret").await;
    let m = &f.management;
    let c = ctx("sec");
    let mut secrets = Vec::new();
    for i in 0..4 {
        let t = m
            .create_token(
                &f.owner,
                f.project,
                REGION,
                create(&format!("k{i}"), Some("1d")),
                &c,
            )
            .await
            .unwrap();
        let patch = UpdateToken {
            name: Some(format!("k{i} renamed")),
            description: Some("d".into()),
            labels: None,
        };
        m.update_token(&f.owner, f.project, REGION, t.token.id, patch, &c)
            .await
            .unwrap();
        secrets.push(t.content.expose().to_owned());
        if i % 2 == 0 {
            m.delete_token(&f.owner, f.project, REGION, t.token.id, &c)
                .await
                .unwrap();
        }
    }
    let admin_key = m
        .create_key(f.project, REGION, create("admin", None))
        .await
        .unwrap();
    secrets.push(admin_key.content.expose().to_owned());
    let mgmt = m
        .create_management_token(&f.owner.subject, None)
        .await
        .unwrap();
    secrets.push(mgmt.content.expose().to_owned());
    f.clock.advance(TimeDelta::days(2));
    m.sweep_expired().await.unwrap();

    let cells = db.dump().await;
    assert!(cells.iter().any(|(t, _, _)| t == "audit_events"));
    assert!(cells.iter().any(|(t, _, _)| t == "api_keys"));
    let files = db.file_bytes();
    for secret in &secrets {
        let secret_part = secret.rsplit('-').next().unwrap();
        let hex: String = secret_part.bytes().map(|b| format!("{b:02x}")).collect();
        for (table, column, value) in &cells {
            assert!(
                !value.contains(secret_part) && !value.contains(&hex),
                "secret found in {table}.{column}"
            );
        }
        assert!(
            !files
                .windows(secret_part.len())
                .any(|w| w == secret_part.as_bytes()),
            "secret in the database file"
        );
    }
}

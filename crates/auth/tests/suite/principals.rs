//! The lifecycle of principals and their management tokens: listing, revocation (effective at
//! once on every replica), removal of roles and of the principal, and their audit events.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use gateway_auth::{AuditAction, AuditQuery, AuthError, Management, Role};
use uuid::Uuid;

use crate::support::{ctx, Fixture, TestDb, REGION};

/// The `action` events of `project`'s log that concern the management token `token`.
async fn token_events(f: &Fixture, project: Uuid, token: Uuid) -> Vec<AuditAction> {
    let events = f
        .management
        .export_audit(&f.owner, project, &AuditQuery::default(), &ctx("read"))
        .await
        .unwrap()
        .all()
        .await
        .unwrap();
    events
        .iter()
        .filter(|e| e.record.target_token_id == Some(token))
        .map(|e| e.record.action)
        .collect()
}

pub async fn management_tokens_are_listed_and_revoked_at_once(db: &TestDb) {
    let a = Fixture::new(db.store.clone(), "revoke-a").await;
    let b = Fixture::new(db.store.clone(), "revoke-b").await;
    let m = &a.management;
    let subject = &a.member.subject;
    m.add_principal(b.project, subject, &a.member.email, Role::Viewer)
        .await
        .unwrap();
    let created = m.create_management_token(subject, None).await.unwrap();
    let secret = created.content.expose();
    let replica = Management::new(db.replica().await);
    assert_eq!(
        replica.authenticate_management_token(secret).await.unwrap(),
        a.member
    );

    let listed = m.management_tokens(Some(subject)).await.unwrap();
    assert_eq!(listed.len(), 2, "the fixture's token and the new one");
    let ours = listed.iter().find(|t| t.id == created.id).unwrap();
    let public_id = secret.split('-').nth(1).unwrap();
    assert_eq!(ours.masked_content, format!("gmt-{public_id}-****"));
    assert!(!serde_json::to_string(&listed).unwrap().contains(secret));
    let everyone = m.management_tokens(None).await.unwrap();
    assert_eq!(everyone.len(), 6 + 1);

    let revoked = m.revoke_management_token(public_id).await.unwrap();
    assert_eq!(revoked.id, created.id);
    for management in [m, &replica] {
        assert!(matches!(
            management.authenticate_management_token(secret).await,
            Err(AuthError::Unauthenticated)
        ));
    }
    assert!(matches!(
        m.revoke_management_token(&created.id.to_string()).await,
        Err(AuthError::NotFound)
    ));
    assert!(matches!(
        m.revoke_management_token("nope").await,
        Err(AuthError::NotFound)
    ));
    assert_eq!(m.management_tokens(Some(subject)).await.unwrap().len(), 1);
    // Both projects the principal has a role in record the issue and the revocation.
    let expected = vec![
        AuditAction::ManagementTokenCreate,
        AuditAction::ManagementTokenRevoke,
    ];
    assert_eq!(token_events(&a, a.project, created.id).await, expected);
    assert_eq!(token_events(&b, b.project, created.id).await, expected);
}

pub async fn removed_principals_lose_access(db: &TestDb) {
    let a = Fixture::new(db.store.clone(), "remove-a").await;
    let b = Fixture::new(db.store.clone(), "remove-b").await;
    let m = &a.management;
    let (subject, email) = (&a.member.subject.clone(), &a.member.email.clone());
    m.add_principal(b.project, subject, email, Role::Member)
        .await
        .unwrap();
    let token = m.create_management_token(subject, None).await.unwrap();
    let c = ctx("remove");

    // Without its role on A, the principal sees A no more, and B still.
    let first = m.remove_principal(a.project, subject).await.unwrap();
    assert_eq!(first.role, Role::Member);
    assert!(!first.principal_deleted && first.revoked_management_tokens.is_empty());
    let list = |project| m.list_tokens(&a.member, project, REGION, None, &c);
    assert!(matches!(list(a.project).await, Err(AuthError::NotFound)));
    assert!(list(b.project).await.is_ok());
    assert!(matches!(
        m.remove_principal(a.project, subject).await,
        Err(AuthError::NotFound)
    ));

    // Without any role, the principal, its e-mail and its tokens are gone.
    let last = m.remove_principal(b.project, subject).await.unwrap();
    assert!(last.principal_deleted);
    assert_eq!(last.revoked_management_tokens.len(), 2);
    assert!(last.revoked_management_tokens.contains(&token.id));
    assert!(matches!(
        m.authenticate_management_token(token.content.expose())
            .await,
        Err(AuthError::Unauthenticated)
    ));
    assert!(db.store.principal_email(subject).await.unwrap().is_none());
    assert!(m.management_tokens(Some(subject)).await.unwrap().is_empty());
    assert!(!db
        .dump()
        .await
        .iter()
        .any(|(table, _, value)| table != "audit_events" && value.contains(email.as_str())));

    let removals = |f: Fixture| async move {
        let events = f
            .management
            .export_audit(&f.owner, f.project, &AuditQuery::default(), &ctx("read"))
            .await
            .unwrap()
            .all()
            .await
            .unwrap();
        events
            .into_iter()
            .filter(|e| e.record.action == AuditAction::PrincipalRemove)
            .map(|e| e.record.changes)
            .collect::<Vec<_>>()
    };
    let on_a = removals(a).await;
    assert_eq!(on_a.len(), 1);
    assert_eq!(on_a[0]["subject"], subject.as_str());
    assert_eq!(on_a[0]["role"], "member");
    assert_eq!(on_a[0]["principalDeleted"], false);
    let on_b = removals(b).await;
    assert_eq!(on_b[0]["principalDeleted"], true);
    assert_eq!(
        on_b[0]["revokedManagementTokens"].as_array().unwrap().len(),
        2
    );
}

//! The life of a model API key, using `gateway-auth` as a library the way another Rust service
//! would: open a store (a SQLite file in a temporary directory), create a project, an owner
//! and a key with [`Management`], verify the key with [`KeyVerifier`], delete it, and show that
//! verification now fails; then list the audit log. Prints each step, never the secret.
//!
//! Usage: `verify_key` (no arguments).

use gateway_auth::{
    store, Actor, AuditQuery, CreateToken, KeyVerifier, Management, RequestContext, Role,
};

/// The region the key is created in.
const REGION: &str = "eu01";

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // `enable_all` for the timer that waits out the verifier's cache.
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(run())
}

/// Walks through the steps, printing one line each.
async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("gateway.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let store = store::open(&url).await?;
    let management = Management::new(store.clone());
    let verifier = KeyVerifier::new(store);
    let ctx = RequestContext::default();

    let project = management.create_project("example").await?;
    println!("created project {} ({})", project.name, project.id);
    let owner = Actor {
        subject: "alice".into(),
        email: "alice@example.com".into(),
    };
    management
        .add_principal(project.id, &owner.subject, &owner.email, Role::Owner)
        .await?;
    let request = CreateToken {
        name: "laptop".into(),
        ..CreateToken::default()
    };
    let created = management
        .create_token(&owner, project.id, REGION, request, &ctx)
        .await?;
    println!("created key {}", created.token.masked_content);

    let key = verifier.verify(created.content.expose()).await?;
    println!("verified: key {} of project {}", key.key_id, key.project_id);

    management
        .delete_token(&owner, project.id, REGION, created.token.id, &ctx)
        .await?;
    println!("deleted key {}", created.token.id);
    // Verifiers cache keys for `max_age`: that is how late any replica notices the deletion.
    tokio::time::sleep(verifier.max_age()).await;
    match verifier.verify(created.content.expose()).await {
        Ok(key) => return Err(format!("key {} still verifies", key.key_id).into()),
        Err(error) => println!("refused: {error}"),
    }

    let page = management
        .audit_page(&owner, project.id, &AuditQuery::default(), &ctx)
        .await?;
    for event in page.events {
        let record = event.record;
        println!(
            "audit: {} {}",
            record.action.as_str(),
            record.outcome.as_str()
        );
    }
    Ok(())
}

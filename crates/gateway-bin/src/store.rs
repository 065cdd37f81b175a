//! Opens the database that `serve` and the `admin` commands share, applying its migrations.

use std::sync::Arc;

use anyhow::Context;
use gateway_auth::Store;

use crate::config::Config;

/// Opens the configured database (creating the data directory for the default SQLite file)
/// and applies pending migrations.
pub async fn open(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    if config.database.url.is_none() {
        std::fs::create_dir_all(&config.server.data_dir).with_context(|| {
            format!(
                "cannot create the data directory {}",
                config.server.data_dir.display()
            )
        })?;
    }
    gateway_auth::store::open(&config.database_url())
        .await
        .context("cannot open the database")
}

//! The health checks of a model's servers: every interval each server's `/models` is asked,
//! and a server that does not answer with a success within the time limit is left out of the
//! balancing until it does again. The checks stop when the backend is dropped.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::balancer::{Balancer, Server};
use crate::client::Client;
use crate::exchange::next_data;

/// Longest time a health check may take.
const MAX_CHECK_TIME: Duration = Duration::from_secs(5);

/// Checks the servers of `balancer` now and then every `interval`, while it lives.
pub(crate) fn spawn(balancer: Weak<Balancer>, client: Client, interval: Duration) {
    let limit = interval.min(MAX_CHECK_TIME);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(balancer) = balancer.upgrade() else {
                return;
            };
            let checks = balancer.servers().iter().map(|server| {
                let (server, client) = (Arc::clone(server), client.clone());
                tokio::spawn(async move { check(&server, &client, limit).await })
            });
            for check in checks.collect::<Vec<_>>() {
                let _ = check.await;
            }
        }
    });
}

/// Asks one server and records the answer.
async fn check(server: &Server, client: &Client, limit: Duration) {
    let answered = tokio::time::timeout(limit, async {
        let response = client
            .send(server.endpoint(), "/models", None, limit)
            .await?;
        let ok = response.status().is_success();
        let mut body = response.into_body();
        while next_data(&mut body).await?.is_some() {}
        Ok::<bool, crate::client::TransportError>(ok)
    })
    .await;
    let healthy = matches!(answered, Ok(Ok(true)));
    if server.set_healthy(healthy) {
        let upstream = server.endpoint().url("");
        if healthy {
            tracing::info!(%upstream, "upstream server passes its health check again");
        } else {
            tracing::warn!(%upstream, "upstream server failed its health check");
        }
    }
}

//! Prometheus metrics with a fixed vocabulary: labels are bounded sets (route template, method,
//! status class, model id of a served model), never a key, a project or request text.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use gateway_backend::Figure;
use gateway_metering::LimiterState;

/// Labels of a finished HTTP request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route template, e.g. `/v1/models/{model}`, or `unmatched`.
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// `2xx`, `4xx`, `5xx`, …
    pub status: String,
}

/// Labels of a route's latency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route template.
    pub route: String,
}

/// Labels of metered tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TokenLabels {
    /// A served model id.
    pub model: String,
    /// `prompt` or `completion`.
    pub kind: &'static str,
}

/// Labels of a served model.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ModelLabels {
    /// A served model id.
    pub model: String,
}

/// Labels of the rate limiter's state.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LimiterLabels {
    /// `available`, `failing_open` or `failing_closed`.
    pub state: &'static str,
}

/// A backend's own figure per model (`gateway_engine_<name>`), copied when scraped.
type EngineFigure = Family<ModelLabels, Gauge<f64, AtomicU64>>;

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    tokens: Family<TokenLabels, Counter>,
    cached_prompt_tokens: Family<TokenLabels, Counter>,
    engine: Mutex<HashMap<&'static str, EngineFigure>>,
    database_writable: Gauge,
    limiter_state: Family<LimiterLabels, Gauge>,
    usage_records_pending: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "HTTP requests answered", requests.clone());
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 16))
        });
        registry.register(
            "request_duration_seconds",
            "Time to answer an HTTP request",
            durations.clone(),
        );
        let tokens = Family::<TokenLabels, Counter>::default();
        registry.register("tokens", "Tokens metered", tokens.clone());
        let cached_prompt_tokens = Family::<TokenLabels, Counter>::default();
        registry.register(
            "cached_prompt_tokens",
            "Metered prompt tokens that the backend took from its prompt cache",
            cached_prompt_tokens.clone(),
        );
        let database_writable = Gauge::default();
        registry.register(
            "database_writable",
            "1 while the database takes writes, 0 while its write checks fail",
            database_writable.clone(),
        );
        let limiter_state = Family::<LimiterLabels, Gauge>::default();
        registry.register(
            "rate_limiter_state",
            "1 for the rate limiter's current state (available, failing_open, failing_closed)",
            limiter_state.clone(),
        );
        let usage_records_pending = Gauge::default();
        registry.register(
            "usage_records_pending",
            "Usage records in this replica's journal that are not in the database yet",
            usage_records_pending.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            requests,
            durations,
            tokens,
            cached_prompt_tokens,
            engine: Mutex::new(HashMap::new()),
            database_writable,
            limiter_state,
            usage_records_pending,
        }
    }
}

impl Metrics {
    /// Counts one answered request and its latency.
    pub fn observe_request(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let labels = RequestLabels {
            route: route.to_owned(),
            method: method.to_owned(),
            status: format!("{}xx", status / 100),
        };
        self.requests.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Counts metered prompt tokens of a served model.
    pub fn add_prompt_tokens(&self, model: &str, tokens: u64) {
        self.tokens
            .get_or_create(&TokenLabels {
                model: model.to_owned(),
                kind: "prompt",
            })
            .inc_by(tokens);
    }

    /// Counts metered prompt tokens of a served model that its backend took from its prompt
    /// cache (labelled as its prompt tokens, `kind="prompt"`, so the two divide directly).
    pub fn add_cached_prompt_tokens(&self, model: &str, tokens: u64) {
        self.cached_prompt_tokens
            .get_or_create(&TokenLabels {
                model: model.to_owned(),
                kind: "prompt",
            })
            .inc_by(tokens);
    }

    /// Counts metered completion (generated) tokens of a served model.
    pub fn add_completion_tokens(&self, model: &str, tokens: u64) {
        self.tokens
            .get_or_create(&TokenLabels {
                model: model.to_owned(),
                kind: "completion",
            })
            .inc_by(tokens);
    }

    /// Copies the backend figures of model `model`, registering a metric the first time a
    /// figure's name is seen.
    pub fn set_engine_figures(&self, model: &str, figures: &[Figure]) {
        let labels = ModelLabels {
            model: model.to_owned(),
        };
        let mut engine = self.engine.lock().unwrap_or_else(PoisonError::into_inner);
        for figure in figures {
            let family = engine.entry(figure.name).or_insert_with(|| {
                let family = EngineFigure::default();
                self.registry
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .register(
                        format!("engine_{}", figure.name),
                        figure.help,
                        family.clone(),
                    );
                family
            });
            family.get_or_create(&labels).set(figure.value);
        }
    }

    /// Sets the state of what the replica depends on: the database, the rate limits' store
    /// and the usage records waiting for the database.
    pub fn set_dependencies(&self, database_writable: bool, limiter: LimiterState, pending: u64) {
        self.database_writable.set(i64::from(database_writable));
        for state in [
            LimiterState::Available,
            LimiterState::FailingOpen,
            LimiterState::FailingClosed,
        ] {
            let labels = LimiterLabels {
                state: state.name(),
            };
            self.limiter_state
                .get_or_create(&labels)
                .set(i64::from(state == limiter));
        }
        self.usage_records_pending
            .set(i64::try_from(pending).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = encode(&mut text, &registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_and_tokens() {
        let metrics = Metrics::default();
        metrics.observe_request("/v1/embeddings", "POST", 200, 0.01);
        metrics.observe_request("/v1/embeddings", "POST", 404, 0.01);
        metrics.add_prompt_tokens("all-minilm-l6-v2", 7);
        metrics.add_completion_tokens("smollm2-135m-instruct", 3);
        metrics.add_cached_prompt_tokens("smollm2-135m-instruct", 5);
        let text = metrics.render();
        assert!(text.contains(
            r#"gateway_requests_total{route="/v1/embeddings",method="POST",status="2xx"} 1"#
        ));
        assert!(text.contains(r#"status="4xx"} 1"#));
        assert!(text.contains(r#"gateway_tokens_total{model="all-minilm-l6-v2",kind="prompt"} 7"#));
        assert!(text.contains(
            r#"gateway_tokens_total{model="smollm2-135m-instruct",kind="completion"} 3"#
        ));
        assert!(text.contains(
            r#"gateway_cached_prompt_tokens_total{model="smollm2-135m-instruct",kind="prompt"} 5"#
        ));
        assert!(text.contains("gateway_request_duration_seconds_bucket"));
    }

    #[test]
    fn renders_the_state_of_the_dependencies() {
        let metrics = Metrics::default();
        metrics.set_dependencies(false, LimiterState::FailingOpen, 12);
        let text = metrics.render();
        assert!(text.contains("gateway_database_writable 0"), "{text}");
        assert!(text.contains(r#"gateway_rate_limiter_state{state="failing_open"} 1"#));
        assert!(text.contains(r#"gateway_rate_limiter_state{state="available"} 0"#));
        assert!(text.contains("gateway_usage_records_pending 12"));
        metrics.set_dependencies(true, LimiterState::Available, 0);
        let text = metrics.render();
        assert!(text.contains("gateway_database_writable 1"));
        assert!(text.contains(r#"gateway_rate_limiter_state{state="available"} 1"#));
    }

    #[test]
    fn renders_engine_figures() {
        let metrics = Metrics::default();
        let figures = [
            Figure {
                name: "decode_rows",
                help: "Sequence rows of all decode steps since start",
                value: 40.0,
            },
            Figure {
                name: "onnx_seconds",
                help: "Seconds spent inside ONNX Runtime since start",
                value: 0.25,
            },
        ];
        metrics.set_engine_figures("smollm2-135m-instruct", &figures);
        metrics.set_engine_figures("smollm2-135m-instruct", &figures);
        let text = metrics.render();
        assert!(text.contains(r#"gateway_engine_decode_rows{model="smollm2-135m-instruct"} 40"#));
        assert!(text.contains(r#"gateway_engine_onnx_seconds{model="smollm2-135m-instruct"} 0.25"#));
    }
}

//! Prometheus metrics with a fixed vocabulary: labels are bounded sets (route template, method,
//! status class, model id of a served model), never a key, a project or request text.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use gateway_engine::StepStats;

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

/// A figure of a model's scheduler, copied from its cumulative [`StepStats`] when scraped.
type EngineFigure = Family<ModelLabels, Gauge<f64, AtomicU64>>;

/// The scheduler figures of generating models.
#[derive(Default)]
struct EngineFigures {
    steps: EngineFigure,
    decode_rows: EngineFigure,
    prefill_tokens: EngineFigure,
    step_seconds: EngineFigure,
    onnx_seconds: EngineFigure,
}

/// The gateway's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    tokens: Family<TokenLabels, Counter>,
    engine: EngineFigures,
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
        let engine = EngineFigures::default();
        let figures = [
            (
                "engine_steps",
                "Scheduler steps run since start",
                &engine.steps,
            ),
            (
                "engine_decode_rows",
                "Sequence rows of all decode steps since start",
                &engine.decode_rows,
            ),
            (
                "engine_prefill_tokens",
                "Prompt tokens prefilled since start",
                &engine.prefill_tokens,
            ),
            (
                "engine_step_seconds",
                "Seconds spent in scheduler steps since start",
                &engine.step_seconds,
            ),
            (
                "engine_onnx_seconds",
                "Seconds of scheduler steps spent inside ONNX Runtime since start",
                &engine.onnx_seconds,
            ),
        ];
        for (name, help, family) in figures {
            registry.register(name, help, family.clone());
        }
        Self {
            registry,
            requests,
            durations,
            tokens,
            engine,
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

    /// Counts metered completion (generated) tokens of a served model.
    pub fn add_completion_tokens(&self, model: &str, tokens: u64) {
        self.tokens
            .get_or_create(&TokenLabels {
                model: model.to_owned(),
                kind: "completion",
            })
            .inc_by(tokens);
    }

    /// Copies the scheduler figures of generating model `model`.
    pub fn set_engine_stats(&self, model: &str, stats: &StepStats) {
        let labels = ModelLabels {
            model: model.to_owned(),
        };
        let figures = [
            (&self.engine.steps, stats.steps as f64),
            (&self.engine.decode_rows, stats.decode_rows as f64),
            (&self.engine.prefill_tokens, stats.prefill_tokens as f64),
            (&self.engine.step_seconds, stats.step_seconds),
            (&self.engine.onnx_seconds, stats.onnx_seconds),
        ];
        for (family, value) in figures {
            family.get_or_create(&labels).set(value);
        }
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut text, &self.registry);
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
        let text = metrics.render();
        assert!(text.contains(
            r#"gateway_requests_total{route="/v1/embeddings",method="POST",status="2xx"} 1"#
        ));
        assert!(text.contains(r#"status="4xx"} 1"#));
        assert!(text.contains(r#"gateway_tokens_total{model="all-minilm-l6-v2",kind="prompt"} 7"#));
        assert!(text.contains(
            r#"gateway_tokens_total{model="smollm2-135m-instruct",kind="completion"} 3"#
        ));
        assert!(text.contains("gateway_request_duration_seconds_bucket"));
    }

    #[test]
    fn renders_engine_figures() {
        let metrics = Metrics::default();
        let stats = StepStats {
            steps: 3,
            decode_rows: 40,
            prefill_tokens: 60,
            step_seconds: 0.5,
            onnx_seconds: 0.25,
        };
        metrics.set_engine_stats("smollm2-135m-instruct", &stats);
        let text = metrics.render();
        assert!(text.contains(r#"gateway_engine_decode_rows{model="smollm2-135m-instruct"} 40"#));
        assert!(text.contains(r#"gateway_engine_onnx_seconds{model="smollm2-135m-instruct"} 0.25"#));
    }
}

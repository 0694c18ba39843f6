//! Prometheus metrics at `GET /metrics`, for operators: HTTP requests and their latency by route,
//! open event streams, answers being written and waiting (and the oldest wait), MCP connections by
//! status, the database pool, this instance's peers, and the domain's own (model calls, tool
//! calls and decisions; see `domain::metrics`). Served only with the bearer secret
//! `SWITCHBOARD_METRICS_TOKEN` (none set: not served), in the OpenMetrics text format.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;

/// The most routes told apart; requests to others are counted as `other` (a client choosing
/// paths must not grow the metrics without end).
const MAX_ROUTES: usize = 200;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

/// This process's metrics: the registry, and the families the server fills.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    streams: Gauge,
    answers: Family<StateLabels, Gauge>,
    oldest_wait: Gauge<f64, std::sync::atomic::AtomicU64>,
    mcp: Family<StateLabels, Gauge>,
    pool: Family<StateLabels, Gauge>,
    peers: Gauge,
    routes: Mutex<HashSet<String>>,
}

/// Seconds, from 1 ms to about 16 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        let mut registry = Registry::with_prefix("switchboard");
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency),
            streams: Gauge::default(),
            answers: Family::default(),
            oldest_wait: Gauge::default(),
            mcp: Family::default(),
            pool: Family::default(),
            peers: Gauge::default(),
            routes: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request (to its headers), by method and route",
            metrics.latency.clone(),
        );
        registry.register(
            "event_streams",
            "Chat event streams open on this instance",
            metrics.streams.clone(),
        );
        registry.register(
            "answers",
            "Answers being written (streaming) and waiting for their person (waiting), on every instance",
            metrics.answers.clone(),
        );
        registry.register(
            "approval_oldest_wait_seconds",
            "How long the answer waiting longest for its person has waited",
            metrics.oldest_wait.clone(),
        );
        registry.register(
            "mcp_connections",
            "People's MCP connections on this instance, by state",
            metrics.mcp.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database pool connections, by state (idle, in_use)",
            metrics.pool.clone(),
        );
        registry.register(
            "instance_peers",
            "Other instances on this database this one hears of",
            metrics.peers.clone(),
        );
        domain::metrics::METRICS.register(&mut registry);
        Arc::new(Self {
            registry,
            ..metrics
        })
    }

    /// The route a request is counted under: its path with ids (UUIDs, numbers) as `{id}`, or
    /// `other` once [`MAX_ROUTES`] are known.
    fn route(&self, path: &str) -> String {
        let route: String = path
            .split('/')
            .map(|segment| {
                let id = segment.parse::<uuid::Uuid>().is_ok()
                    || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
                if id { "{id}" } else { segment }
            })
            .collect::<Vec<_>>()
            .join("/");
        let route = if path.starts_with("/pkg/") {
            "/pkg/*".to_owned()
        } else {
            route
        };
        let mut routes = self.routes.lock().expect("not poisoned");
        if routes.contains(&route) {
            return route;
        }
        if routes.len() >= MAX_ROUTES || route.len() > 100 {
            return "other".into();
        }
        routes.insert(route.clone());
        route
    }
}

/// Counts every request and its time to an answer.
pub async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let metrics = &state.metrics;
    let route = metrics.route(&path);
    metrics
        .latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// `GET /metrics` with `Authorization: Bearer <SWITCHBOARD_METRICS_TOKEN>`.
pub async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let Some(secret) = state.metrics_token.as_deref() else {
        return (
            StatusCode::NOT_FOUND,
            "Metrics are off: set SWITCHBOARD_METRICS_TOKEN to serve them.",
        )
            .into_response();
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::auth::routes::constant_time_eq(given, secret) {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "Send the metrics secret (SWITCHBOARD_METRICS_TOKEN) as a bearer token.",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"metrics\""),
        );
        return response;
    }
    let metrics = &state.metrics;
    metrics.streams.set(state.streams.total() as i64);
    metrics.peers.set(state.runs.other_instances() as i64);
    metrics.mcp.clear();
    for (status, count) in state.mcp.connection_counts() {
        metrics
            .mcp
            .get_or_create(&StateLabels {
                state: status.into(),
            })
            .set(count as i64);
    }
    let pool = state.db.pool();
    let idle = pool.num_idle() as i64;
    for (label, value) in [("idle", idle), ("in_use", i64::from(pool.size()) - idle)] {
        metrics
            .pool
            .get_or_create(&StateLabels {
                state: label.into(),
            })
            .set(value);
    }
    match domain::metrics::answers(&state.db).await {
        Ok(answers) => {
            for (label, value) in [
                ("streaming", answers.streaming),
                ("waiting", answers.waiting),
            ] {
                metrics
                    .answers
                    .get_or_create(&StateLabels {
                        state: label.into(),
                    })
                    .set(value);
            }
            metrics.oldest_wait.set(answers.oldest_wait_seconds);
        }
        Err(e) => tracing::warn!("cannot count the answers for the metrics: {e}"),
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &metrics.registry) {
        tracing::error!("cannot encode the metrics: {e}");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = Response::new(Body::from(text));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_ids_once_and_stay_few() {
        let metrics = Metrics::new();
        assert_eq!(
            metrics.route("/c/6b1e0c3e-1f00-4a6e-9c3b-0f2a7a1d9e11"),
            "/c/{id}"
        );
        assert_eq!(
            metrics.route("/api/chats/7f1e0c3e-1f00-4a6e-9c3b-0f2a7a1d9e11/events"),
            "/api/chats/{id}/events"
        );
        assert_eq!(metrics.route("/pkg/app-1234.wasm"), "/pkg/*");
        for n in 0..MAX_ROUTES * 2 {
            metrics.route(&format!("/made-up-{n}x"));
        }
        assert_eq!(metrics.route("/yet-another"), "other");
        assert_eq!(metrics.route("/c/1234"), "/c/{id}", "known routes stay");
        assert!(metrics.routes.lock().unwrap().len() <= MAX_ROUTES);
    }

    /// The names of the families an encoding lists (from its `# HELP` lines).
    fn listed(metrics: &Metrics) -> Vec<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &metrics.registry).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("# HELP "))
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_owned)
            .collect()
    }

    /// The Grafana dashboard in docs/ asks only for metrics Switchboard serves (a family renamed
    /// here would leave an empty panel there).
    #[test]
    fn the_dashboard_asks_only_for_metrics_that_exist() {
        let metrics = Metrics::new();
        // A sample in every family, so that each is listed.
        let labels = |state: &str| StateLabels {
            state: state.into(),
        };
        metrics.route("/");
        metrics
            .requests
            .get_or_create(&RequestLabels {
                method: "GET".into(),
                route: "/".into(),
                status: 200,
            })
            .inc();
        metrics
            .latency
            .get_or_create(&RouteLabels {
                method: "GET".into(),
                route: "/".into(),
            })
            .observe(0.01);
        metrics.answers.get_or_create(&labels("waiting")).set(1);
        metrics.mcp.get_or_create(&labels("connected")).set(1);
        metrics.pool.get_or_create(&labels("idle")).set(1);
        let domain = &domain::metrics::METRICS;
        domain.model_call(
            "p",
            "m",
            Some(std::time::Duration::from_millis(5)),
            std::time::Duration::from_millis(9),
            Some((1, 1)),
            true,
        );
        domain
            .tool_calls
            .get_or_create(&domain::metrics::CallOutcome { outcome: "ok" })
            .inc();
        domain
            .tool_decisions
            .get_or_create(&domain::metrics::DecisionLabels {
                decision: "approve",
                by: "person",
            })
            .inc();
        domain.refused("rate");
        let families = listed(&metrics);
        assert!(families.len() >= 15, "{families:?}");

        let dashboard: serde_json::Value =
            serde_json::from_str(include_str!("../../docs/grafana-dashboard.json")).unwrap();
        let exprs: Vec<&str> = dashboard["panels"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["targets"].as_array().unwrap())
            .map(|t| t["expr"].as_str().unwrap())
            .collect();
        assert!(!exprs.is_empty());
        for expr in exprs {
            let names = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("switchboard_"));
            for name in names {
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix))
                    .unwrap_or(name);
                assert!(
                    families.iter().any(|f| f == family),
                    "{name} (in `{expr}`) is not served; families: {families:?}"
                );
            }
        }
    }
}

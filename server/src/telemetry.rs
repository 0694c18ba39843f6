//! Logs with `tracing`: readable text by default, JSON (one object per line) when asked; and, when
//! an OpenTelemetry collector is named (`OTEL_EXPORTER_OTLP_ENDPOINT`), traces over OTLP/HTTP.
//!
//! The spans sent are Switchboard's own: `request` (method, path, request id, the person's id),
//! `run` (person, chat, answer), `llm_call` (provider, model) and `tool_call` (server, tool, call
//! id), each under the one that caused it. They carry ids, never secrets, message text or tool
//! arguments; the log lines in them are not sent. `RUST_LOG` filters the logs only: traces always
//! have those spans.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Level;
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{ConfigError, LogFormat};

/// What [`init`] set up that must be finished at exit: the traces not yet sent.
#[derive(Default)]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Sends the traces still waiting (within the exporter's timeout), then stops exporting.
    pub fn shutdown(&self) {
        if let Some(traces) = &self.traces
            && let Err(e) = traces.shutdown()
        {
            eprintln!("switchboard: the last traces could not be sent: {e}");
        }
    }

    /// Sends the traces waiting now (tests read them right after).
    pub fn flush(&self) {
        if let Some(traces) = &self.traces {
            let _ = traces.force_flush();
        }
    }
}

/// The exporter and the provider that batches spans to it, for the collector at `endpoint`
/// (its base: `/v1/traces` is added). Headers (`OTEL_EXPORTER_OTLP_HEADERS`) and the service's
/// name (`OTEL_SERVICE_NAME`, by default `switchboard`) are read by OpenTelemetry itself.
fn traces_to(endpoint: &str) -> Result<SdkTracerProvider, ConfigError> {
    // The exporter's client (reqwest 0.13, as the MCP client's) uses the workspace's one TLS
    // provider, ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .build()
        .map_err(|e| ConfigError::Traces(e.to_string()))?;
    let service = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "switchboard".into());
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service)
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    env!("CARGO_PKG_VERSION"),
                ))
                .build(),
        )
        .build())
}

/// Starts the logs (and the traces, with `otlp_endpoint`). Nothing happens when a subscriber is
/// set already (a test harness's).
pub fn init(
    format: LogFormat,
    filter: &str,
    otlp_endpoint: Option<&str>,
) -> Result<Telemetry, ConfigError> {
    let filter = EnvFilter::try_new(filter).map_err(|e| ConfigError::LogFilter(e.to_string()))?;
    let traces = otlp_endpoint
        .filter(|e| !e.trim().is_empty())
        .map(traces_to)
        .transpose()?;
    // Switchboard's own spans, whatever the log filter says; not the log lines in them, whose
    // words (a provider's error, an address) are not checked for what they carry.
    let ours = Targets::new()
        .with_target("server", Level::INFO)
        .with_target("domain", Level::INFO)
        .with_target("app", Level::INFO)
        .and(filter_fn(|meta| meta.is_span()));
    let otel = traces.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("switchboard"))
            .with_filter(ours)
    });
    let logs = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::stdout().is_terminal())
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed(),
    };
    // Already initialised (a test harness did it): keep that one.
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init();
    if traces.is_some() {
        // (Not the address: it may carry credentials.)
        tracing::info!("sending traces over OTLP");
    }
    Ok(Telemetry { traces })
}

//! Health checks for load balancers and orchestrators.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use domain::Database;
use domain::mcp::Mcp;
use domain::runs::Runs;
use http::StatusCode;
use serde_json::{Value, json};

/// How long `/readyz` waits for the database before it calls it unreachable.
const READY_TIMEOUT: Duration = Duration::from_secs(3);

/// `GET /healthz`: the process is alive and serving. Touches nothing else, so a slow database
/// never gets a healthy instance restarted.
pub async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the database answers and every migration is applied, 503 otherwise,
/// with the reason. It also tells how many other instances on the database this one hears of,
/// and, as detail (an instance is ready whatever they do), the model providers marked down and
/// the registry tool servers whose connections fail on this instance.
pub async fn readyz(
    State(db): State<Database>,
    State(runs): State<Runs>,
    State(mcp): State<Mcp>,
) -> (StatusCode, Json<Value>) {
    match tokio::time::timeout(READY_TIMEOUT, db.readiness()).await {
        Ok(Ok(readiness)) if readiness.is_ready() => (
            StatusCode::OK,
            Json(json!({
                "status": "ready",
                "database": "ok",
                "instance_id": readiness.instance_id,
                "migrations": { "applied": readiness.migrations_applied, "expected": readiness.migrations_expected },
                "other_instances": runs.other_instances(),
                "providers_down": runs.llm().down(),
                "tool_servers_failing": mcp.failing_registry_servers(),
            })),
        ),
        Ok(Ok(readiness)) => not_ready(
            format!(
                "{} of {} database migrations applied",
                readiness.migrations_applied, readiness.migrations_expected
            ),
            json!({ "applied": readiness.migrations_applied, "expected": readiness.migrations_expected }),
        ),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            not_ready("database unreachable".into(), Value::Null)
        }
        Err(_) => not_ready(
            format!("database did not answer within {READY_TIMEOUT:?}"),
            Value::Null,
        ),
    }
}

fn not_ready(reason: String, migrations: Value) -> (StatusCode, Json<Value>) {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "status": "not ready", "reason": reason, "migrations": migrations })),
    )
}

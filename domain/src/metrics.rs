//! What the domain counts for operators (Prometheus, served by the server at `/metrics`): model
//! calls (time to the first token, duration, tokens, failures, by provider and model), and tool
//! calls (by outcome) and decisions (by who made them), and refusals for people's limits. One set for the process, as instances
//! are processes; the server registers it beside its own.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// A model of a provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub provider: String,
    pub model: String,
}

/// A model of a provider, and how its call ended (`ok`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelOutcome {
    pub provider: String,
    pub model: String,
    pub outcome: &'static str,
}

/// A model's tokens, `input` or `output`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub provider: String,
    pub model: String,
    pub kind: &'static str,
}

/// How a tool call ended: `ok`, `error` (the tool's, or not reaching it), `interrupted`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallOutcome {
    pub outcome: &'static str,
}

/// A decision on a tool call: `approve` or `reject`, by `person` or `policy`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub decision: &'static str,
    pub by: &'static str,
}

/// Why a send was refused: `rate` or `budget`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub limit: &'static str,
}

type Timings = Family<ModelLabels, Histogram, fn() -> Histogram>;

/// Seconds, from 50 ms to about 7 minutes.
fn seconds() -> Histogram {
    Histogram::new(exponential_buckets(0.05, 2.0, 14))
}

/// The domain's metrics.
pub struct Metrics {
    pub llm_calls: Family<ModelOutcome, Counter>,
    pub llm_first_token: Timings,
    pub llm_duration: Timings,
    pub llm_tokens: Family<TokenLabels, Counter>,
    pub tool_calls: Family<CallOutcome, Counter>,
    pub tool_decisions: Family<DecisionLabels, Counter>,
    pub refusals: Family<RefusalLabels, Counter>,
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    llm_calls: Family::default(),
    llm_first_token: Family::new_with_constructor(seconds),
    llm_duration: Family::new_with_constructor(seconds),
    llm_tokens: Family::default(),
    tool_calls: Family::default(),
    tool_decisions: Family::default(),
    refusals: Family::default(),
});

impl Metrics {
    /// Adds these metrics to `registry` (under the `switchboard_` prefix it has).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "llm_calls",
            "Model calls, by provider, model and outcome (ok, error)",
            self.llm_calls.clone(),
        );
        registry.register(
            "llm_first_token_seconds",
            "Time from asking a model to its first token",
            self.llm_first_token.clone(),
        );
        registry.register(
            "llm_duration_seconds",
            "Time a model call took, to its last token",
            self.llm_duration.clone(),
        );
        registry.register(
            "llm_tokens",
            "Tokens models read (input) and wrote (output), as their providers counted them",
            self.llm_tokens.clone(),
        );
        registry.register(
            "tool_calls",
            "Tool calls that ended, by outcome (ok, error, interrupted)",
            self.tool_calls.clone(),
        );
        registry.register(
            "tool_decisions",
            "Decisions on tool calls, by decision (approve, reject) and who made them (person, policy)",
            self.tool_decisions.clone(),
        );
        registry.register(
            "limit_refusals",
            "Sends and model calls refused for a person's limit, by limit (rate, budget)",
            self.refusals.clone(),
        );
    }

    /// Counts a refusal for a person's `limit` (`rate` or `budget`).
    pub fn refused(&self, limit: &'static str) {
        self.refusals.get_or_create(&RefusalLabels { limit }).inc();
    }

    /// Counts one model call of `provider`'s `model`: its times and tokens when it answered.
    pub fn model_call(
        &self,
        provider: &str,
        model: &str,
        first_token: Option<Duration>,
        took: Duration,
        tokens: Option<(u32, u32)>,
        ok: bool,
    ) {
        let labels = ModelLabels {
            provider: provider.to_owned(),
            model: model.to_owned(),
        };
        self.llm_calls
            .get_or_create(&ModelOutcome {
                provider: provider.to_owned(),
                model: model.to_owned(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
        if !ok {
            return;
        }
        if let Some(first) = first_token {
            self.llm_first_token
                .get_or_create(&labels)
                .observe(first.as_secs_f64());
        }
        self.llm_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        if let Some((input, output)) = tokens {
            for (kind, count) in [("input", input), ("output", output)] {
                self.llm_tokens
                    .get_or_create(&TokenLabels {
                        provider: provider.to_owned(),
                        model: model.to_owned(),
                        kind,
                    })
                    .inc_by(u64::from(count));
            }
        }
    }
}

/// Answers being written and answers waiting for their person, now (of every instance on the
/// database), and how long the oldest has waited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Answers {
    pub streaming: i64,
    pub waiting: i64,
    pub oldest_wait_seconds: f64,
}

/// [`Answers`], read from the database.
pub async fn answers(db: &crate::Database) -> crate::Result<Answers> {
    let row = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE status = 'streaming') AS "streaming!",
                  count(*) FILTER (WHERE status = 'waiting') AS "waiting!",
                  coalesce(extract(epoch FROM now() - min(updated_at) FILTER (WHERE status = 'waiting')), 0)::float8 AS "oldest!"
           FROM messages WHERE status IN ('streaming', 'waiting')"#
    )
    .fetch_one(db.pool())
    .await?;
    Ok(Answers {
        streaming: row.streaming,
        waiting: row.waiting,
        oldest_wait_seconds: row.oldest,
    })
}

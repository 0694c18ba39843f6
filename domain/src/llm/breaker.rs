//! A circuit breaker per provider: a provider whose requests keep failing before their answer
//! starts (down, 5xx, 429 or overloaded after the retries) is marked down for a cool-off, so that
//! its requests fail at once, saying so (and an alias's next model answers instead); after the
//! cool-off one request tries it again, and an answer closes the circuit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Failures in a row that open a provider's circuit.
pub const FAILURES_TO_OPEN: u32 = 3;

#[derive(Clone, Debug, Default)]
pub struct Breaker {
    cool_off: Duration,
    states: Arc<Mutex<HashMap<String, State>>>,
}

#[derive(Clone, Copy, Debug, Default)]
struct State {
    failures: u32,
    /// Down until then.
    open_until: Option<Instant>,
}

impl Breaker {
    pub fn new(cool_off: Duration) -> Self {
        Self {
            cool_off,
            states: Arc::default(),
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, State>> {
        self.states
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `provider` stays down, when it is; once its cool-off is over, one request may
    /// try it (the next failure opens it again at once).
    pub fn down_for(&self, provider: &str) -> Option<Duration> {
        let mut states = self.states();
        let state = states.get_mut(provider)?;
        let until = state.open_until?;
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            // Half-open: this request tries it; one more failure opens it again.
            state.open_until = None;
            state.failures = FAILURES_TO_OPEN - 1;
            return None;
        }
        Some(left)
    }

    /// The providers down now.
    pub fn down(&self) -> Vec<String> {
        let now = Instant::now();
        self.states()
            .iter()
            .filter(|(_, s)| s.open_until.is_some_and(|u| u > now))
            .map(|(id, _)| id.clone())
            .collect()
    }

    pub fn succeeded(&self, provider: &str) {
        self.states().remove(provider);
    }

    pub fn failed(&self, provider: &str) {
        let mut states = self.states();
        let state = states.entry(provider.to_owned()).or_default();
        state.failures += 1;
        if state.failures >= FAILURES_TO_OPEN {
            state.open_until = Some(Instant::now() + self.cool_off);
            tracing::warn!(
                provider,
                seconds = self.cool_off.as_secs(),
                "a model provider kept failing: marked down for its cool-off"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_failures_in_a_row_open_it_until_the_cool_off_ends() {
        let breaker = Breaker::new(Duration::from_millis(50));
        breaker.failed("p");
        breaker.failed("p");
        breaker.succeeded("p");
        breaker.failed("p");
        breaker.failed("p");
        assert_eq!(breaker.down_for("p"), None, "a success in between resets");
        breaker.failed("p");
        assert!(breaker.down_for("p").is_some());
        assert_eq!(breaker.down(), ["p"]);
        assert_eq!(breaker.down_for("other"), None);
        std::thread::sleep(Duration::from_millis(60));
        // Half-open: one try; its failure opens it again at once.
        assert_eq!(breaker.down_for("p"), None);
        breaker.failed("p");
        assert!(breaker.down_for("p").is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(breaker.down_for("p"), None);
        breaker.succeeded("p");
        breaker.failed("p");
        assert_eq!(breaker.down_for("p"), None, "closed again");
    }
}

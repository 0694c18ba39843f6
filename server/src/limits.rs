//! How much one person may ask of an instance: requests per second, with bursts (over that, `429`
//! with `Retry-After`), and event streams open at once. A person is their user id once signed in,
//! their address before (an IPv6 address by its /64, which one client holds whole). An address
//! whose requests keep failing to sign in (made-up tokens, stale session cookies) is refused for a
//! while before anything is looked up for it.
//!
//! The rate limit is governor's keyed GCRA limiter in a middleware of our own rather than
//! tower_governor's layer, so that it can key by the person the sign-in gate found and leave static
//! files and health checks alone.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use domain::users::User;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use http::{HeaderValue, StatusCode, header};
use uuid::Uuid;

use crate::AppState;
use crate::auth::middleware::{api_error, is_infrastructure};

/// Who a request counts against.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Asker {
    Person(Uuid),
    Address(IpAddr),
    /// Served without a peer address (in-process tests).
    Unknown,
}

/// The request rate each person is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateSettings {
    pub per_second: u32,
    pub burst: u32,
}

pub struct RateLimit {
    limiter: DefaultKeyedRateLimiter<Asker>,
    settings: RateSettings,
    /// Failed sign-ins by address, at five times the rate (many people may share an address
    /// behind a proxy, and a stale cookie is no attack).
    failures: DefaultKeyedRateLimiter<Asker>,
    /// Addresses refused until then, for having failed too often.
    blocked: Mutex<HashMap<Asker, Instant>>,
}

impl RateLimit {
    /// None when `per_second` is 0 (no limit).
    pub fn new(settings: RateSettings) -> Option<Arc<Self>> {
        let per_second = NonZeroU32::new(settings.per_second)?;
        let burst = NonZeroU32::new(settings.burst.max(settings.per_second))?;
        let quota = Quota::per_second(per_second).allow_burst(burst);
        let five_times = |n: NonZeroU32| n.saturating_mul(NonZeroU32::new(5).expect("not zero"));
        let failures = Quota::per_second(five_times(per_second)).allow_burst(five_times(burst));
        let limit = Arc::new(Self {
            limiter: DefaultKeyedRateLimiter::keyed(quota),
            settings,
            failures: DefaultKeyedRateLimiter::keyed(failures),
            blocked: Mutex::default(),
        });
        // Forgets the people who have not asked lately, while the limit is in use.
        let weak = Arc::downgrade(&limit);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(60));
            loop {
                tick.tick().await;
                let Some(limit) = weak.upgrade() else { return };
                limit.limiter.retain_recent();
                limit.limiter.shrink_to_fit();
                limit.failures.retain_recent();
                limit.failures.shrink_to_fit();
                let now = Instant::now();
                limit
                    .blocked
                    .lock()
                    .expect("not poisoned")
                    .retain(|_, until| *until > now);
            }
        });
        Some(limit)
    }

    /// How long `asker` must wait, if they have asked too much.
    fn wait(&self, asker: &Asker) -> Option<Duration> {
        self.limiter
            .check_key(asker)
            .err()
            .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// How long the address must wait before anything is looked up for it, if it has failed to
    /// sign in too often.
    pub fn blocked(&self, address: &Asker) -> Option<Duration> {
        let blocked = self.blocked.lock().expect("not poisoned");
        let until = blocked.get(address)?;
        until.checked_duration_since(Instant::now())
    }

    /// Counts a request from `address` that failed to sign in; over the rate, the address is
    /// refused until the rate allows it again.
    pub fn failed(&self, address: Asker) {
        if let Err(not_until) = self.failures.check_key(&address) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            self.blocked
                .lock()
                .expect("not poisoned")
                .insert(address, Instant::now() + wait);
        }
    }

    pub fn settings(&self) -> RateSettings {
        self.settings
    }
}

/// The address a request counts against when nobody is signed in: its peer's, an IPv6 one by its
/// /64.
pub fn address_of(request: &Request) -> Asker {
    let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() else {
        return Asker::Unknown;
    };
    Asker::Address(match peer.ip() {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                IpAddr::V6(Ipv6Addr::new(a, b, c, d, 0, 0, 0, 0))
            }
        },
        v4 => v4,
    })
}

/// The answer to a request over its rate: `429` with `Retry-After`, JSON for the API.
pub fn too_many(settings: RateSettings, wait: Duration, api: bool) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let RateSettings { per_second, burst } = settings;
    let message = format!(
        "Too many requests at once: Switchboard takes {per_second} a second from each person (bursts of up to {burst}). Wait {seconds} s, then try again."
    );
    let mut response = if api {
        api_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", &message)
    } else {
        crate::error_page(StatusCode::TOO_MANY_REQUESTS, "Slow down", &message)
    };
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

/// Refuses a request over its person's rate with `429`, saying how long to wait.
pub async fn rate_limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let Some(limit) = &state.rate_limit else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    if is_infrastructure(path) {
        return next.run(request).await;
    }
    let asker = match request.extensions().get::<User>() {
        Some(user) => Asker::Person(user.id),
        None => address_of(&request),
    };
    let Some(wait) = limit.wait(&asker) else {
        return next.run(request).await;
    };
    tracing::info!(?asker, path, "request over the rate limit");
    too_many(limit.settings(), wait, path.starts_with("/api/"))
}

/// The event streams each person has open on this instance.
#[derive(Default)]
pub struct OpenStreams {
    most: usize,
    open: Mutex<HashMap<Uuid, usize>>,
}

/// One open stream, counted until dropped.
pub struct StreamSlot {
    streams: Arc<OpenStreams>,
    user: Uuid,
}

impl OpenStreams {
    pub fn new(most: usize) -> Arc<Self> {
        Arc::new(Self {
            most,
            open: Mutex::default(),
        })
    }

    pub fn most(&self) -> usize {
        self.most
    }

    /// Every person's open streams on this instance.
    pub fn total(&self) -> usize {
        self.open.lock().expect("not poisoned").values().sum()
    }

    /// A slot for one more of `user`'s streams, unless they have the most open already.
    pub fn open(self: &Arc<Self>, user: Uuid) -> Option<StreamSlot> {
        let mut open = self.open.lock().expect("not poisoned");
        let count = open.entry(user).or_default();
        if *count >= self.most {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: self.clone(),
            user,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("not poisoned");
        if let Some(count) = open.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_and_then_the_rate_holds() {
        let limit = RateLimit::new(RateSettings {
            per_second: 10,
            burst: 20,
        })
        .unwrap();
        let alice = Asker::Person(Uuid::new_v4());
        let bob = Asker::Person(Uuid::new_v4());
        let passed = (0..100).filter(|_| limit.wait(&alice).is_none()).count();
        assert!((20..=22).contains(&passed), "{passed} of 100 passed");
        let wait = limit.wait(&alice).expect("over the rate");
        assert!(wait <= Duration::from_millis(100), "{wait:?}");
        assert!(limit.wait(&bob).is_none(), "each person has their own");
        assert!(
            RateLimit::new(RateSettings {
                per_second: 0,
                burst: 10
            })
            .is_none()
        );
    }

    #[tokio::test]
    async fn an_address_that_keeps_failing_to_sign_in_is_refused_for_a_while() {
        let limit = RateLimit::new(RateSettings {
            per_second: 10,
            burst: 20,
        })
        .unwrap();
        let flooder = Asker::Address("203.0.113.7".parse().unwrap());
        // Five times the person's rate: 100 at once, then 50 a second.
        let mut failures = 0;
        while limit.blocked(&flooder).is_none() {
            limit.failed(flooder.clone());
            failures += 1;
            assert!(failures <= 110, "never refused");
        }
        assert!(failures > 100, "{failures}");
        let wait = limit.blocked(&flooder).expect("refused");
        assert!(wait <= Duration::from_millis(20), "{wait:?}");
        let other = Asker::Address("203.0.113.8".parse().unwrap());
        assert!(limit.blocked(&other).is_none());
    }

    #[test]
    fn an_ipv6_client_counts_as_its_whole_64() {
        let request = |ip: &str| {
            let mut request = http::Request::new(axum::body::Body::empty());
            request
                .extensions_mut()
                .insert(ConnectInfo(SocketAddr::new(ip.parse().unwrap(), 1234)));
            address_of(&request)
        };
        assert_eq!(
            request("2001:db8:1:2:aaaa::1"),
            request("2001:db8:1:2:bbbb:cccc:dddd:eeee")
        );
        assert_ne!(request("2001:db8:1:2::1"), request("2001:db8:1:3::1"));
        assert_eq!(request("::ffff:192.0.2.1"), request("192.0.2.1"));
    }

    #[test]
    fn streams_are_counted_per_person_until_they_close() {
        let streams = OpenStreams::new(2);
        let (alice, bob) = (Uuid::new_v4(), Uuid::new_v4());
        let first = streams.open(alice).unwrap();
        let _second = streams.open(alice).unwrap();
        assert!(streams.open(alice).is_none());
        assert!(streams.open(bob).is_some());
        drop(first);
        assert!(streams.open(alice).is_some());
    }
}

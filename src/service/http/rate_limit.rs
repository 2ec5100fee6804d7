//! Per-source budgets: unauthenticated sign-in traffic and failed
//! authentications, counted by client address (an IPv6 client by its /64,
//! which is what one subscriber holds).
//!
//! Each budget is a token bucket per source: `burst` tokens, refilled at
//! `per_second`. Budgets are per replica (several replicas behind a balancer
//! give a source that many budgets), and bounded in memory: when more than
//! `MAX_SOURCES` sources are tracked, the full buckets (sources that have been
//! quiet long enough to be owed nothing) are forgotten, and all of them if
//! that is not enough.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Sources tracked per budget before quiet ones are forgotten.
const MAX_SOURCES: usize = 100_000;

/// One budget: a rate and how much of it may be spent at once. A zero rate
/// turns the budget off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    pub per_second: f64,
    pub burst: f64,
}

impl Budget {
    pub const fn per_second(per_second: f64, burst: f64) -> Self {
        Self { per_second, burst }
    }

    pub const fn per_minute(per_minute: f64, burst: f64) -> Self {
        Self {
            per_second: per_minute / 60.0,
            burst,
        }
    }

    pub const OFF: Budget = Budget {
        per_second: 0.0,
        burst: 0.0,
    };

    fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// The budgets of a service (`--rate-limit-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// Requests to the unauthenticated sign-in endpoints (start, discover,
    /// callbacks, ACS, metadata).
    pub signin: Budget,
    /// Failed SCIM-token and admin-token authentications; once spent, the
    /// source's credentials are not even checked until it refills.
    pub credential_failures: Budget,
    /// Session checks with a cookie or key that is not (or no longer) valid.
    /// Generous: a product's backend checks on behalf of every browser.
    pub session_failures: Budget,
}

impl Default for Budgets {
    fn default() -> Self {
        Self {
            signin: Budget::per_second(20.0, 200.0),
            credential_failures: Budget::per_minute(30.0, 30.0),
            session_failures: Budget::per_second(50.0, 500.0),
        }
    }
}

impl Budgets {
    /// Every budget off (benchmarks that drive one source hard).
    pub fn off() -> Self {
        Self {
            signin: Budget::OFF,
            credential_failures: Budget::OFF,
            session_failures: Budget::OFF,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// The source a budget is kept for.
fn source(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// One budget's buckets.
pub struct SourceLimiter {
    budget: Budget,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

impl SourceLimiter {
    pub fn new(budget: Budget) -> Self {
        Self {
            budget,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` when the source has nothing left; takes nothing.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.spend(ip, 0.0, Instant::now())
    }

    /// Takes one token; `Err(wait)` when there was none to take.
    pub fn take(&self, ip: IpAddr) -> Result<(), Duration> {
        self.spend(ip, 1.0, Instant::now())
    }

    fn spend(&self, ip: IpAddr, cost: f64, now: Instant) -> Result<(), Duration> {
        if self.budget.is_off() {
            return Ok(());
        }
        let Budget { per_second, burst } = self.budget;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // A source that never spent has a full bucket: checking it needs none.
        if cost == 0.0 && !buckets.contains_key(&source(ip)) {
            return Ok(());
        }
        if buckets.len() >= MAX_SOURCES {
            buckets.retain(|_, b| {
                b.tokens + now.duration_since(b.at).as_secs_f64() * per_second < burst
            });
            // A spray of fresh sources leaves nothing full: start over rather
            // than grow (a source that sprays can reset its own budget either
            // way; the bound is on memory).
            if buckets.len() >= MAX_SOURCES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(source(ip)).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let refilled =
            (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second).min(burst);
        bucket.at = now;
        // `check` (cost 0) asks for a whole token, as a spend would.
        if refilled < cost.max(1.0) {
            bucket.tokens = refilled;
            let wait = (cost.max(1.0) - refilled) / per_second;
            return Err(Duration::from_secs_f64(wait.max(0.001)));
        }
        bucket.tokens = refilled - cost;
        Ok(())
    }
}

/// The service's limiters.
pub struct RateLimits {
    pub signin: SourceLimiter,
    pub credentials: SourceLimiter,
    pub sessions: SourceLimiter,
}

impl RateLimits {
    pub fn new(budgets: &Budgets) -> Self {
        Self {
            signin: SourceLimiter::new(budgets.signin),
            credentials: SourceLimiter::new(budgets.credential_failures),
            sessions: SourceLimiter::new(budgets.session_failures),
        }
    }
}

/// `Retry-After` seconds for a wait (at least one).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_source_spends_its_burst_then_waits_for_the_refill() {
        let limiter = SourceLimiter::new(Budget::per_second(2.0, 3.0));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(limiter.spend(ip, 1.0, t0).is_ok());
        }
        let wait = limiter.spend(ip, 1.0, t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(500) && wait > Duration::ZERO,
            "{wait:?}"
        );
        assert!(
            limiter.spend(ip, 0.0, t0).is_err(),
            "check sees the empty bucket"
        );
        assert!(
            limiter
                .spend(ip, 1.0, t0 + Duration::from_millis(600))
                .is_ok()
        );
        // Another source has its own budget.
        assert!(limiter.spend("192.0.2.8".parse().unwrap(), 1.0, t0).is_ok());
    }

    #[test]
    fn ipv6_sources_share_their_64_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        assert_eq!(source(a), source(b));
        assert_ne!(source(a), source("2001:db8:1:3::1".parse().unwrap()));
        assert_eq!(
            source("::ffff:192.0.2.1".parse().unwrap()),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn memory_stays_bounded_under_a_spray_of_sources() {
        let limiter = SourceLimiter::new(Budget::per_second(1.0, 1.0));
        let t0 = Instant::now();
        for i in 0..(MAX_SOURCES as u32 + 10) {
            let ip = IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            let _ = limiter.spend(ip, 1.0, t0 + Duration::from_secs(5));
        }
        let tracked = limiter.buckets.lock().unwrap().len();
        assert!(tracked <= MAX_SOURCES, "{tracked}");
        assert!(
            SourceLimiter::new(Budget::OFF)
                .take("192.0.2.1".parse().unwrap())
                .is_ok()
        );
    }
}

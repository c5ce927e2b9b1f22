//! Per-peer rate limiting: one token bucket per client address.
//!
//! Invariants:
//! - The key is the connection's peer address (IPv6 by its /64, since one
//!   host usually owns a whole /64); forwarded headers (`X-Forwarded-For`,
//!   `X-Real-IP`) are never read, so a client cannot pick its own key.
//!   Unix-socket clients get one bucket per uid (SO_PEERCRED).
//! - Memory is bounded: at most `MAX_PEERS` buckets. When full, buckets
//!   that have refilled completely are dropped (they carry no state worth
//!   keeping); if none has, the least recently used one is.
//! - Owned by one server's I/O thread: no lock. The clock is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::http::Peer;

/// Most peers remembered at once.
const MAX_PEERS: usize = 4096;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

#[derive(Debug)]
pub struct RateLimit {
    /// Tokens added per second.
    rate: f64,
    /// Bucket size.
    burst: f64,
    buckets: HashMap<Peer, Bucket>,
}

impl RateLimit {
    /// `rate` requests per second on average, `burst` at once. `None` when
    /// `rate` is 0 (limiting off).
    pub fn new(rate: u32, burst: u32) -> Option<RateLimit> {
        (rate > 0).then(|| RateLimit {
            rate: f64::from(rate),
            burst: f64::from(burst.max(1)),
            buckets: HashMap::new(),
        })
    }

    /// Take a token for `peer`, or say how long until one is available.
    pub fn check(&mut self, peer: Peer, now: Instant) -> Result<(), Duration> {
        let key = key(peer);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_PEERS {
            self.make_room(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // Positive and finite (tokens < 1, rate >= 1); the fallback
            // only guards the conversion.
            Err(Duration::try_from_secs_f64((1.0 - b.tokens) / rate)
                .unwrap_or(Duration::from_secs(1)))
        }
    }

    fn make_room(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let refill = now.saturating_duration_since(b.last).as_secs_f64() * rate;
            b.tokens + refill < burst
        });
        if self.buckets.len() >= MAX_PEERS {
            if let Some(oldest) = self
                .buckets
                .iter()
                .min_by_key(|(_, b)| b.last)
                .map(|(k, _)| *k)
            {
                self.buckets.remove(&oldest);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// The bucket `peer` counts in (also what connection eviction groups by).
pub(super) fn key(peer: Peer) -> Peer {
    match peer {
        Peer::Ip(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => Peer::Ip(IpAddr::V4(v4)),
            None => {
                let mut seg = v6.segments();
                seg[4..].fill(0);
                Peer::Ip(IpAddr::V6(seg.into()))
            }
        },
        // One bucket per user, not per client process.
        Peer::Unix(uid, _) => Peer::Unix(uid, 0),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Peer {
        Peer::Ip(s.parse().unwrap())
    }

    #[test]
    fn zero_rate_is_off() {
        assert!(RateLimit::new(0, 10).is_none());
    }

    #[test]
    fn burst_then_refill() {
        let mut rl = RateLimit::new(2, 3).unwrap();
        let t = Instant::now();
        let a = ip("10.0.0.1");
        for _ in 0..3 {
            assert!(rl.check(a, t).is_ok());
        }
        let wait = rl.check(a, t).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Another peer has its own bucket.
        assert!(rl.check(ip("10.0.0.2"), t).is_ok());
        // Half a second refills one token at 2/s.
        assert!(rl.check(a, t + Duration::from_millis(500)).is_ok());
        assert!(rl.check(a, t + Duration::from_millis(500)).is_err());
        // Never more than the burst.
        let later = t + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(rl.check(a, later).is_ok());
        }
        assert!(rl.check(a, later).is_err());
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_and_mapped_v4_as_v4() {
        let mut rl = RateLimit::new(1, 1).unwrap();
        let t = Instant::now();
        assert!(rl.check(ip("2001:db8::1"), t).is_ok());
        assert!(rl.check(ip("2001:db8::2:3"), t).is_err());
        assert!(rl.check(ip("2001:db8:0:1::1"), t).is_ok());
        assert!(rl.check(ip("192.0.2.1"), t).is_ok());
        assert!(rl.check(ip("::ffff:192.0.2.1"), t).is_err());
        assert!(rl.check(Peer::Unix(0, 1), t).is_ok());
        assert!(rl.check(Peer::Unix(0, 2), t).is_err());
    }

    #[test]
    fn memory_is_bounded() {
        let mut rl = RateLimit::new(1, 5).unwrap();
        let t = Instant::now();
        for i in 0..(MAX_PEERS as u32 + 100) {
            let peer = Peer::Ip(IpAddr::V4(i.into()));
            assert!(rl.check(peer, t).is_ok());
            assert!(rl.len() <= MAX_PEERS);
        }
        // Full buckets are dropped first once time has passed.
        let later = t + Duration::from_secs(10);
        assert!(rl.check(ip("203.0.113.9"), later).is_ok());
        assert!(rl.len() <= 2, "{}", rl.len());
    }
}

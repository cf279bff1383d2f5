//! Rate limits on signups, in memory (governor's GCRA), checked before any
//! database write or mail:
//!
//! - per client IP (IPv6 per /64: one customer usually has a whole /64),
//! - per address from any IP (the key is a digest, never the address).
//!
//! A limit hit answers 429 with `Retry-After`. The per-address limit on
//! *mails* (resend interval, daily cap) lives in the database, in
//! `subscriptions::signup`, so it holds across restarts too.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::digest;

use crate::config::{LimitsConfig, RateSpec};
use crate::domain::EmailKey;

/// The signup rate limiters.
pub struct SignupLimits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_address: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    clock: DefaultClock,
}

fn limiter<K: Clone + std::hash::Hash + Eq>(spec: RateSpec) -> Option<DefaultKeyedRateLimiter<K>> {
    match spec {
        RateSpec::Off => None,
        RateSpec::Limit { count, per } => {
            let count = NonZeroU32::new(count).expect("config refuses 0");
            let period = per.approx() / count.get();
            let quota = Quota::with_period(period.max(Duration::from_nanos(1))).expect("period > 0").allow_burst(count);
            Some(RateLimiter::keyed(quota))
        }
    }
}

/// IPv6 clients are limited per /64; IPv4 per address.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::V6(segments.into())
        }
        v4 => v4,
    }
}

/// The digest of the address's inbox (`EmailKey::inbox`): `anna+1@…`,
/// `anna+2@…` and Gmail's dot spellings share one limit.
fn address_key(email_key: &EmailKey) -> [u8; 16] {
    let d = digest::digest(&digest::SHA256, email_key.inbox().as_str().as_bytes());
    d.as_ref()[..16].try_into().expect("16 bytes")
}

impl SignupLimits {
    pub fn new(config: &LimitsConfig) -> SignupLimits {
        SignupLimits {
            per_ip: limiter(config.signups_per_ip),
            per_address: limiter(config.signups_per_address),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(retry_after)` when this IP has used up its signups.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check(self.per_ip.as_ref(), &ip_key(ip))
    }

    /// `Err(retry_after)` when this address, in any spelling of its inbox,
    /// was submitted too often.
    pub fn check_address(&self, email_key: &EmailKey) -> Result<(), Duration> {
        self.check(self.per_address.as_ref(), &address_key(email_key))
    }

    fn check<K: Clone + std::hash::Hash + Eq>(
        &self,
        limiter: Option<&DefaultKeyedRateLimiter<K>>,
        key: &K,
    ) -> Result<(), Duration> {
        match limiter.map(|l| l.check_key(key)) {
            None | Some(Ok(())) => Ok(()),
            Some(Err(not_until)) => Err(not_until.wait_time_from(self.clock.now())),
        }
    }

    /// Forgets keys whose limit has fully refilled, so memory stays bounded
    /// by the clients of the last window.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.per_address {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(ip: &str, address: &str) -> SignupLimits {
        let config = LimitsConfig {
            signups_per_ip: ip.parse().unwrap(),
            signups_per_address: address.parse().unwrap(),
            ..LimitsConfig::default()
        };
        SignupLimits::new(&config)
    }

    #[test]
    fn an_ip_gets_its_burst_then_waits() {
        let l = limits("3/1h", "off");
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(l.check_ip(ip).is_ok());
        }
        let wait = l.check_ip(ip).unwrap_err();
        assert!(wait > Duration::from_secs(1000) && wait <= Duration::from_secs(1200), "{wait:?}");
        assert!(l.check_ip("192.0.2.2".parse().unwrap()).is_ok(), "other IPs are not affected");
    }

    #[test]
    fn ipv6_is_limited_per_64() {
        let l = limits("1/1h", "off");
        assert!(l.check_ip("2001:db8:1:2::1".parse().unwrap()).is_ok());
        assert!(l.check_ip("2001:db8:1:2:ffff::9".parse().unwrap()).is_err(), "same /64");
        assert!(l.check_ip("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn addresses_are_limited_in_every_spelling_and_off_means_off() {
        let l = limits("off", "2/1h");
        let key = |address: &str| crate::domain::Email::parse(address).unwrap().key().clone();
        assert!(l.check_address(&key("a@bücher.de")).is_ok());
        assert!(l.check_address(&key("A@BÜCHER.DE")).is_ok());
        assert!(l.check_address(&key("a@xn--bcher-kva.de")).is_err(), "one address, one limit");
        assert!(l.check_address(&key("b@bücher.de")).is_ok());
        for _ in 0..100 {
            assert!(l.check_ip("192.0.2.1".parse().unwrap()).is_ok());
        }
    }
}

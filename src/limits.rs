//! Rate limits on signups, in memory (governor's GCRA), checked before any
//! database write or mail:
//!
//! - per client network: IPv4 per /32 and per /24, IPv6 per /64, /56 and
//!   /48, all at once (see [`IPV4_LEVELS`], [`IPV6_LEVELS`]),
//! - per inbox from any IP (the key is a digest, never the address).
//!
//! A limit hit answers 429 with `Retry-After`. The per-address limit on
//! *mails* (resend interval, daily cap) lives in the database, in
//! `subscriptions::signup`, so it holds across restarts too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::digest;

use crate::config::{LimitsConfig, RateSpec};
use crate::domain::EmailKey;

/// The IPv4 networks a client is limited in, narrowest first: (prefix
/// length, multiple of `signups_per_ip`). One address is one client (or one
/// NAT); a /24 is typically one organisation or one hosting subnet, which
/// an attacker could otherwise walk for 256 fresh limits. Four times one
/// address's quota leaves room for a few busy NATs in one /24.
pub const IPV4_LEVELS: &[(u8, u32)] = &[(32, 1), (24, 4)];

/// The IPv6 networks a client is limited in, narrowest first. A /64 is one
/// link; providers give one customer a /56 or a /48 (RIPE-690), so without
/// the wider levels one customer had 256 or 65,536 fresh limits. Each wider
/// level allows four times the one below it: a site with several networks
/// keeps room, a walk through a /48 gets 16 times one /64's quota instead
/// of 65,536 times.
pub const IPV6_LEVELS: &[(u8, u32)] = &[(64, 1), (56, 4), (48, 16)];

/// The signup rate limiters.
pub struct SignupLimits {
    /// Empty when `signups_per_ip` is off.
    per_ip: Vec<NetworkLimit>,
    per_address: Option<DefaultKeyedRateLimiter<[u8; 16]>>,
    clock: DefaultClock,
}

/// The limit on one prefix length, keyed by the network's address.
struct NetworkLimit {
    ipv6: bool,
    prefix: u8,
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

/// `spec` with its count multiplied by `multiple`, as a keyed limiter;
/// `None` when off.
fn limiter<K: Clone + std::hash::Hash + Eq>(spec: RateSpec, multiple: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    match spec {
        RateSpec::Off => None,
        RateSpec::Limit { count, per } => {
            let count = NonZeroU32::new(count.saturating_mul(multiple)).expect("config refuses 0");
            let period = per.approx() / count.get();
            let quota = Quota::with_period(period.max(Duration::from_nanos(1))).expect("period > 0").allow_burst(count);
            Some(RateLimiter::keyed(quota))
        }
    }
}

fn network_limits(spec: RateSpec) -> Vec<NetworkLimit> {
    let v4 = IPV4_LEVELS.iter().map(|level| (false, level));
    let v6 = IPV6_LEVELS.iter().map(|level| (true, level));
    v4.chain(v6)
        .filter_map(|(ipv6, &(prefix, multiple))| {
            Some(NetworkLimit { ipv6, prefix, limiter: limiter(spec, multiple)? })
        })
        .collect()
}

/// The network of `prefix` bits that `ip` is in, as an address.
fn network(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
        }
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
            per_ip: network_limits(config.signups_per_ip),
            per_address: limiter(config.signups_per_address, 1),
            clock: DefaultClock::default(),
        }
    }

    /// `Err(retry_after)` when this IP, or a network it is in, has used up
    /// its signups: a request passes only if every level has room.
    ///
    /// Narrowest first, stopping at the first refusal: a request refused
    /// for its own address or /64 takes nothing from the wider networks, so
    /// one client hammering away cannot use up its neighbours' share.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        let ip = ip.to_canonical();
        for level in self.per_ip.iter().filter(|l| l.ipv6 == ip.is_ipv6()) {
            self.check(Some(&level.limiter), &network(ip, level.prefix))?;
        }
        Ok(())
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
        for l in &self.per_ip {
            l.limiter.retain_recent();
            l.limiter.shrink_to_fit();
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
    fn a_48_walked_64_by_64_gets_16_times_one_64s_quota_not_65536_times() {
        let l = limits("2/1h", "off");
        let passed =
            (0..=u16::MAX).filter(|n| l.check_ip(format!("2001:db8:1:{n:x}::1").parse().unwrap()).is_ok()).count();
        assert_eq!(passed, 32, "16 × 2 for the whole /48");
        assert!(l.check_ip("2001:db8:2::1".parse().unwrap()).is_ok(), "another /48 is not affected");
        // One /56 alone gets 4 × 2, whichever of its /64s ask.
        let l = limits("2/1h", "off");
        let passed =
            (0..=255u8).filter(|n| l.check_ip(format!("2001:db8:1:{n:x}::1").parse().unwrap()).is_ok()).count();
        assert_eq!(passed, 8);
    }

    #[test]
    fn a_24_walked_address_by_address_gets_4_times_one_addresss_quota() {
        let l = limits("2/1h", "off");
        // One address hammering: refused at its own level, it takes nothing from its /24.
        for _ in 0..100 {
            let _ = l.check_ip("192.0.2.1".parse().unwrap());
        }
        let passed = (2..=255u8).filter(|n| l.check_ip(format!("192.0.2.{n}").parse().unwrap()).is_ok()).count();
        assert_eq!(passed, 6, "8 for the /24, 2 of them used by 192.0.2.1");
        assert!(l.check_ip("192.0.3.1".parse().unwrap()).is_ok(), "another /24 is not affected");
        assert!(l.check_ip("::ffff:192.0.2.99".parse().unwrap()).is_err(), "IPv4-mapped is IPv4");
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

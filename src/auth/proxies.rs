//! Which peers may speak for the client (`X-Forwarded-For`, `X-Forwarded-Proto`): the proxies
//! in `AUDITTRAIL_TRUSTED_PROXIES`, as single addresses or networks (`172.16.0.0/12`).

use std::net::IpAddr;
use std::str::FromStr;

/// An address or a network of trusted proxies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            // An IPv4 client seen through an IPv6 socket.
            (IpAddr::V4(_), IpAddr::V6(v6)) => v6
                .to_ipv4_mapped()
                .is_some_and(|v4| self.contains(IpAddr::V4(v4))),
            _ => false,
        }
    }
}

impl FromStr for ProxyNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("`{s}` is not an IP address or network (e.g. 10.0.0.1 or 172.16.0.0/12)");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(ProxyNet { addr, prefix })
    }
}

/// Whether `ip` is one of `proxies`.
pub fn trusted(proxies: &[ProxyNet], ip: IpAddr) -> bool {
    proxies.iter().any(|p| p.contains(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_networks() {
        let nets: Vec<ProxyNet> = ["10.0.0.7", "172.16.0.0/12", "fd00::/8"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        for (ip, ok) in [
            ("10.0.0.7", true),
            ("10.0.0.8", false),
            ("172.20.1.2", true),
            ("172.32.0.1", false),
            ("fd12::1", true),
            ("::ffff:172.17.0.1", true),
            ("8.8.8.8", false),
        ] {
            assert_eq!(trusted(&nets, ip.parse().unwrap()), ok, "{ip}");
        }
        assert!("10.0.0.0/33".parse::<ProxyNet>().is_err());
        assert!("nginx".parse::<ProxyNet>().is_err());
        assert!(trusted(
            &["0.0.0.0/0".parse().unwrap()],
            "1.2.3.4".parse().unwrap()
        ));
    }
}

//! Which addresses a fetch of an input may reach: a URL list written by someone else must not
//! make this tool read a cloud metadata service (credentials at 169.254.169.254) or, with
//! `--public-only`, anything on the machine's own or private networks.
//!
//! The check is on the resolved address of every connection, redirects included: the fetch
//! client resolves names through [`PolicyResolver`], which drops refused addresses (so a name
//! that resolves, or rebinds, to a refused address cannot be connected to), and URLs that name
//! an IP address directly are checked before the request and at every redirect. Model backends
//! use their own client without this policy (a local server on 127.0.0.1 is the common case).
//! With an HTTP proxy (`HTTP_PROXY`), the proxy resolves names, so only IP-literal URLs are
//! checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// `--public-only` / `--allow-private`; the default refuses metadata services only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Refuse link-local IPv4 (169.254.0.0/16) and AWS's IPv6 metadata address.
    #[default]
    NoMetadata,
    /// Also refuse loopback, private, link-local, unique-local, shared (CGNAT) and unspecified
    /// addresses: for CI jobs over contributed lists.
    PublicOnly,
    /// Refuse nothing (`--allow-private`).
    AllowAll,
}

impl Policy {
    /// Why `ip` is refused, or `None` when it may be reached.
    pub fn refuses(self, ip: IpAddr) -> Option<&'static str> {
        let ip = canonical(ip);
        match self {
            Policy::AllowAll => None,
            _ if is_metadata(ip) => Some("a cloud metadata address"),
            Policy::PublicOnly => not_public(ip),
            Policy::NoMetadata => None,
        }
    }

    /// The flag that lifts a refusal, for the error message.
    fn lift(self) -> &'static str {
        "--allow-private"
    }
}

/// IPv4-mapped IPv6 (`::ffff:169.254.169.254`) is checked as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

fn is_metadata(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
    }
}

fn not_public(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("a shared (CGNAT) address")
            } else if o[0] == 0 || v4 == Ipv4Addr::BROADCAST || v4.is_multicast() {
                Some("a non-unicast address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() || v6.is_multicast() {
                Some("a non-unicast address")
            } else if s[0] & 0xfe00 == 0xfc00 {
                Some("a unique-local (private) address")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else {
                None
            }
        }
    }
}

/// A refused connection, found in a reqwest error's source chain by `fetch::classify`.
#[derive(Debug)]
pub struct Blocked {
    pub message: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Blocked {}

impl Blocked {
    pub fn new(host: &str, ip: IpAddr, reason: &str, policy: Policy) -> Blocked {
        let named = if host.trim_matches(['[', ']']) == ip.to_string() {
            String::new()
        } else {
            format!("{host} resolves to ")
        };
        Blocked {
            message: format!(
                "refused: {named}{ip}, {reason}; {} lifts this",
                policy.lift()
            ),
        }
    }
}

/// The refusal for a URL that names an IP address directly, if refused.
pub fn check_literal(url: &url::Url, policy: Policy) -> Option<Blocked> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    let reason = policy.refuses(ip)?;
    Some(Blocked::new(
        url.host_str().unwrap_or(""),
        ip,
        reason,
        policy,
    ))
}

/// The fetch client's resolver: the system's answer, less the refused addresses.
pub struct PolicyResolver {
    pub policy: Policy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = addrs
                .iter()
                .filter(|a| policy.refuses(a.ip()).is_none())
                .copied()
                .collect();
            if allowed.is_empty() {
                if let Some(first) = addrs.first() {
                    let reason = policy.refuses(first.ip()).unwrap_or("refused");
                    return Err(Box::new(Blocked::new(&host, first.ip(), reason, policy))
                        as Box<dyn std::error::Error + Send + Sync>);
                }
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn metadata_is_refused_by_default_and_private_only_when_asked() {
        for meta in [
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "::ffff:169.254.169.254",
        ] {
            assert!(Policy::NoMetadata.refuses(ip(meta)).is_some(), "{meta}");
            assert!(Policy::PublicOnly.refuses(ip(meta)).is_some(), "{meta}");
            assert!(Policy::AllowAll.refuses(ip(meta)).is_none(), "{meta}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd12::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "::",
        ] {
            assert!(
                Policy::NoMetadata.refuses(ip(private)).is_none(),
                "{private}"
            );
            assert!(
                Policy::PublicOnly.refuses(ip(private)).is_some(),
                "{private}"
            );
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            assert!(Policy::PublicOnly.refuses(ip(public)).is_none(), "{public}");
        }
    }

    #[test]
    fn literal_urls_are_checked() {
        let url = |s: &str| url::Url::parse(s).unwrap();
        assert!(
            check_literal(&url("http://169.254.169.254/latest/"), Policy::NoMetadata).is_some()
        );
        assert!(check_literal(&url("http://[fd00:ec2::254]/"), Policy::NoMetadata).is_some());
        assert!(check_literal(&url("http://127.0.0.1:8080/"), Policy::NoMetadata).is_none());
        assert!(check_literal(&url("http://127.0.0.1:8080/"), Policy::PublicOnly).is_some());
        assert!(check_literal(&url("http://example.com/"), Policy::PublicOnly).is_none());
        let m = check_literal(&url("http://169.254.169.254/"), Policy::NoMetadata)
            .unwrap()
            .to_string();
        assert!(
            m.contains("metadata") && m.contains("--allow-private"),
            "{m}"
        );
    }
}

//! Where a personal tool server may point. A person's own server is reached from inside the
//! deployment, so its address must not lead into it: loopback, link-local (cloud metadata at
//! 169.254.169.254 among them), private, shared (CGNAT), unspecified, multicast, broadcast,
//! documentation and IETF-reserved addresses are refused unless an administrator allows a network,
//! and so are IPv6 forms that carry such an IPv4 address inside (mapped, compatible, 6to4, NAT64)
//! or lead to networks of their own (site-local, local-use NAT64, Teredo). The check is made on the
//! addresses the host name resolves to at connect time, and the connection then goes to exactly
//! those addresses, so a name that resolves elsewhere a moment later (DNS rebinding) gains nothing.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use ipnet::IpNet;
use url::Url;

/// Networks an administrator allows personal servers to reach despite the rules above.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AddressPolicy {
    pub allowed: Vec<IpNet>,
}

impl AddressPolicy {
    /// Parses `10.0.0.0/8,127.0.0.1/32,fd00::/8` (a bare address is one host).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = item
                .parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("'{item}' is not a network (10.0.0.0/8) or an address"))?;
            allowed.push(net);
        }
        Ok(Self { allowed })
    }

    /// Why `ip` may not be reached, if it may not.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        let ip = canonical(ip);
        if self.allowed.iter().any(|net| net.contains(&ip)) {
            return None;
        }
        special(ip)
    }

    /// Checks a personal server's URL: its scheme, its host, and every address the host resolves
    /// to. Returns the host name and those addresses (to connect to them and nothing else), or a
    /// message for the person.
    pub async fn check(&self, url: &str) -> Result<(Option<String>, Vec<SocketAddr>), String> {
        let url = Url::parse(url).map_err(|e| format!("'{url}' is not a valid URL ({e})."))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("The server's URL must start with http:// or https://.".into());
        }
        let port = url.port_or_known_default().unwrap_or(443);
        let (name, addresses): (Option<String>, Vec<SocketAddr>) = match url.host() {
            None => return Err("The server's URL has no host.".into()),
            Some(url::Host::Ipv4(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Ipv6(ip)) => (None, vec![SocketAddr::new(ip.into(), port)]),
            Some(url::Host::Domain(name)) => {
                let found: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                    .await
                    .map_err(|e| format!("The host name '{name}' does not resolve ({e})."))?
                    .collect();
                if found.is_empty() {
                    return Err(format!("The host name '{name}' has no address."));
                }
                (Some(name.to_owned()), found)
            }
        };
        for address in &addresses {
            if let Some(why) = self.refusal(address.ip()) {
                let host = url.host_str().unwrap_or_default();
                // Which internal address a name has is itself worth knowing to an attacker: only
                // the kind of address is told.
                return Err(format!(
                    "{host} {} {why}: a personal server may not point there. Ask an administrator to allow that network (SWITCHBOARD_MCP_ALLOWED_NETWORKS) or to add the server to the registry.",
                    if name.is_some() { "leads to" } else { "is" }
                ));
            }
        }
        Ok((name, addresses))
    }
}

/// IPv4 written as IPv6 (`::ffff:127.0.0.1`) is checked as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn special(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_link_local() {
        Some("a link-local address, where cloud metadata services answer")
    } else if ip.is_private() {
        Some("a private address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a shared (carrier-grade NAT) address")
    } else if ip.is_unspecified() || a == 0 {
        Some("an unspecified address")
    } else if ip.is_multicast() || ip.is_broadcast() || a >= 240 {
        Some("a multicast, broadcast or reserved address")
    } else if ip.is_documentation() || (a == 198 && (b == 18 || b == 19)) {
        Some("a documentation or benchmarking address")
    } else if a == 192 && b == 0 && c == 0 {
        // 192.0.0.0/24: IETF protocol assignments (the dummy 192.0.0.8, NAT64 discovery, ...).
        Some("an IETF protocol address")
    } else {
        None
    }
}

/// The IPv4 address in the last 32 bits of `ip`.
fn last_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., c, d] = ip.segments();
    Ipv4Addr::new((c >> 8) as u8, c as u8, (d >> 8) as u8, d as u8)
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() {
        Some("an unspecified address")
    } else if s[..6] == [0; 6] {
        // IPv4-compatible (::a.b.c.d, deprecated): what it carries, and refused even when public,
        // as no public server is reached that way.
        Some(special_v4(last_v4(ip)).unwrap_or("an IPv4-compatible address (deprecated)"))
    } else if ip.is_unicast_link_local() {
        Some("a link-local address")
    } else if s[0] & 0xffc0 == 0xfec0 {
        Some("a site-local address")
    } else if ip.is_unique_local() {
        Some("a private (unique local) address, where some cloud metadata services answer")
    } else if ip.is_multicast() {
        Some("a multicast address")
    } else if s[0] == 0x2001 && s[1] == 0x0db8 {
        Some("a documentation address")
    } else if s[0] == 0x2001 && s[1] == 0 {
        // Teredo: a tunnel whose far end is an IPv4 address of its own choosing.
        Some("a Teredo tunnel address")
    } else if s[0] == 0x2002 {
        // 6to4: the IPv4 address in bits 16 to 48 decides.
        special_v4(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else if s[0] == 0x0064 && s[1] == 0xff9b {
        if s[2..6] == [0; 4] {
            // NAT64's well-known prefix: the IPv4 address inside decides.
            special_v4(last_v4(ip))
        } else {
            // Local-use NAT64 (64:ff9b:1::/48): translated inside some operator's own network.
            Some("a local-use NAT64 address")
        }
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &AddressPolicy, ip: &str) -> bool {
        policy.refusal(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn internal_addresses_are_refused_and_public_ones_allowed() {
        let policy = AddressPolicy::default();
        for ip in [
            "127.0.0.1",
            "127.8.9.10",
            "169.254.169.254",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "100.100.100.200",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(refused(&policy, ip), "{ip} must be refused");
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!refused(&policy, ip), "{ip} is public");
        }
    }

    #[test]
    fn ipv6_forms_that_carry_or_reach_internal_addresses_are_refused() {
        let policy = AddressPolicy::default();
        for (ip, why) in [
            // IPv4-compatible, deprecated: what it carries, else refused as such.
            ("::127.0.0.1", "loopback"),
            ("::10.0.0.1", "private"),
            ("::169.254.169.254", "link-local"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("fec0::1", "site-local"),
            ("feff:ffff::1", "site-local"),
            // 6to4 with a private IPv4 inside.
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:c0a8:0101::1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b:1::808:808", "local-use NAT64"),
            ("64:ff9b:1:ffff::1", "local-use NAT64"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
            ("192.0.0.8", "IETF"),
            ("192.0.0.170", "IETF"),
            ("::ffff:192.0.0.8", "IETF"),
        ] {
            let refusal = policy.refusal(ip.parse().unwrap());
            assert!(
                refusal.is_some_and(|r| r.contains(why)),
                "{ip}: {refusal:?}"
            );
        }
        for ip in [
            "2002:808:808::1",
            "64:ff9b::808:808",
            "192.0.1.1",
            "2001:4860::8888",
        ] {
            assert!(!refused(&policy, ip), "{ip} is public");
        }
    }

    #[test]
    fn an_administrator_can_allow_a_network() {
        let policy = AddressPolicy::parse("10.0.0.0/8, 127.0.0.1").unwrap();
        assert!(!refused(&policy, "10.20.30.40"));
        assert!(!refused(&policy, "127.0.0.1"));
        assert!(refused(&policy, "127.0.0.2"));
        assert!(refused(&policy, "192.168.0.1"));
        assert!(AddressPolicy::parse("ten/8").unwrap_err().contains("ten/8"));
    }

    #[tokio::test]
    async fn a_url_is_checked_on_the_addresses_its_name_resolves_to() {
        let policy = AddressPolicy::default();
        let error = policy.check("http://localhost:9/mcp").await.unwrap_err();
        assert!(error.contains("loopback"), "{error}");
        // Where an internal name leads is not told, only what kind of address it is.
        assert!(
            !error.contains("127.0.0.1") && !error.contains("::1"),
            "{error}"
        );
        let error = policy
            .check("http://[::127.0.0.1]:8080/mcp")
            .await
            .unwrap_err();
        assert!(error.contains("loopback"), "{error}");
        let error = policy.check("http://192.0.0.8/mcp").await.unwrap_err();
        assert!(error.contains("IETF"), "{error}");
        let error = policy.check("http://[2002:7f00:1::]/").await.unwrap_err();
        assert!(error.contains("loopback"), "{error}");
        let error = policy.check("http://[fec0::1]/").await.unwrap_err();
        assert!(error.contains("site-local"), "{error}");
        let error = policy
            .check("http://169.254.169.254/latest/meta-data")
            .await
            .unwrap_err();
        assert!(error.contains("link-local"), "{error}");
        let error = policy.check("http://[::1]:8080/mcp").await.unwrap_err();
        assert!(error.contains("loopback"), "{error}");
        let error = policy.check("file:///etc/passwd").await.unwrap_err();
        assert!(error.contains("http://"), "{error}");
        let allowed = AddressPolicy::parse("127.0.0.0/8,::1").unwrap();
        let (name, addresses) = allowed.check("http://localhost:9/mcp").await.unwrap();
        assert_eq!(name.as_deref(), Some("localhost"));
        assert!(
            addresses
                .iter()
                .all(|a| a.port() == 9 && a.ip().is_loopback())
        );
    }
}

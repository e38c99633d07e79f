//! Address blocks (CIDR) for source allow-lists: `10.0.0.0/8`, `::1/128`, or one address.
use std::net::IpAddr;

/// An address block, e.g. `10.0.0.0/8` or `::1/128`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    bits: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .parse()
            .map_err(|_| format!("'{s}' is not an address block (a.b.c.d/n or an IPv6 /n)"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("'{s}': the prefix length must be 0 to {max}"))?,
        };
        Ok(Self { net, bits })
    }

    /// A list separated by commas and/or spaces; `name` (the setting) leads every error. An
    /// empty list is an error: it would refuse everyone, which is never what was meant.
    pub fn parse_list(name: &str, text: &str) -> Result<Vec<Self>, String> {
        let list = text
            .split([',', ' '])
            .filter(|s| !s.trim().is_empty())
            .map(|s| Self::parse(s).map_err(|e| format!("{name}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        if list.is_empty() {
            return Err(format!("{name} is set but lists no address block"));
        }
        Ok(list)
    }

    /// Whether every address of the block is a loopback address (within 127.0.0.0/8, `::1`,
    /// or 127.0.0.0/8 mapped into IPv6).
    pub fn is_loopback_only(&self) -> bool {
        match self.net {
            IpAddr::V4(n) => self.bits >= 8 && n.is_loopback(),
            IpAddr::V6(n) => match n.to_ipv4_mapped() {
                Some(v4) => self.bits >= 104 && v4.is_loopback(),
                None => self.bits == 128 && n.is_loopback(),
            },
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.bits)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.bits))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_blocks() {
        for s in [
            "127.0.0.1",
            "127.0.0.0/8",
            "127.5.0.0/16",
            "::1",
            "::ffff:127.0.0.1/128",
        ] {
            assert!(Cidr::parse(s).unwrap().is_loopback_only(), "{s}");
        }
        for s in [
            "0.0.0.0/0",
            "126.0.0.0/7",
            "10.0.0.1",
            "::/0",
            "::1/127",
            "::ffff:0:0/96",
        ] {
            assert!(!Cidr::parse(s).unwrap().is_loopback_only(), "{s}");
        }
    }

    #[test]
    fn cidr_blocks() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.200.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains("127.0.0.1".parse().unwrap()));
        assert!(!one.contains("127.0.0.2".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(
            Cidr::parse("::1/128")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in ["10.0.0.0/33", "x/8", "10.0.0/8", ""] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        let l = Cidr::parse_list("X", "10.0.0.0/8, 127.0.0.1 ::1").unwrap();
        assert_eq!(l.len(), 3);
        let e = Cidr::parse_list("X_ALLOW", "10.0.0.0/8,localhost").unwrap_err();
        assert!(
            e.starts_with("X_ALLOW: ") && e.contains("not an address block"),
            "{e}"
        );
        assert!(Cidr::parse_list("X", " , ").is_err());
    }
}

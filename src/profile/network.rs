//! `[network]`: one IPv4 interface the init configures.

use std::net::Ipv4Addr;

use super::spanned::Spanned;

use super::{Ctx, ProfileError};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(super) struct RawNetwork {
    #[serde(default)]
    pub interface: Option<Spanned<String>>,
    pub address: Spanned<String>,
    #[serde(default)]
    pub gateway: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub interface: String,
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub gateway: Option<Ipv4Addr>,
}

/// `[network]`.
pub(super) fn validate_network(cx: &Ctx, n: RawNetwork) -> Result<Network, ProfileError> {
    let interface = match n.interface {
        Some(i) => {
            let s = i.get_ref();
            if s.is_empty() || s.len() > 15 || s.contains(['/', ' ', '\0']) {
                return Err(cx.at(
                    i.span(),
                    "network.interface",
                    format!("{s:?} is not an interface name"),
                ));
            }
            i.into_inner()
        }
        None => "eth0".to_owned(),
    };
    let bad_addr = || {
        cx.at(
            n.address.span(),
            "network.address",
            "must be an IPv4 address with a prefix length, e.g. \"10.0.2.15/24\"",
        )
    };
    let (addr, prefix) = n.address.get_ref().split_once('/').ok_or_else(bad_addr)?;
    let address: Ipv4Addr = addr.parse().map_err(|_| bad_addr())?;
    let prefix_len: u8 = prefix
        .parse()
        .ok()
        .filter(|&p| p <= 32)
        .ok_or_else(bad_addr)?;
    let gateway = n
        .gateway
        .map(|g| {
            g.get_ref().parse::<Ipv4Addr>().map_err(|_| {
                cx.at(
                    g.span(),
                    "network.gateway",
                    "must be an IPv4 address, e.g. \"10.0.2.2\"",
                )
            })
        })
        .transpose()?;
    Ok(Network {
        interface,
        address,
        prefix_len,
        gateway,
    })
}

#[cfg(test)]
mod tests {
    use crate::profile::tests::{Fixture, BASE};

    #[test]
    fn the_address_has_a_prefix_length() {
        let f = Fixture::new();
        let e = f.err(&format!("{BASE}[network]\naddress = \"10.0.2.15\"\n"));
        assert!(e.contains("network.address"), "{e}");
    }
}

//! Who a request comes from: the peer address, or behind a trusted proxy the
//! address that proxy says it forwarded for.
//!
//! `X-Forwarded-For` is read right to left and the first address that is not a
//! trusted proxy is the client: a proxy appends the address it saw, so what a
//! client wrote into the header itself (to the left) is never believed. With no
//! trusted proxies (`--trusted-proxies`, the default) the header is ignored.

use std::net::IpAddr;

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, request::Parts},
};
use ipnet::IpNet;

/// The peers whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(pub Vec<IpNet>);

impl TrustedProxies {
    pub fn parse(ranges: &[String]) -> Result<Self, String> {
        ranges
            .iter()
            .map(|r| {
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{r:?} is not a CIDR range or an address"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request from `peer` with `headers`.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer.to_canonical();
        }
        let mut client = peer.to_canonical();
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .rev()
            .flat_map(|v| v.to_str().unwrap_or("").rsplit(','));
        for hop in hops {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                // Garbage in the chain: stop at the last hop a proxy vouched for.
                break;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                break;
            }
        }
        client
    }
}

/// The client address of a request, as `server::admit` found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // Set for every request by the middleware; a router used without it
        // (unit tests) sees the unspecified address.
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::from([0, 0, 0, 0]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap();
        let ingress: IpAddr = "10.1.2.3".parse().unwrap();
        let outsider: IpAddr = "198.51.100.9".parse().unwrap();
        let h = headers(&["203.0.113.5"]);
        assert_eq!(
            trusted.client(ingress, &h),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            trusted.client(outsider, &h),
            outsider,
            "an untrusted peer's header is ignored"
        );
        // A client that writes its own header: the proxy appends what it saw.
        let spoofed = headers(&["1.2.3.4, 203.0.113.5"]);
        assert_eq!(
            trusted.client(ingress, &spoofed),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        // Two proxies in the cluster, then the client.
        let chain = headers(&["203.0.113.5, 10.9.9.9"]);
        assert_eq!(
            trusted.client(ingress, &chain),
            "203.0.113.5".parse::<IpAddr>().unwrap()
        );
        assert_eq!(trusted.client(ingress, &headers(&["nonsense"])), ingress);
        assert_eq!(TrustedProxies::default().client(ingress, &h), ingress);
        assert!(TrustedProxies::parse(&["x".into()]).is_err());
    }
}

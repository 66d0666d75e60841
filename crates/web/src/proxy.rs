//! The client's address behind a load balancer: `Forwarded` or
//! `X-Forwarded-For` are believed only from the proxies the configuration
//! trusts (`trusted_proxies`), so visits, geolocation and per-address limits
//! see the visitor, not the balancer, and nobody else can pick an address.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::AppState;

/// Puts the client's address in the request's `ConnectInfo`, where every
/// handler and layer after this one reads it.
pub(crate) async fn client_address(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<SocketAddr>>().copied()
        && let Some(ip) = forwarded_client(&state.web.trusted_proxies, peer.ip(), req.headers())
    {
        req.extensions_mut().insert(ConnectInfo(SocketAddr::new(ip, peer.port())));
    }
    next.run(req).await
}

/// The client behind `peer` when `peer` is a trusted proxy: walking the
/// forwarded chain from the nearest hop, the first address that is not a
/// trusted proxy (the leftmost one when all are). `Forwarded` wins over
/// `X-Forwarded-For`; a chain with anything that is not an address is not
/// believed at all.
pub fn forwarded_client(trusted: &[IpNet], peer: IpAddr, headers: &HeaderMap) -> Option<IpAddr> {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return None;
    }
    let chain = forwarded_for(headers).or_else(|| x_forwarded_for(headers))?;
    chain.iter().rev().find(|ip| !is_trusted(ip)).or(chain.first()).copied()
}

/// The `for=` addresses of `Forwarded` headers, in order.
fn forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let values: Vec<&str> = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() {
        return None;
    }
    let mut out = Vec::new();
    for element in values.iter().flat_map(|v| v.split(',')) {
        let node = element
            .split(';')
            .find_map(|pair| pair.trim().strip_prefix("for=").or_else(|| pair.trim().strip_prefix("For=")))?;
        let node = node.trim_matches('"');
        // `[2001:db8::1]:4711`, `192.0.2.60:8080` or a bare address.
        let host = match node.strip_prefix('[') {
            Some(rest) => rest.split(']').next()?,
            None if node.matches(':').count() == 1 => node.split(':').next()?,
            None => node,
        };
        out.push(host.parse().ok()?);
    }
    (!out.is_empty()).then_some(out)
}

/// The addresses of `X-Forwarded-For` headers, in order.
fn x_forwarded_for(headers: &HeaderMap) -> Option<Vec<IpAddr>> {
    let values: Vec<&str> = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).collect();
    if values.is_empty() {
        return None;
    }
    values.iter().flat_map(|v| v.split(',')).map(|a| a.trim().parse().ok()).collect::<Option<Vec<IpAddr>>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, v.parse().expect("value"));
        }
        h
    }

    #[test]
    fn the_client_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("net"), "127.0.0.1/32".parse().expect("net")];
        let lb: IpAddr = "10.1.2.3".parse().expect("ip");
        let client = |h: &HeaderMap, peer: IpAddr| forwarded_client(&trusted, peer, h).map(|i| i.to_string());
        // From the balancer: the address it saw.
        assert_eq!(client(&headers(&[("x-forwarded-for", "203.0.113.7")]), lb).as_deref(), Some("203.0.113.7"));
        // A spoofed first entry is passed over: the nearest untrusted hop counts.
        let spoofed = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.7, 10.9.9.9")]);
        assert_eq!(client(&spoofed, lb).as_deref(), Some("203.0.113.7"));
        assert_eq!(
            client(&headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.5")]), lb).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(client(&headers(&[("forwarded", "for=192.0.2.60:8080")]), lb).as_deref(), Some("192.0.2.60"));
        // From anyone else, or a chain that is not addresses: not believed.
        let direct: IpAddr = "198.51.100.9".parse().expect("ip");
        assert_eq!(client(&headers(&[("x-forwarded-for", "203.0.113.7")]), direct), None);
        assert_eq!(client(&headers(&[("x-forwarded-for", "evil, 203.0.113.7")]), lb), None);
        assert_eq!(client(&headers(&[("forwarded", "for=unknown")]), lb), None);
        assert_eq!(client(&HeaderMap::new(), lb), None);
    }
}

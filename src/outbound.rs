//! Every HTTP request idsync makes to a URL that someone else chose: OIDC
//! discovery, JWKS, token and userinfo endpoints and SAML metadata (chosen by
//! resource authors and IdPs), and the admin API the operator and `idsync
//! admin` call. One guarded client for all of them:
//!
//! - redirects are never followed: an IdP that moved is a configuration
//!   change, and a redirect is how an allowed URL reaches a forbidden one;
//! - answers are read incrementally and capped ([`BodyLimit`]);
//! - link-local and cloud-metadata addresses are refused after DNS resolution
//!   (and as literals), unless an operator allows a range explicitly; private
//!   ranges stay reachable, since on-premises IdPs live there;
//! - failures are a [`FetchError`]: the host and a class, never a remote body
//!   or a low-level error chain (those told whoever reads a status which ports
//!   answer on the operator's network).
//!
//! Environment proxies are not used: the guard must see the address it
//! connects to.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use bytes::{Bytes, BytesMut};
use ipnet::IpNet;
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use serde::de::DeserializeOwned;

/// How much of an answer is read before giving up on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLimit {
    /// Discovery documents, JWKS, token and userinfo answers.
    Json,
    /// SAML metadata (aggregates with many certificates stay under it).
    Metadata,
    /// Admin API answers (whole lists of a workspace's objects).
    AdminApi,
}

impl BodyLimit {
    pub fn bytes(self) -> usize {
        match self {
            BodyLimit::Json => 1024 * 1024,
            BodyLimit::Metadata => 10 * 1024 * 1024,
            BodyLimit::AdminApi => 64 * 1024 * 1024,
        }
    }
}

/// Addresses no configuration should make idsync connect to: link-local (where
/// cloud metadata services live) and the metadata endpoints outside it.
const REFUSED_RANGES: &[&str] = &[
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
];

/// Which addresses outbound requests may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// Ranges exempt from the refusal (`--outbound-allow`).
    pub allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    /// Parses `--outbound-allow` values (CIDRs or single addresses).
    pub fn with_allowed(ranges: &[String]) -> Result<Self, String> {
        let allowed = ranges
            .iter()
            .map(|r| {
                r.parse::<IpNet>()
                    .or_else(|_| r.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{r:?} is not a CIDR range or an address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { allowed })
    }

    /// Whether a connection to `ip` is allowed.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let refused = REFUSED_RANGES
            .iter()
            .filter_map(|r| r.parse::<IpNet>().ok())
            .any(|net| net.contains(&ip));
        !refused || self.allowed.iter().any(|net| net.contains(&ip))
    }
}

/// What went wrong, in words safe for a status, an event or a sign-in page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureClass {
    InvalidUrl,
    NotHttps,
    AddressRefused,
    Timeout,
    ConnectionRefused,
    Tls,
    Connect,
    RedirectRefused(u16),
    Status(u16),
    TooLarge(usize),
    /// The connection broke while the answer was read.
    Body,
    /// The answer is not the JSON document expected.
    Decode,
}

impl std::fmt::Display for FailureClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FailureClass::InvalidUrl => write!(f, "not a valid http(s) URL"),
            FailureClass::NotHttps => write!(f, "not an https URL (only loopback may use http)"),
            FailureClass::AddressRefused => {
                write!(
                    f,
                    "address refused (link-local or cloud metadata; see --outbound-allow)"
                )
            }
            FailureClass::Timeout => write!(f, "timed out"),
            FailureClass::ConnectionRefused => write!(f, "connection refused"),
            FailureClass::Tls => write!(f, "TLS handshake failed"),
            FailureClass::Connect => write!(f, "could not connect"),
            FailureClass::RedirectRefused(s) => {
                write!(f, "answered a redirect (HTTP {s}), which is not followed")
            }
            FailureClass::Status(s) => write!(f, "answered HTTP {s}"),
            FailureClass::TooLarge(limit) => {
                write!(f, "answer larger than {} KiB", limit / 1024)
            }
            FailureClass::Body => write!(f, "the connection broke while reading the answer"),
            FailureClass::Decode => write!(f, "the answer is not the JSON document expected"),
        }
    }
}

/// A failed outbound request: which host, and a class.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{host}: {class}")]
pub struct FetchError {
    pub host: String,
    pub class: FailureClass,
}

impl FetchError {
    fn new(url: &Url, class: FailureClass) -> Self {
        Self {
            host: host_of(url),
            class,
        }
    }

    /// Worth retrying: the other side may be back or less busy soon.
    pub fn is_transient(&self) -> bool {
        match self.class {
            FailureClass::Timeout
            | FailureClass::ConnectionRefused
            | FailureClass::Connect
            | FailureClass::Body => true,
            FailureClass::Status(s) => s >= 500 || s == 429,
            _ => false,
        }
    }
}

fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => "(no host)".to_string(),
    }
}

/// Whether a URL points at this machine (where plain http is acceptable).
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses a URL an IdP document named, requiring https except on loopback.
pub fn https_url(s: &str) -> Result<Url, FetchError> {
    let url = Url::parse(s).map_err(|_| FetchError {
        host: "(invalid URL)".into(),
        class: FailureClass::InvalidUrl,
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        _ => Err(FetchError::new(&url, FailureClass::NotHttps)),
    }
}

/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Extra settings of one client.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub connect_timeout: Duration,
    /// The whole request, answer included.
    pub timeout: Duration,
    /// PEM certificates to trust besides the system's.
    pub ca_bundle: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(10),
            ca_bundle: None,
        }
    }
}

/// The error a resolution that found only refused addresses ends with.
#[derive(Debug, thiserror::Error)]
#[error("every address of this name is refused by the outbound policy")]
struct RefusedAddress;

/// System DNS, with refused addresses dropped from every answer.
struct GuardedResolver {
    policy: Arc<OutboundPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(RefusedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(permitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The guarded HTTP client. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Guarded {
    http: reqwest::Client,
    policy: Arc<OutboundPolicy>,
}

impl std::fmt::Debug for Guarded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guarded")
            .field("policy", &self.policy)
            .finish()
    }
}

impl Guarded {
    pub fn new(policy: OutboundPolicy, options: &ClientOptions) -> Result<Self, String> {
        let policy = Arc::new(policy);
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                policy: policy.clone(),
            }))
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            // Below the idle timeout servers commonly keep (idsync's own is
            // its 10 s header-read timeout), so a pooled connection is not
            // reused just as the server closes it.
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("idsync/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &options.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| format!("caBundle: {e}"))?;
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Self { http, policy })
    }

    /// A client with the default policy and options (tests, tools).
    pub fn with_defaults() -> Self {
        // Building fails only on a broken TLS backend or CA bundle, and the
        // default options have no CA bundle.
        Self::new(OutboundPolicy::default(), &ClientOptions::default())
            .expect("the default client builds")
    }

    /// A request to `url`, refused at once when it is not http(s) or names a
    /// refused address literally (DNS answers are checked by the resolver).
    pub fn request(&self, method: Method, url: &str) -> Result<RequestBuilder, FetchError> {
        Ok(self.request_to(method, self.checked_url(url)?))
    }

    /// A request to a URL [`Self::checked_url`] answered (a sender of many
    /// requests to one URL checks it once).
    pub fn request_to(&self, method: Method, url: Url) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// `url` parsed, if it is http(s) and not to a refused address literally.
    pub fn checked_url(&self, url: &str) -> Result<Url, FetchError> {
        let parsed = Url::parse(url).map_err(|_| FetchError {
            host: "(invalid URL)".into(),
            class: FailureClass::InvalidUrl,
        })?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::new(&parsed, FailureClass::InvalidUrl));
        }
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if literal.is_some_and(|ip| !self.policy.permits(ip)) {
            return Err(FetchError::new(&parsed, FailureClass::AddressRefused));
        }
        Ok(parsed)
    }

    /// Sends a request; a redirect is refused (the client never follows one).
    async fn execute(&self, request: RequestBuilder) -> Result<reqwest::Response, FetchError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|_| FetchError {
            host: "(invalid request)".into(),
            class: FailureClass::InvalidUrl,
        })?;
        let url = request.url().clone();
        let response = client
            .execute(request)
            .await
            .map_err(|e| FetchError::new(&url, classify(&e)))?;
        let status = response.status();
        if status.is_redirection() {
            return Err(FetchError::new(
                &url,
                FailureClass::RedirectRefused(status.as_u16()),
            ));
        }
        Ok(response)
    }

    /// Sends a request and reads its answer up to `limit`, whatever its status
    /// but a redirect (callers that read error answers, such as a token
    /// endpoint's `error` code, get them).
    pub async fn send(
        &self,
        request: RequestBuilder,
        limit: BodyLimit,
    ) -> Result<(StatusCode, Bytes), FetchError> {
        let mut response = self.execute(request).await?;
        let (url, status) = (response.url().clone(), response.status());
        let max = limit.bytes();
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(FetchError::new(&url, FailureClass::TooLarge(max)));
        }
        let mut body = BytesMut::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > max {
                        return Err(FetchError::new(&url, FailureClass::TooLarge(max)));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) => return Err(FetchError::new(&url, classify(&e))),
            }
        }
        Ok((status, body.freeze()))
    }

    /// Sends a request and answers only its status (a webhook receiver's
    /// 2xx counts however large a body it sends). A small answer is read and
    /// dropped, so its connection goes back to the pool: one left unread is
    /// closed, and the next request would pay a new connection (and TLS
    /// handshake). A larger one is cut off there.
    pub async fn status_of(&self, request: RequestBuilder) -> Result<StatusCode, FetchError> {
        const DRAINED: usize = 64 * 1024;
        let mut response = self.execute(request).await?;
        let status = response.status();
        let mut read = 0;
        while read <= DRAINED {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                // The status is the answer; a body cut short changes nothing.
                Ok(None) | Err(_) => break,
            }
        }
        Ok(status)
    }

    /// `GET url`: the answer of a 2xx, else the status as the error.
    pub async fn get(&self, url: &str, limit: BodyLimit) -> Result<Bytes, FetchError> {
        let request = self.request(Method::GET, url)?;
        let (status, body) = self.send(request, limit).await?;
        if !status.is_success() {
            return Err(FetchError {
                host: Url::parse(url).map(|u| host_of(&u)).unwrap_or_default(),
                class: FailureClass::Status(status.as_u16()),
            });
        }
        Ok(body)
    }

    /// `GET url` as a JSON document.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, FetchError> {
        let body = self.get(url, BodyLimit::Json).await?;
        serde_json::from_slice(&body).map_err(|_| FetchError {
            host: Url::parse(url).map(|u| host_of(&u)).unwrap_or_default(),
            class: FailureClass::Decode,
        })
    }
}

/// The class of a reqwest failure, from its error chain.
fn classify(e: &reqwest::Error) -> FailureClass {
    if e.is_timeout() {
        return FailureClass::Timeout;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.downcast_ref::<RefusedAddress>().is_some() {
            return FailureClass::AddressRefused;
        }
        if s.downcast_ref::<rustls::Error>().is_some() {
            return FailureClass::Tls;
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return FailureClass::ConnectionRefused,
                std::io::ErrorKind::TimedOut => return FailureClass::Timeout,
                _ => {}
            }
            if io
                .get_ref()
                .is_some_and(|inner| inner.is::<rustls::Error>())
            {
                return FailureClass::Tls;
            }
        }
        source = s.source();
    }
    if e.is_body() || e.is_decode() {
        FailureClass::Body
    } else {
        FailureClass::Connect
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_and_link_local_addresses_are_refused_unless_allowed() {
        let policy = OutboundPolicy::default();
        for refused in [
            "169.254.169.254",
            "169.254.0.1",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
        ] {
            assert!(!policy.permits(refused.parse().unwrap()), "{refused}");
        }
        for allowed in [
            "127.0.0.1",
            "10.0.0.5",
            "192.168.1.1",
            "172.16.0.1",
            "::1",
            "8.8.8.8",
        ] {
            assert!(policy.permits(allowed.parse().unwrap()), "{allowed}");
        }
        let exempt = OutboundPolicy::with_allowed(&["169.254.10.0/24".into()]).unwrap();
        assert!(exempt.permits("169.254.10.7".parse().unwrap()));
        assert!(!exempt.permits("169.254.169.254".parse().unwrap()));
        assert!(OutboundPolicy::with_allowed(&["not-a-range".into()]).is_err());
    }

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        for ok in [
            "https://idp.example.com/token",
            "http://127.0.0.1:8080/token",
            "http://localhost/jwks",
            "http://[::1]:9/x",
        ] {
            assert!(https_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://idp.example.com/token",
            "ftp://x/y",
            "file:///etc/passwd",
            "nope",
        ] {
            assert!(https_url(refused).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn literal_refused_addresses_fail_before_any_connection() {
        let client = Guarded::with_defaults();
        let e = client
            .get("http://169.254.169.254/latest/meta-data/", BodyLimit::Json)
            .await
            .unwrap_err();
        assert_eq!(e.class, FailureClass::AddressRefused);
        assert_eq!(e.to_string().split(':').next(), Some("169.254.169.254"));
        let e = client
            .get("file:///etc/passwd", BodyLimit::Json)
            .await
            .unwrap_err();
        assert_eq!(e.class, FailureClass::InvalidUrl);
    }

    #[tokio::test]
    async fn names_resolving_only_to_refused_addresses_are_refused() {
        let resolver = GuardedResolver {
            policy: Arc::new(OutboundPolicy::default()),
        };
        use reqwest::dns::Resolve;
        let name: reqwest::dns::Name = "169.254.169.254".parse().unwrap();
        let e = match resolver.resolve(name).await {
            Err(e) => e,
            Ok(_) => panic!("a metadata address resolved"),
        };
        assert!(e.is::<RefusedAddress>(), "{e}");
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let found: Vec<_> = resolver
            .resolve(name)
            .await
            .expect("loopback resolves")
            .collect();
        assert!(!found.is_empty());
    }
}

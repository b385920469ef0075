//! The vocabulary of egress: URL prefixes from the allow-lists, internal networks, and the
//! address guard that the HTTP clients resolve through. It knows nothing of the settings or of
//! clients; [`super::EgressPolicy`] puts them together.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use ipnet::IpNet;
use url::{Host, Url};

/// The error the resolver (or the literal-address check) gives for a host whose every address
/// the guard refuses. The HTTP clients find it in a failed request's error chain
/// ([`refused_in_chain`]) and turn it into their own uniform refusal.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the host resolves only to addresses this service may not reach")]
pub struct AddressRefused;

/// Whether `AddressRefused` is anywhere in an error's chain of causes.
pub fn refused_in_chain(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if e.is::<AddressRefused>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A URL prefix from the configuration: `https://pacs.example.org/dicom-web` admits that base
/// and everything below it (`…/dicom-web/studies/1.2`), but not `…/dicom-web2` nor another
/// host, port or scheme. A port of `*` (`http://127.0.0.1:*/`) admits any port on that host:
/// for development and tests, where peers listen on ports chosen at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlPrefix {
    scheme: String,
    host: String,
    /// `None`: any port.
    port: Option<u16>,
    /// The path without its trailing slash ("" admits every path).
    path: String,
}

impl UrlPrefix {
    pub fn parse(text: &str) -> Result<UrlPrefix, String> {
        let text = text.trim();
        let (scheme_sep, any_port) = match text.find("://") {
            Some(i) => {
                let authority_end = text[i + 3..].find('/').map_or(text.len(), |j| i + 3 + j);
                (i, text[..authority_end].ends_with(":*"))
            }
            None => return Err("must be an absolute http(s) URL".into()),
        };
        let parsed = if any_port {
            let at = text[scheme_sep + 3..].find(":*").map(|j| scheme_sep + 3 + j).unwrap_or(text.len());
            Url::parse(&format!("{}{}", &text[..at], &text[at + 2..]))
        } else {
            Url::parse(text)
        }
        .map_err(|e| format!("is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("scheme must be http or https".into());
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err("must not carry user info (credentials go in dicomweb.credentials)".into());
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err("must not have a query or fragment".into());
        }
        let host = parsed.host_str().ok_or("has no host")?.to_owned();
        Ok(UrlPrefix {
            scheme: parsed.scheme().to_owned(),
            host,
            port: if any_port { None } else { parsed.port_or_known_default() },
            path: parsed.path().trim_end_matches('/').to_owned(),
        })
    }

    /// Whether `url` lies under this prefix.
    pub fn admits(&self, url: &Url) -> bool {
        if url.scheme() != self.scheme || url.host_str() != Some(self.host.as_str()) {
            return false;
        }
        if self.port.is_some_and(|p| url.port_or_known_default() != Some(p)) {
            return false;
        }
        if !url.username().is_empty() || url.password().is_some() {
            return false;
        }
        let path = url.path();
        self.path.is_empty() || path == self.path || path.strip_prefix(&self.path).is_some_and(|rest| rest.starts_with('/'))
    }
}

/// The address ranges a request may not reach unless the site allows them. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AddressGuard {
    allowed: Arc<[IpNet]>,
}

impl AddressGuard {
    /// A guard that lets `allowed` through although those networks are internal.
    pub fn new(allowed: Vec<IpNet>) -> AddressGuard {
        AddressGuard { allowed: allowed.into() }
    }

    /// Whether a request may go to `ip`.
    pub fn admits(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|net| net.contains(&ip)) || !is_internal(ip)
    }

    /// Checks a URL's host if it is an IP literal (names are checked by the resolver).
    pub fn check_literal(&self, url: &Url) -> Result<(), AddressRefused> {
        let ip = match url.host() {
            Some(Host::Ipv4(a)) => IpAddr::V4(a),
            Some(Host::Ipv6(a)) => IpAddr::V6(a),
            Some(Host::Domain(_)) => return Ok(()),
            None => return Err(AddressRefused),
        };
        if self.admits(ip) { Ok(()) } else { Err(AddressRefused) }
    }

    /// An HTTP client builder that resolves through this guard and follows no redirect.
    pub fn http_client(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder().dns_resolver(Arc::new(self.clone())).redirect(reqwest::redirect::Policy::none())
    }
}

impl reqwest::dns::Resolve for AddressGuard {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let admitted: Vec<SocketAddr> = resolved.into_iter().filter(|a| guard.admits(a.ip())).collect();
            if admitted.is_empty() {
                return Err(Box::new(AddressRefused) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(admitted.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Addresses inside a site or a host, or not unicast at all: never reached unless allowed.
fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => is_internal_v4(a),
        IpAddr::V6(a) => {
            if let Some(v4) = a.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let s = a.segments();
            a.is_unspecified()
                || a.is_loopback()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (s[0] & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation 2001:db8::/32
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64 64:ff9b::/96 reaches IPv4 ranges
                || s[..6] == [0; 6] // IPv4-compatible ::a.b.c.d (deprecated)
                || a == Ipv6Addr::UNSPECIFIED
        }
    }
}

fn is_internal_v4(a: Ipv4Addr) -> bool {
    let o = a.octets();
    a.is_unspecified()
        || a.is_loopback()
        || a.is_private()
        || a.is_link_local() // 169.254/16, cloud metadata
        || a.is_broadcast()
        || a.is_multicast()
        || a.is_documentation()
        || o[0] == 0 // "this network"
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // shared address space 100.64/10
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments 192.0.0/24
        || (o[0] == 198 && (o[1] & 0xfe) == 18) // benchmarking 198.18/15
        || o[0] >= 240 // reserved
}

/// Which FHIR servers and DICOMweb origins each trusted client may have the service reach.

/// Parses `egress.allowed_networks` entries: CIDR (`10.20.0.0/16`) or one address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not a network (CIDR such as 10.20.0.0/16) or an address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).expect("test URL")
    }

    #[test]
    fn a_prefix_admits_its_base_and_below_but_not_a_longer_name_another_port_or_scheme() {
        let p = UrlPrefix::parse("https://pacs.example.org/dicom-web/").unwrap();
        assert!(p.admits(&url("https://pacs.example.org/dicom-web")));
        assert!(p.admits(&url("https://pacs.example.org:443/dicom-web/studies/1.2.3")));
        for other in [
            "https://pacs.example.org/dicom-web2",
            "https://pacs.example.org/",
            "https://pacs.example.org:8443/dicom-web",
            "http://pacs.example.org/dicom-web",
            "https://pacs.example.org.evil.test/dicom-web",
            "https://evil.test/pacs.example.org/dicom-web",
            "https://user:pw@pacs.example.org/dicom-web",
            "https://pacs.example.org/dicom-web/../admin",
        ] {
            assert!(!p.admits(&url(other)), "{other}");
        }
    }

    #[test]
    fn a_star_port_admits_any_port_on_that_host_only() {
        let p = UrlPrefix::parse("http://127.0.0.1:*/").unwrap();
        assert!(p.admits(&url("http://127.0.0.1:8042/dicom-web")));
        assert!(p.admits(&url("http://127.0.0.1/fhir")));
        assert!(!p.admits(&url("http://127.0.0.2:8042/dicom-web")));
        assert!(!p.admits(&url("https://127.0.0.1:8042/dicom-web")));
    }

    #[test]
    fn prefixes_with_credentials_queries_or_other_schemes_are_refused() {
        for bad in ["ftp://pacs/dicom-web", "https://u:p@pacs/dicom-web", "https://pacs/dicom-web?x=1", "pacs/dicom-web", ""] {
            assert!(UrlPrefix::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn internal_addresses_are_refused_unless_their_network_is_allowed() {
        let none = AddressGuard::default();
        for internal in [
            "127.0.0.1", "10.1.2.3", "172.16.0.9", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "255.255.255.255", "224.0.0.1",
            "::1", "::", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1", "64:ff9b::a00:1",
        ] {
            assert!(!none.admits(internal.parse().unwrap()), "{internal}");
        }
        for public in ["93.184.215.14", "8.8.8.8", "2606:4700::1111"] {
            assert!(none.admits(public.parse().unwrap()), "{public}");
        }
        let hospital = AddressGuard::new(vec![parse_network("10.20.0.0/16").unwrap(), parse_network("127.0.0.1").unwrap()]);
        assert!(hospital.admits("10.20.3.4".parse().unwrap()));
        assert!(hospital.admits("127.0.0.1".parse().unwrap()));
        assert!(!hospital.admits("10.21.3.4".parse().unwrap()));
        assert!(!hospital.admits("169.254.169.254".parse().unwrap()));
    }

    #[test]
    fn ip_literals_are_checked_before_any_request() {
        let guard = AddressGuard::default();
        assert!(guard.check_literal(&url("http://169.254.169.254/latest/meta-data")).is_err());
        assert!(guard.check_literal(&url("http://[::1]:8080/fhir")).is_err());
        assert!(guard.check_literal(&url("https://pacs.example.org/dicom-web")).is_ok());
    }

    #[tokio::test]
    async fn a_name_that_resolves_only_to_loopback_is_refused_by_the_resolver() {
        use reqwest::dns::Resolve;
        let refused = AddressGuard::default().resolve("localhost".parse().unwrap()).await;
        let error = refused.err().expect("localhost is loopback");
        assert!(refused_in_chain(error.as_ref()), "{error}");
        let allowed = AddressGuard::new(vec![parse_network("127.0.0.0/8").unwrap(), parse_network("::1/128").unwrap()]);
        let addrs: Vec<SocketAddr> = allowed.resolve("localhost".parse().unwrap()).await.map(Iterator::collect).unwrap_or_default();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}

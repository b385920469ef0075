//! Egress: where the service may send a request, decided before the request is sent.
//!
//! A hook names URLs — `fhirServer`, and through the ImagingStudy's Endpoint the PACS. Without
//! a policy the service would fetch whatever a caller names: a port scanner for the hospital
//! network, a reader of cloud metadata, a place to post reports to. Two checks stand between a
//! name and a request:
//!
//! 1. **Allow-lists per trusted client** ([`EgressPolicy`]): the FHIR servers a client may name
//!    and the DICOMweb origins its studies may point at, each a [`UrlPrefix`] (scheme, host,
//!    port, and a path prefix that ends on a segment boundary). The site's own
//!    `dicomweb.default_base_url` is always allowed. Anything else is refused with one
//!    [`EgressRefusal`] whose text says nothing about the target.
//! 2. **Addresses after resolution** ([`AddressGuard`]): loopback, link-local, private, shared
//!    (CGNAT), unique-local, multicast, documentation and unspecified addresses are refused
//!    unless they lie in `egress.allowed_networks`. The guard is the HTTP clients' DNS
//!    resolver, so a host name that resolves to such an address is refused when the
//!    connection is made (no window for DNS rebinding: the addresses checked are the ones
//!    connected to), and IP literals, which skip the resolver, are checked before sending.
//!
//! Neither the FHIR nor the DICOMweb client follows redirects ([`AddressGuard::http_client`]):
//! a redirect would otherwise carry a request, and PACS credentials, past both checks.

mod address;
mod body;
pub mod oauth;

use std::collections::HashMap;

use url::Url;

pub use address::{AddressGuard, AddressRefused, UrlPrefix, parse_network, refused_in_chain};
pub use body::{BodyError, read_capped};

use crate::{config::Settings, fhir::study::PriorStudy};

/// Which kind of target a refusal is about. The text is the whole message a caller sees: it
/// never names the URL, host or address, so refusals cannot be used to map a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EgressRefusal {
    #[error("fhirServer is not a FHIR server this client may name")]
    FhirServer,
    #[error("the prior study's DICOMweb endpoint is not one this client's studies may point at")]
    DicomWeb,
}
#[derive(Debug, Clone, Default)]
struct ClientEgress {
    fhir_servers: Vec<UrlPrefix>,
    dicomweb_origins: Vec<UrlPrefix>,
}

/// The allow-lists of every trusted client, plus the address guard for IP literals. Built once
/// from the settings (which have checked every entry parses).
#[derive(Debug, Clone)]
pub struct EgressPolicy {
    clients: HashMap<String, ClientEgress>,
    /// `dicomweb.default_base_url`: the site's own PACS, allowed for every client.
    site_dicomweb: Option<UrlPrefix>,
    guard: AddressGuard,
}

impl EgressPolicy {
    pub fn from_settings(settings: &Settings) -> Result<EgressPolicy, String> {
        let prefixes = |list: &[String]| list.iter().map(|s| UrlPrefix::parse(s).map_err(|e| format!("{s:?} {e}"))).collect::<Result<Vec<_>, _>>();
        let mut clients = HashMap::new();
        for c in &settings.trust.clients {
            let egress = ClientEgress { fhir_servers: prefixes(&c.fhir_servers)?, dicomweb_origins: prefixes(&c.dicomweb_origins)? };
            clients.insert(c.iss.clone(), egress);
        }
        let default = settings.dicomweb.default_base_url.trim();
        let site_dicomweb = if default.is_empty() { None } else { Some(UrlPrefix::parse(default)?) };
        Ok(EgressPolicy { clients, site_dicomweb, guard: settings.egress.address_guard()? })
    }

    /// The guard the HTTP clients resolve through.
    pub fn guard(&self) -> &AddressGuard {
        &self.guard
    }

    /// Whether client `iss` may have the service reach FHIR server `url`.
    pub fn fhir_server(&self, iss: &str, url: &Url) -> Result<(), EgressRefusal> {
        let listed = self.clients.get(iss).is_some_and(|c| c.fhir_servers.iter().any(|p| p.admits(url)));
        if listed && self.guard.check_literal(url).is_ok() { Ok(()) } else { Err(EgressRefusal::FhirServer) }
    }

    /// Whether every DICOMweb location of `study` (the study's and each series') is one client
    /// `iss` may have the service reach.
    pub fn study(&self, iss: &str, study: &PriorStudy) -> Result<(), EgressRefusal> {
        let allowed = |location: &String| {
            let Ok(url) = Url::parse(location.trim()) else { return false };
            let site = self.site_dicomweb.as_ref().is_some_and(|p| p.admits(&url));
            let listed = self.clients.get(iss).is_some_and(|c| c.dicomweb_origins.iter().any(|p| p.admits(&url)));
            (site || listed) && self.guard.check_literal(&url).is_ok()
        };
        if study.dicomweb.iter().chain(study.series_dicomweb.values()).all(allowed) { Ok(()) } else { Err(EgressRefusal::DicomWeb) }
    }
}

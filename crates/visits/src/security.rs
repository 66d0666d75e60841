//! Linking browser data to people (BRW-4): only the security role, only with
//! a stated basis — an Acceptable Use Policy case or a legal request — and a
//! reference; every search is written to the audit trail, about each person
//! it concerns, so it appears in their access export.

use seldesk_domain::{Actor, Role};
use seldesk_privacy::AuditLog;

use crate::{Visit, VisitStore, Who};

/// Why the security role may look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// A suspected violation of the Acceptable Use Policy.
    AupCase,
    /// A request from an authority the law obliges us to answer.
    LegalRequest,
}

impl Basis {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "aup_case" => Some(Self::AupCase),
            "legal_request" => Some(Self::LegalRequest),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AupCase => "aup_case",
            Self::LegalRequest => "legal_request",
        }
    }
}

/// Errors of a security search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Visits(#[from] crate::VisitError),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("search task: {0}")]
    Task(String),
}

impl seldesk_domain::Failure for SearchError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Forbidden(_) => K::Forbidden,
            Self::Invalid(_) => K::Invalid,
            Self::Privacy(e) => e.kind(),
            Self::Visits(_) | Self::Task(_) => K::Internal,
        }
    }
}

/// Searches raw visits for the security role, audited.
pub async fn search(
    store: &VisitStore,
    audit: &AuditLog,
    actor: &Actor,
    who: Who,
    basis: Basis,
    reference: &str,
) -> Result<Vec<Visit>, SearchError> {
    if !actor.has_any_role(&[Role::Security]) {
        return Err(SearchError::Forbidden(
            "Only the security role can link browser data to people or search it by IP address.".into(),
        ));
    }
    let reference = reference.trim();
    if reference.chars().count() < 5 || reference.chars().count() > 300 {
        return Err(SearchError::Invalid(
            "Give the case or request reference and what it is about (5 to 300 characters).".into(),
        ));
    }
    if seldesk_privacy::card::contains_card_number(reference) {
        return Err(SearchError::Invalid(seldesk_privacy::card::CARD_NUMBER_REFUSED.into()));
    }
    if let Who::Ip(ip) = &who
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return Err(SearchError::Invalid(format!("`{ip}` is not an IP address.")));
    }
    let found = store.search(who.clone()).await?;
    let (kind, target) = match &who {
        Who::Ip(ip) => ("ip", format!("ip:{ip}")),
        Who::Person(p) => ("person", p.clone()),
    };
    let mut people: Vec<String> = found.iter().filter_map(|v| v.person.clone()).collect();
    if let Who::Person(p) = &who {
        people.push(p.clone());
    }
    people.sort();
    people.dedup();
    let details = serde_json::json!({
        "basis": basis.as_str(), "reference": reference, "by": kind, "results": found.len(),
    });
    if people.is_empty() {
        audit.record(actor, "security.visits_searched", None, Some(&target), details.clone()).await?;
    }
    for p in &people {
        audit.record(actor, "security.visits_searched", Some(p), Some(&target), details.clone()).await?;
    }
    Ok(found)
}

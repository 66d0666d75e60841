//! Careers (JOB-1…JOB-7): job postings, applications with a CV, the hiring
//! pipeline for the hr role, the applicant's own page behind a private link,
//! and retention (2 years after a process ends without a hire, promptly after
//! an objection; employee records for the contract plus the country's period).
//!
//! What an application can hold is fixed here and nowhere else: contact
//! details, a letter, a CV and free text the applicant chose to share. The
//! extra data an offer needs comes from the policy file and exists only from
//! the offer stage. No special category of data has a field (JOB-3).

pub mod cv;
mod erasers;
mod service;

pub use cv::{CvKind, MAX_CV_BYTES};
pub use erasers::{ApplicationEraser, EmployeeEraser};
pub use service::{
    Application, ApplicationRecords, ApplicationSummary, ApplicationUpdate, Careers, CvFile, EMPLOYMENT_TYPES,
    Employee, NewApplication, Note, Posting, PostingInput, PostingStatus, Source, Stage,
};

use seldesk_accounts::AccountError;

/// Errors of the careers service.
#[derive(Debug, thiserror::Error)]
pub enum CareerError {
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error("careers store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error(transparent)]
    Blob(#[from] seldesk_blob::BlobError),
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
}

impl seldesk_domain::Failure for CareerError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid { .. } => K::Invalid,
            Self::NotFound(_) => K::NotFound,
            Self::Conflict(_) => K::Conflict,
            Self::Forbidden(_) => K::Forbidden,
            Self::Account(e) => e.kind(),
            Self::Privacy(e) => e.kind(),
            _ => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } => Some(field),
            Self::Account(e) => e.field(),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::Account(e) => e.retry_after(),
            _ => None,
        }
    }
}

impl CareerError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

/// The keys an application may carry through the API. Anything else is
/// refused, and a key naming a special category gets a message saying why.
pub const APPLICATION_KEYS: &[&str] =
    &["name", "email", "phone", "letter", "shared", "cv_name", "cv_base64", "object_to_keeping"];

/// Refuses submitted keys outside [`APPLICATION_KEYS`]: special categories
/// first (JOB-3), then any unknown key, so nothing unexpected is stored.
pub fn check_application_keys<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<(), CareerError> {
    let keys: Vec<&str> = keys.into_iter().collect();
    for k in &keys {
        if let Some(what) = seldesk_domain::special::special_category(k) {
            return Err(CareerError::invalid(
                "special_category",
                format!(
                    "We never collect {what} (field `{k}`): remove it and send the application again. Nothing was stored."
                ),
            ));
        }
    }
    for k in &keys {
        if !APPLICATION_KEYS.contains(k) {
            return Err(CareerError::invalid(
                "unknown_field",
                format!("`{k}` is not part of an application; the fields are {}.", APPLICATION_KEYS.join(", ")),
            ));
        }
    }
    Ok(())
}

//! Accounts, sessions and staff; the Helpdesk and personal-data requests
//! (access archives, erasure with receipts); outgoing mail.
//!
//! Nothing here knows HTTP: the web layer maps [`AccountError`] to statuses.

pub mod erasers;
pub mod finance;
pub mod helpdesk;
pub mod idempotency;
pub mod input;
pub mod lifecycle;
pub mod mail;
pub mod rate;
pub mod secret;
pub mod service;
pub mod staff;
pub mod tokens;

pub use helpdesk::{AccessExportJob, ContactForm, EraseJob, JOB_ACCESS_EXPORT, JOB_ERASE, JOB_OVERDUE_REQUESTS};
pub use staff::StaffCredentials;

pub use helpdesk::{Ticket, TicketKind, TicketMessage, TicketStatus};
pub use input::{INDUSTRIES, INTERESTS, ProfileUpdate, SignUp};
pub use mail::{Mailer, OutgoingMail};
pub use service::{Account, AccountStatus, Accounts, AccountsConfig, Principal, Session, SessionKind};
pub use staff::{NewStaff, StaffMember};
pub use tokens::{ApiToken, NewToken, Scope, TokenGrant};

/// Job kind: tell account holders about a new policy version (POL-2).
pub const JOB_POLICY_NOTIFY: &str = "policy.notify";

/// Errors a person can act on, and the rest.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field is missing, malformed or too long.
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// A card number was found in a free-text field (PAY-2).
    #[error("{message}")]
    CardNumber { field: &'static str, message: String },
    #[error("This e-mail address cannot be used for a new account. If it is yours, sign in or reset your password.")]
    EmailTaken,
    #[error("{0}")]
    WeakPassword(String),
    #[error("The e-mail address or password is not right.")]
    BadCredentials,
    #[error("Too many attempts. Try again in {retry_after_secs} seconds.")]
    RateLimited { retry_after_secs: u64 },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("This link has expired or was already used. Ask for a new one.")]
    LinkExpired,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Privacy(#[from] seldesk_privacy::PrivacyError),
    #[error(transparent)]
    Store(#[from] seldesk_store::StoreError),
    #[error("account store query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error(transparent)]
    Internal(#[from] seldesk_domain::Fault),
}

impl seldesk_domain::Failure for AccountError {
    fn kind(&self) -> seldesk_domain::ErrorKind {
        use seldesk_domain::ErrorKind as K;
        match self {
            Self::Invalid { .. } | Self::CardNumber { .. } | Self::WeakPassword(_) => K::Invalid,
            Self::EmailTaken | Self::Conflict(_) => K::Conflict,
            Self::BadCredentials => K::Unauthenticated,
            Self::RateLimited { .. } => K::RateLimited,
            Self::NotFound(_) => K::NotFound,
            Self::Forbidden(_) => K::Forbidden,
            Self::LinkExpired => K::Gone,
            Self::Privacy(e) => e.kind(),
            Self::Store(_) | Self::Query(_) | Self::Internal(_) => K::Internal,
        }
    }

    fn field(&self) -> Option<&'static str> {
        match self {
            Self::Invalid { field, .. } | Self::CardNumber { field, .. } => Some(field),
            Self::WeakPassword(_) => Some("password"),
            Self::EmailTaken => Some("email"),
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }
}

impl AccountError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

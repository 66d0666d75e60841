//! Accounts, sessions and staff; the Helpdesk and personal-data requests
//! (access archives, erasure with receipts); outgoing mail.
//!
//! Nothing here knows HTTP: the web layer maps [`AccountError`] to statuses.

pub mod erasers;
pub mod finance;
pub mod helpdesk;
pub mod input;
pub mod lifecycle;
pub mod mail;
pub mod rate;
pub mod secret;
pub mod service;
pub mod staff;

pub use helpdesk::{ContactForm, JOB_ACCESS_EXPORT, JOB_ERASE, JOB_OVERDUE_REQUESTS};
pub use staff::StaffCredentials;

pub use helpdesk::{Ticket, TicketKind, TicketMessage, TicketStatus};
pub use input::{INDUSTRIES, INTERESTS, ProfileUpdate, SignUp};
pub use mail::{Mailer, OutgoingMail};
pub use service::{Account, Accounts, AccountsConfig, Principal, Session, SessionKind};
pub use staff::{NewStaff, StaffMember};

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
    #[error("{0}")]
    Internal(String),
}

impl AccountError {
    pub(crate) fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid { field, message: message.into() }
    }
}

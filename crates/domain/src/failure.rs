//! What went wrong, in the terms a caller acts on.
//!
//! Every service crate has its own error type with the variants its work
//! needs, and each says which [`ErrorKind`] it is through [`Failure`]. The
//! web maps a kind to one HTTP status and one code, for pages and for the
//! API, in one place; nothing outside a service matches on its variants to
//! decide a status.
//!
//! A failure on our side is a [`Fault`]: it keeps its cause (the I/O, SQL or
//! encoding error) for the log, and the person sees a generic message.

use std::borrow::Cow;
use std::fmt;

/// The kinds of failure a request can meet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A field is missing, malformed or out of range: the caller can fix it.
    Invalid,
    /// Who is asking is not known (a bad signature, a wrong password).
    Unauthenticated,
    /// Known, but not allowed to do this.
    Forbidden,
    NotFound,
    /// The state of things does not allow it now (a name taken, a step done).
    Conflict,
    /// The database is deactivated (cancelled, or its trial ended).
    Deactivated,
    /// A link or token has expired or was used.
    Gone,
    /// The step needs a payment first.
    PaymentRequired,
    /// Larger than the service allows.
    TooLarge,
    /// Too many attempts or a used-up allowance; retry later.
    RateLimited,
    /// A disclosure the policy file does not allow (DSC): the data is not sent.
    Refused,
    /// The data lives in a region this node does not serve (RES-1).
    WrongRegion,
    /// No node can take the request now.
    Unavailable,
    /// Held for a moment (the last step of a move): retry a second later.
    Busy,
    /// A provider we called failed or answered something we refuse.
    Upstream,
    /// Our failure: the person sees a generic message, the log the cause.
    Internal,
}

impl ErrorKind {
    /// Every kind, for maps that must cover them all.
    pub const ALL: [ErrorKind; 16] = [
        Self::Invalid,
        Self::Unauthenticated,
        Self::Forbidden,
        Self::NotFound,
        Self::Conflict,
        Self::Deactivated,
        Self::Gone,
        Self::PaymentRequired,
        Self::TooLarge,
        Self::RateLimited,
        Self::Refused,
        Self::WrongRegion,
        Self::Unavailable,
        Self::Busy,
        Self::Upstream,
        Self::Internal,
    ];
}

/// An error that knows its [`ErrorKind`]; implemented by every service
/// crate's error type.
pub trait Failure: std::error::Error + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;

    /// The form or JSON field at fault, when one is.
    fn field(&self) -> Option<&'static str> {
        None
    }

    /// Seconds after which the same request may succeed.
    fn retry_after(&self) -> Option<u64> {
        None
    }
}

type Cause = Box<dyn std::error::Error + Send + Sync>;

/// A failure on our side: what we were doing, and the error that stopped
/// it, kept as the source rather than flattened into a string.
pub struct Fault {
    doing: Cow<'static, str>,
    cause: Option<Cause>,
}

impl Fault {
    /// `doing` failed because of `cause`.
    pub fn new(doing: impl Into<Cow<'static, str>>, cause: impl Into<Cause>) -> Self {
        Self { doing: doing.into(), cause: Some(cause.into()) }
    }

    /// A failure with no underlying error (a check that did not hold).
    pub fn msg(what: impl Into<Cow<'static, str>>) -> Self {
        Self { doing: what.into(), cause: None }
    }

    /// `f` for `map_err`: `.map_err(Fault::by("cannot read the outbox"))`.
    pub fn by<E: Into<Cause>>(doing: &'static str) -> impl FnOnce(E) -> Self {
        move |e| Self::new(doing, e)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Some(cause) => write!(f, "{}: {cause}", self.doing),
            None => f.write_str(&self.doing),
        }
    }
}

impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault").field("doing", &self.doing).field("cause", &self.cause).finish()
    }
}

impl std::error::Error for Fault {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl Failure for Fault {
    fn kind(&self) -> ErrorKind {
        ErrorKind::Internal
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn a_fault_keeps_its_cause_as_the_source_and_says_both() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no access");
        let f = Fault::new("cannot write to the outbox", io);
        assert_eq!(f.to_string(), "cannot write to the outbox: no access");
        let source = f.source().expect("the cause is kept");
        assert_eq!(
            source.downcast_ref::<std::io::Error>().map(|e| e.kind()),
            Some(std::io::ErrorKind::PermissionDenied)
        );
        let bare = Fault::msg("integrity check: 3 errors");
        assert_eq!(bare.to_string(), "integrity check: 3 errors");
        assert!(bare.source().is_none());
        assert_eq!(bare.kind(), ErrorKind::Internal);
    }
}

//! Seldesk's domain: the policy model and its loader, domain types, the clock.
//!
//! Nothing here knows HTTP or which SQL database runs underneath.

pub mod actor;
pub mod clock;
pub mod contact;
pub mod country;
pub mod failure;
pub mod keyfile;
pub mod policy;
pub mod special;

pub use actor::{Actor, Role, Subject};
pub use clock::{Clock, SystemClock, TestClock};
pub use failure::{ErrorKind, Failure, Fault};
pub use policy::{Policy, PolicyError};

/// The Unicode characters that reorder how text is displayed, so a name
/// can read as another (U+202E turns `exe.pdf` around): refused in every
/// name a person types.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{61c}')
}

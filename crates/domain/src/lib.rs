//! Seldesk's domain: the policy model and its loader, domain types, the clock.
//!
//! Nothing here knows HTTP or which SQL database runs underneath.

pub mod actor;
pub mod clock;
pub mod country;
pub mod failure;
pub mod keyfile;
pub mod policy;
pub mod special;

pub use actor::{Actor, Role, Subject};
pub use clock::{Clock, SystemClock, TestClock};
pub use failure::{ErrorKind, Failure, Fault};
pub use policy::{Policy, PolicyError};

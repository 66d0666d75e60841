//! Who does something: recorded in the audit trail by an opaque reference,
//! never by name or e-mail.

use std::fmt;

/// Staff roles (STF-1): one model for all staff, wherever they work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    Admin,
    Support,
    Hr,
    Security,
    Finance,
    Dpo,
    /// Campaigns, events, partners and trend reports (issue 10).
    Marketing,
}

impl Role {
    pub const ALL: [Role; 7] =
        [Role::Admin, Role::Support, Role::Hr, Role::Security, Role::Finance, Role::Dpo, Role::Marketing];

    pub fn as_str(&self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Support => "support",
            Role::Hr => "hr",
            Role::Security => "security",
            Role::Finance => "finance",
            Role::Dpo => "dpo",
            Role::Marketing => "marketing",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// Scheduled jobs and automatic processing.
    System,
    /// Someone running `seldesk` commands on the server (holds the keys to everything).
    Operator,
    /// A staff member with roles.
    Staff { id: String, roles: Vec<Role> },
    /// A person acting on their own data.
    Person { id: String },
}

impl Actor {
    /// The opaque reference the audit trail stores.
    pub fn reference(&self) -> String {
        match self {
            Actor::System => "system".into(),
            Actor::Operator => "operator".into(),
            Actor::Staff { id, .. } => format!("staff:{id}"),
            Actor::Person { id } => format!("person:{id}"),
        }
    }

    /// Whether the actor holds one of `roles` (the operator holds every role).
    pub fn has_any_role(&self, roles: &[Role]) -> bool {
        match self {
            Actor::Operator => true,
            Actor::Staff { roles: held, .. } => held.iter().any(|r| roles.contains(r)),
            Actor::System | Actor::Person { .. } => false,
        }
    }
}

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

/// Whose personal data a record is about, as the audit trail, the erasure
/// log, the disclosure ledger and the erasers name them: `person:<account
/// id>` for an account holder, `applicant:<application id>` for a job
/// applicant. The prefixes are written here and nowhere else.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

impl Subject {
    /// An account holder.
    pub fn person(account_id: &str) -> Self {
        Self(format!("person:{account_id}"))
    }

    /// A job applicant (who may have no account).
    pub fn applicant(application_id: &str) -> Self {
        Self(format!("applicant:{application_id}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// The account id a stored `person:` reference names.
    pub fn account_of(reference: &str) -> Option<&str> {
        reference.strip_prefix("person:")
    }
}

impl std::fmt::Display for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> Self {
        s.0
    }
}

impl Actor {
    /// The opaque reference the audit trail stores.
    pub fn reference(&self) -> String {
        match self {
            Actor::System => "system".into(),
            Actor::Operator => "operator".into(),
            Actor::Staff { id, .. } => format!("staff:{id}"),
            Actor::Person { id } => Subject::person(id).into_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_written_one_way_and_read_back() {
        assert_eq!(Subject::person("01a2").as_str(), "person:01a2");
        assert_eq!(Subject::applicant("9f").to_string(), "applicant:9f");
        assert_eq!(Subject::account_of(Subject::person("01a2").as_str()), Some("01a2"));
        assert_eq!(Subject::account_of("applicant:9f"), None);
        assert_eq!(Actor::Person { id: "01a2".into() }.reference(), Subject::person("01a2").into_string());
    }
}

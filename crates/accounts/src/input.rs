//! Validated input: exactly the fields ACC-1 lists, each checked, and free
//! text refused when it carries a card number (PAY-2).

use secrecy::ExposeSecret;
use seldesk_privacy::card::{CARD_NUMBER_REFUSED, contains_card_number};
use serde::Deserialize;

use crate::AccountError;

/// Choices for "industry".
pub const INDUSTRIES: &[&str] = &[
    "Construction",
    "Education",
    "Finance and insurance",
    "Healthcare",
    "Hospitality",
    "Manufacturing",
    "Non-profit",
    "Professional services",
    "Public sector",
    "Retail and wholesale",
    "Technology",
    "Transport and logistics",
    "Other",
];

/// Choices for "interest in Seldesk".
pub const INTERESTS: &[&str] =
    &["Use Seldesk for my company", "Implement Seldesk for clients", "Evaluate Seldesk", "Study or research", "Other"];

/// Sign-up: what ACC-1 lists, nothing more.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignUp {
    pub name: String,
    pub company: String,
    pub email: String,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub industry: Option<String>,
    #[serde(default)]
    pub interest: Option<String>,
    /// Never printed: `{:?}` shows `[REDACTED]`.
    #[schema(value_type = String, format = Password)]
    pub password: secrecy::SecretString,
    #[serde(default)]
    pub invoice_by_post: bool,
    #[serde(default)]
    pub address: Option<String>,
    /// ISO 3166-1 alpha-2 code (`IN`, `SG`, `GB`).
    #[serde(default)]
    pub country: Option<String>,
}

/// A sign-up whose every field passed its check.
#[derive(Debug, Clone)]
pub struct CheckedSignUp {
    pub name: String,
    pub company: String,
    pub email: String,
    pub phone: Option<String>,
    pub industry: Option<String>,
    pub interest: Option<String>,
    /// Only when invoices go by post (ACC-1).
    pub address: Option<String>,
    pub country: Option<String>,
}

/// Keeps a field's checked value, or its problem.
fn keep<T>(problems: &mut Vec<AccountError>, checked: Result<T, AccountError>) -> Option<T> {
    checked.map_err(|e| problems.push(e)).ok()
}

impl SignUp {
    /// Every field checked, every problem reported at once (so a form can
    /// show each beside its field); the password is checked against the
    /// name and e-mail address as typed.
    pub fn check(&self) -> Result<CheckedSignUp, Vec<AccountError>> {
        let mut problems = Vec::new();
        let p = &mut problems;
        let name = keep(p, text("name", "Name", &self.name, 100, true)).flatten();
        let company = keep(p, text("company", "Company", &self.company, 100, true)).flatten();
        let email = keep(p, email(&self.email));
        let phone = keep(p, phone(self.phone.as_deref().unwrap_or_default())).flatten();
        let industry =
            keep(p, choice("industry", "an industry", self.industry.as_deref().unwrap_or_default(), crate::INDUSTRIES))
                .flatten();
        let interest = keep(
            p,
            choice("interest", "your interest", self.interest.as_deref().unwrap_or_default(), crate::INTERESTS),
        )
        .flatten();
        let address = if self.invoice_by_post {
            keep(
                p,
                text(
                    "address",
                    "Mailing address (for invoices by post)",
                    self.address.as_deref().unwrap_or_default(),
                    500,
                    true,
                ),
            )
            .flatten()
        } else {
            // ACC-1: the address is collected only when invoices go by post.
            None
        };
        let country = keep(p, country(self.country.as_deref().unwrap_or_default())).flatten();
        let typed_email = email.clone().unwrap_or_else(|| self.email.trim().to_lowercase());
        keep(p, password(self.password.expose_secret(), &typed_email, name.as_deref().unwrap_or(&self.name)));
        match (name, company, email) {
            (Some(name), Some(company), Some(email)) if problems.is_empty() => {
                Ok(CheckedSignUp { name, company, email, phone, industry, interest, address, country })
            }
            _ => Err(problems),
        }
    }
}

/// A correction of the profile (ACC-3): absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"phone": "+91 80 1234 5678", "invoice_by_post": false}))]
pub struct ProfileUpdate {
    pub name: Option<String>,
    pub company: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub industry: Option<String>,
    pub interest: Option<String>,
    pub invoice_by_post: Option<bool>,
    pub address: Option<String>,
    pub country: Option<String>,
}

/// Refuses free text that carries a card number.
pub fn no_card(field: &'static str, value: &str) -> Result<(), AccountError> {
    if contains_card_number(value) {
        return Err(AccountError::CardNumber { field, message: CARD_NUMBER_REFUSED.to_string() });
    }
    Ok(())
}

/// Trims and checks a text field.
pub fn text(
    field: &'static str,
    label: &str,
    value: &str,
    max: usize,
    required: bool,
) -> Result<Option<String>, AccountError> {
    let v = value.trim();
    if v.is_empty() {
        if required {
            return Err(AccountError::invalid(field, format!("{label} is required.")));
        }
        return Ok(None);
    }
    if v.chars().count() > max {
        return Err(AccountError::invalid(field, format!("{label} is too long: at most {max} characters.")));
    }
    if v.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t') {
        return Err(AccountError::invalid(field, format!("{label} contains control characters.")));
    }
    no_card(field, v)?;
    Ok(Some(v.to_string()))
}

/// A plausible e-mail address, lowercased.
pub fn email(value: &str) -> Result<String, AccountError> {
    let v = value.trim().to_lowercase();
    if v.is_empty() {
        return Err(AccountError::invalid("email", "E-mail address is required."));
    }
    if !seldesk_domain::contact::is_email(&v) {
        return Err(AccountError::invalid("email", seldesk_domain::contact::EMAIL_HINT));
    }
    no_card("email", &v)?;
    Ok(v)
}

/// A phone number: digits, spaces and + - ( ) . only.
pub fn phone(value: &str) -> Result<Option<String>, AccountError> {
    let Some(v) = text("phone", "Phone", value, 30, false)? else {
        return Ok(None);
    };
    if !seldesk_domain::contact::is_phone(&v) {
        return Err(AccountError::invalid("phone", seldesk_domain::contact::PHONE_HINT));
    }
    Ok(Some(v))
}

/// A country code (ISO 3166-1 alpha-2), uppercase; empty means none given.
pub fn country(value: &str) -> Result<Option<String>, AccountError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    seldesk_domain::country::normalise(v).map(Some).ok_or_else(|| {
        AccountError::invalid("country", format!("`{v}` is not a country code; choose your country from the list."))
    })
}

/// One of a list of choices.
pub fn choice(field: &'static str, label: &str, value: &str, choices: &[&str]) -> Result<Option<String>, AccountError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    if choices.contains(&v) {
        Ok(Some(v.to_string()))
    } else {
        Err(AccountError::invalid(field, format!("Choose {label} from the list: {}.", choices.join(", "))))
    }
}

/// The password rule: long enough to resist guessing, not obviously tied to the person.
pub fn password(pw: &str, email: &str, name: &str) -> Result<(), AccountError> {
    let weak = |why: &str| {
        Err(AccountError::WeakPassword(format!(
            "{why} Use at least 10 characters; a few unrelated words make a strong password that is easy to remember."
        )))
    };
    let n = pw.chars().count();
    if n < 10 {
        return weak("This password is too short.");
    }
    if n > 128 {
        return Err(AccountError::WeakPassword("Use at most 128 characters.".into()));
    }
    let lower = pw.to_lowercase();
    let local = email.split('@').next().unwrap_or_default();
    if local.len() >= 3 && lower.contains(local) {
        return weak("The password contains your e-mail address.");
    }
    if name.split_whitespace().any(|w| w.len() >= 3 && lower.contains(&w.to_lowercase())) {
        return weak("The password contains your name.");
    }
    let distinct: std::collections::HashSet<char> = pw.chars().collect();
    // A well-known password with a few characters around it is still guessed first.
    if distinct.len() < 5 || COMMON.iter().any(|c| lower.contains(c)) && n < 16 {
        return weak("This password is too easy to guess.");
    }
    Ok(())
}

const COMMON: &[&str] = &["password", "123456", "qwerty", "letmein", "welcome", "seldesk", "admin", "iloveyou"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(email(" Asha@Example.COM ").expect("ok"), "asha@example.com");
        for bad in ["", "asha", "asha@", "@x.com", "a b@x.com", "a@x", "a@.x.com", "a@x..com"] {
            assert!(email(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("short", "a@x.com", "Asha").is_err());
        assert!(password("password1234", "a@x.com", "Asha").is_err());
        assert!(password("asharao-is-great", "asharao@x.com", "Asha Rao").is_err());
        assert!(password("aaaaaaaaaaaa", "a@x.com", "Asha").is_err());
        assert!(password("violet tractor lemon", "a@x.com", "Asha").is_ok());
    }

    // promise: PAY-2
    #[test]
    fn card_numbers_are_refused_in_free_text() {
        let err = text("company", "Company", "Acme 4111 1111 1111 1111", 100, true).expect_err("refused");
        assert!(matches!(err, AccountError::CardNumber { field: "company", .. }));
        assert!(text("company", "Company", "Acme 2026", 100, true).is_ok());
    }
}

#[cfg(test)]
mod secrets {
    use secrecy::ExposeSecret;

    use crate::StaffCredentials;
    use crate::input::SignUp;

    /// Inputs that carry a password, a TOTP secret or its URL print none
    /// of them with `{:?}` (a log line, a panic message, a tracing field).
    #[test]
    fn no_input_prints_a_secret_with_debug() {
        let password = "violet tractor lemon";
        let sign_up: SignUp = serde_json::from_value(serde_json::json!({
            "name": "Asha Rao", "company": "Rao Textiles", "email": "asha@example.in", "password": password
        }))
        .expect("sign-up");
        assert_eq!(sign_up.password.expose_secret(), password);
        let credentials = StaffCredentials {
            staff: crate::staff::StaffMember {
                id: "s1".into(),
                email: "ops@seldesk.com".into(),
                roles: vec![],
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                disabled: false,
            },
            password: password.to_string().into(),
            totp_url: "otpauth://totp/Seldesk:ops?secret=JBSWY3DPEHPK3PXP".to_string().into(),
            totp_secret: "JBSWY3DPEHPK3PXP".to_string().into(),
        };
        let session = crate::Session {
            kind: crate::SessionKind::Web,
            principal: crate::Principal::Account("a1".into()),
            csrf: "JBSWY3DPEHPK3PXP".to_string().into(),
            expires_at: time::OffsetDateTime::UNIX_EPOCH,
        };
        for printed in
            [format!("{sign_up:?}"), format!("{credentials:?}"), format!("{credentials:#?}"), format!("{session:?}")]
        {
            assert!(!printed.contains(password) && !printed.contains("JBSWY3DPEHPK3PXP"), "{printed}");
            assert!(printed.contains("REDACTED"), "{printed}");
        }
    }
}

//! Billing settings from the operator's configuration: the seller printed on
//! invoices, plans and their prices per currency, the currency of each
//! country, taxes, the renewal retry schedule and the processors'
//! credentials. Amounts are minor units, rates basis points: no floats.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// `[billing]` in the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSettings {
    pub seller: Seller,
    pub plans: Vec<Plan>,
    /// Currency for buyers from countries not listed in `currencies`.
    pub default_currency: String,
    /// ISO country code → ISO currency code.
    pub currencies: BTreeMap<String, String>,
    /// ISO country code → tax applied to buyers from that country.
    pub taxes: BTreeMap<String, Tax>,
    /// Days after a failed renewal to try again; after the last failure the
    /// subscription lapses and its database is deactivated (DB-7).
    pub retry_days: Vec<u32>,
    pub paypal: Option<PaypalSettings>,
    pub ingenico: Option<IngenicoSettings>,
    /// `"test"` offers the built-in test processor (no money moves; every
    /// page then says payments are simulated). Never on unless set.
    pub processor: Option<String>,
}

/// The seller on every invoice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seller {
    pub name: String,
    pub address: Vec<String>,
    pub tax_id: Option<String>,
    pub email: String,
}

impl Default for Seller {
    fn default() -> Self {
        Self {
            name: "Seldesk".into(),
            address: vec!["Seldesk".into()],
            tax_id: None,
            email: "billing@seldesk.com".into(),
        }
    }
}

/// What a plan is priced by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Per {
    Database,
    User,
}

/// A plan with its prices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub id: String,
    pub name: String,
    pub per: Per,
    /// Currency code → prices.
    pub prices: BTreeMap<String, Price>,
}

/// One currency's prices of a plan, in minor units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub monthly: i64,
    pub yearly: i64,
}

/// A tax rate in basis points (1800 = 18%) and its label on invoices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tax {
    pub label: String,
    pub rate_bp: i64,
}

/// A processor credential from the configuration file: kept in a
/// `SecretString` so no `{:?}` prints it (a log line, a panic, a config dump
/// through Debug). It serializes, because the configuration is merged from
/// files and environment through serde; nothing serializes it elsewhere.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Credential(SecretString);

impl Credential {
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl From<&str> for Credential {
    fn from(s: &str) -> Self {
        Self(s.into())
    }
}

impl Serialize for Credential {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl PartialEq for Credential {
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl Eq for Credential {}

/// PayPal REST credentials (Orders v2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaypalSettings {
    /// `https://api-m.paypal.com` in production, `https://api-m.sandbox.paypal.com` to try.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Credential,
    /// The webhook's id in PayPal's dashboard, needed to verify its signatures.
    pub webhook_id: String,
}

/// Ingenico / Worldline Direct credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngenicoSettings {
    /// `https://payment.direct.worldline-solutions.com` in production.
    pub base_url: String,
    pub merchant_id: String,
    pub api_key_id: String,
    pub api_secret: Credential,
    pub webhook_key_id: String,
    pub webhook_secret: Credential,
}

const EURO_AREA: &[&str] = &[
    "AT", "BE", "CY", "DE", "EE", "ES", "FI", "FR", "GR", "HR", "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PT", "SI",
    "SK",
];

impl Default for BillingSettings {
    fn default() -> Self {
        let mut currencies: BTreeMap<String, String> =
            [("IN", "INR"), ("SG", "SGD"), ("GB", "GBP"), ("US", "USD")].map(|(c, k)| (c.into(), k.into())).into();
        for c in EURO_AREA {
            currencies.insert((*c).into(), "EUR".into());
        }
        let prices = |inr: i64, sgd: i64, gbp: i64, eur: i64, usd: i64| -> BTreeMap<String, Price> {
            [("INR", inr), ("SGD", sgd), ("GBP", gbp), ("EUR", eur), ("USD", usd)]
                .map(|(k, m)| (k.to_string(), Price { monthly: m, yearly: m * 10 }))
                .into()
        };
        let mut taxes = BTreeMap::new();
        taxes.insert("IN".into(), Tax { label: "GST 18%".into(), rate_bp: 1800 });
        taxes.insert("SG".into(), Tax { label: "GST 9%".into(), rate_bp: 900 });
        taxes.insert("GB".into(), Tax { label: "VAT 20%".into(), rate_bp: 2000 });
        Self {
            seller: Seller::default(),
            plans: vec![
                Plan {
                    id: "standard".into(),
                    name: "Standard".into(),
                    per: Per::Database,
                    prices: prices(199_900, 3_900, 2_400, 2_900, 2_900),
                },
                Plan {
                    id: "team".into(),
                    name: "Team".into(),
                    per: Per::User,
                    prices: prices(49_900, 900, 600, 700, 700),
                },
            ],
            default_currency: "USD".into(),
            currencies,
            taxes,
            retry_days: vec![1, 3, 7],
            paypal: None,
            ingenico: None,
            processor: None,
        }
    }
}

impl BillingSettings {
    /// The currency charged to a buyer from `country`.
    pub fn currency_for(&self, country: Option<&str>) -> &str {
        country.and_then(|c| self.currencies.get(&c.to_ascii_uppercase())).unwrap_or(&self.default_currency)
    }

    pub fn plan(&self, id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == id)
    }

    pub fn tax_for(&self, country: Option<&str>) -> Option<&Tax> {
        country.and_then(|c| self.taxes.get(&c.to_ascii_uppercase()))
    }

    /// Whether the built-in test processor is offered.
    pub fn offers_test_processor(&self) -> bool {
        self.processor.as_deref() == Some("test")
    }

    /// Checks the settings; the message names what to fix.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(p) = self.processor.as_deref().filter(|p| *p != "test") {
            return Err(format!(
                "billing.processor: `{p}` is not one; only \"test\" is set here (PayPal and Ingenico are configured in billing.paypal and billing.ingenico)"
            ));
        }
        if self.plans.is_empty() {
            return Err("billing.plans: at least one plan is needed".into());
        }
        let is_code = |c: &str| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase());
        if !is_code(&self.default_currency) {
            return Err(format!("billing.default_currency `{}` is not an ISO currency code", self.default_currency));
        }
        for (country, currency) in &self.currencies {
            if !is_code(currency) {
                return Err(format!("billing.currencies.{country}: `{currency}` is not an ISO currency code"));
            }
        }
        let mut wanted: Vec<&str> = self.currencies.values().map(String::as_str).collect();
        wanted.push(&self.default_currency);
        for plan in &self.plans {
            for currency in &wanted {
                match plan.prices.get(*currency) {
                    None => {
                        return Err(format!(
                            "billing plan `{}` has no price in {currency}, which buyers pay in",
                            plan.id
                        ));
                    }
                    Some(p) if p.monthly <= 0 || p.yearly <= 0 => {
                        return Err(format!("billing plan `{}`: prices in {currency} must be above zero", plan.id));
                    }
                    Some(_) => {}
                }
            }
        }
        for (country, tax) in &self.taxes {
            if !(0..=10_000).contains(&tax.rate_bp) {
                return Err(format!("billing.taxes.{country}: rate_bp must be between 0 and 10000"));
            }
        }
        if self.retry_days.contains(&0) {
            return Err("billing.retry_days: each retry must be at least one day later".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_price_every_currency() {
        let s = BillingSettings::default();
        s.validate().expect("valid");
        assert_eq!(s.currency_for(Some("fr")), "EUR");
        assert_eq!(s.currency_for(Some("IN")), "INR");
        assert_eq!(s.currency_for(Some("BR")), "USD");
        assert_eq!(s.currency_for(None), "USD");
        assert!(!s.offers_test_processor(), "payments are never simulated unless asked for");
        let test = BillingSettings { processor: Some("test".into()), ..BillingSettings::default() };
        assert!(test.offers_test_processor());
        let odd = BillingSettings { processor: Some("paypal".into()), ..BillingSettings::default() };
        assert!(odd.validate().expect_err("refused").contains("billing.processor"));
    }

    #[test]
    fn a_missing_price_is_named() {
        let mut s = BillingSettings::default();
        s.plans[0].prices.remove("SGD");
        let e = s.validate().expect_err("invalid");
        assert!(e.contains("standard") && e.contains("SGD"), "{e}");
    }

    /// Processor credentials and the token a processor holds for renewals
    /// print as redacted with `{:?}`, yet reach the processor intact and
    /// survive the configuration's serde round trip.
    #[test]
    fn no_processor_secret_prints_with_debug() {
        let secret = "sk-live-violet-tractor";
        let paypal = PaypalSettings {
            base_url: "https://api-m.paypal.com".into(),
            client_id: "client".into(),
            client_secret: secret.into(),
            webhook_id: "hook".into(),
        };
        let ingenico = IngenicoSettings {
            base_url: "https://payment.direct.worldline-solutions.com".into(),
            merchant_id: "m".into(),
            api_key_id: "k".into(),
            api_secret: secret.into(),
            webhook_key_id: "w".into(),
            webhook_secret: secret.into(),
        };
        let charge = crate::processor::Call::Charge { token: secret.into() };
        let paid = crate::processor::Outcome::Paid {
            payment: "p1".into(),
            amount_cents: 100,
            currency: "EUR".into(),
            token: Some(secret.into()),
        };
        for printed in [format!("{paypal:?}"), format!("{ingenico:#?}"), format!("{charge:?}"), format!("{paid:?}")] {
            assert!(!printed.contains(secret), "{printed}");
        }
        assert_eq!(paypal.client_secret.expose(), secret);
        let back: PaypalSettings =
            serde_json::from_value(serde_json::to_value(&paypal).expect("serializes")).expect("parses");
        assert_eq!(back, paypal);
    }
}

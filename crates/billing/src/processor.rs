//! Payment processors. Each builds its requests only from the fields the
//! disclosure gate approved (amount, currency, description, reference,
//! customer name and e-mail) plus technical values that are not personal
//! data (return addresses, the processor's own order ids and tokens), so no
//! other personal field can reach a processor (PAY-4). No processor call
//! carries card data: cards are typed on the processor's page (PAY-1).

use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use seldesk_privacy::{BoxFuture, Disclosure, Transport};

/// Gate field ids of a processor call.
pub mod field {
    pub const AMOUNT: &str = "order.amount";
    pub const CURRENCY: &str = "order.currency";
    pub const DESCRIPTION: &str = "order.description";
    pub const REFERENCE: &str = "order.reference";
    pub const NAME: &str = "customer.name";
    pub const EMAIL: &str = "customer.email";
}

/// What to ask of the processor.
#[derive(Debug, Clone)]
pub enum Call {
    /// Open a hosted checkout; the buyer is sent to its page.
    Checkout { return_url: String, cancel_url: String },
    /// The buyer came back: capture or look up the result.
    Complete { order: String, return_mac: Option<String>, query: BTreeMap<String, String> },
    /// Charge a processor-held token (renewals, plan changes).
    Charge { token: SecretString },
    /// Refund part or all of a captured payment.
    Refund { payment: String },
}

/// What the processor answered.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Send the buyer here.
    Redirect {
        order: String,
        url: String,
        return_mac: Option<String>,
    },
    /// Money captured; `token` is the processor-held token for renewals.
    Paid {
        payment: String,
        amount_cents: i64,
        currency: String,
        token: Option<SecretString>,
    },
    /// The buyer has not finished (or abandoned) the checkout.
    NotPaid(String),
    /// The processor declined the charge.
    Declined(String),
    Refunded {
        refund: String,
    },
}

/// A processor could not be reached or answered nonsense.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct ProcessorError(pub String);

/// A webhook after its signature was verified, in our terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    pub id: String,
    pub kind: EventKind,
    /// The processor's order / hosted-checkout id.
    pub order: Option<String>,
    /// The processor's payment / capture id.
    pub payment: Option<String>,
    pub reference: Option<String>,
    pub amount_cents: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    Captured,
    Declined,
    Refunded,
    Other(String),
}

/// Why a webhook was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WebhookError {
    #[error("the webhook's signature does not verify: {0}")]
    Signature(String),
    #[error("the webhook is not understood: {0}")]
    Malformed(String),
    #[error("{0}")]
    Unavailable(String),
}

/// A payment processor.
pub trait Processor: Send + Sync {
    /// Provider id in the policy registry (`paypal`, `ingenico`), or `test`.
    fn id(&self) -> &'static str;
    /// Name shown to buyers.
    fn label(&self) -> &'static str;
    /// Performs `call` with the gate-approved `fields`.
    fn call<'a>(
        &'a self,
        fields: &'a BTreeMap<String, String>,
        call: &'a Call,
    ) -> BoxFuture<'a, Result<Outcome, ProcessorError>>;
    /// Verifies a webhook's signature and reads it.
    fn verify_webhook<'a>(
        &'a self,
        headers: &'a [(String, String)],
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<WebhookEvent, WebhookError>>;
}

/// Minor units as the decimal text processors expect ("12.00").
pub fn decimal(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

/// Reads "12.00" (or "12", "12.5") back into minor units.
pub fn parse_decimal(s: &str) -> Option<i64> {
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || frac.len() > 2 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let cents = format!("{frac:0<2}").parse::<i64>().ok()?;
    whole.parse::<i64>().ok()?.checked_mul(100)?.checked_add(cents)
}

/// Splits a full name for processors that want given name and surname.
pub fn split_name(name: &str) -> (String, String) {
    let name = name.trim();
    match name.rsplit_once(' ') {
        Some((given, surname)) => (given.trim().to_string(), surname.to_string()),
        None => (name.to_string(), name.to_string()),
    }
}

pub(crate) fn get<'a>(fields: &'a BTreeMap<String, String>, id: &str) -> Result<&'a str, ProcessorError> {
    fields.get(id).map(String::as_str).ok_or_else(|| ProcessorError(format!("the call lacks `{id}`")))
}

pub(crate) fn amount_cents(fields: &BTreeMap<String, String>) -> Result<i64, ProcessorError> {
    parse_decimal(get(fields, field::AMOUNT)?).ok_or_else(|| ProcessorError("the amount is not a decimal".into()))
}

pub(crate) fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Carries one processor call through the disclosure gate and keeps its answer.
pub(crate) struct GateCall<'a> {
    pub processor: &'a dyn Processor,
    pub call: &'a Call,
    pub outcome: Mutex<Option<Result<Outcome, ProcessorError>>>,
}

impl<'a> GateCall<'a> {
    pub fn new(processor: &'a dyn Processor, call: &'a Call) -> Self {
        Self { processor, call, outcome: Mutex::new(None) }
    }

    pub fn take(&self) -> Option<Result<Outcome, ProcessorError>> {
        self.outcome.lock().ok().and_then(|mut o| o.take())
    }
}

impl Transport for GateCall<'_> {
    fn deliver<'b>(&'b self, d: &'b Disclosure) -> BoxFuture<'b, Result<(), String>> {
        Box::pin(async move {
            let result = self.processor.call(&d.fields, self.call).await;
            let delivered = result.as_ref().map(|_| ()).map_err(|e| e.0.clone());
            if let Ok(mut slot) = self.outcome.lock() {
                *slot = Some(result);
            }
            delivered
        })
    }
}

/// The built-in test processor: no money moves and nothing leaves Seldesk.
/// Its "hosted page" is ours (`/billing/test-processor/{order}`), clearly
/// labelled, with Approve and Decline buttons and no card form. It lets a new
/// operator walk the whole flow without processor credentials.
#[derive(Debug, Default)]
pub struct TestProcessor {
    base_url: String,
    /// order → its amount, currency, return addresses and the buyer's decision.
    orders: Mutex<HashMap<String, TestOrder>>,
}

#[derive(Debug, Clone)]
struct TestOrder {
    amount_cents: i64,
    currency: String,
    decision: Option<bool>,
    return_url: String,
    cancel_url: String,
}

impl TestProcessor {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self { base_url: base_url.into(), ..Default::default() }
    }

    /// The buyer's decision on the test page; returns where to send them
    /// back (None when the order is unknown or already decided).
    pub fn decide(&self, order: &str, approve: bool) -> Option<String> {
        let mut orders = self.orders.lock().ok()?;
        match orders.get_mut(order) {
            Some(o) if o.decision.is_none() => {
                o.decision = Some(approve);
                let back = if approve { &o.return_url } else { &o.cancel_url };
                let sep = if back.contains('?') { '&' } else { '?' };
                Some(format!("{back}{sep}token={order}"))
            }
            _ => None,
        }
    }

    /// Amount and currency of an open order, for its page.
    pub fn order(&self, order: &str) -> Option<(i64, String, Option<bool>)> {
        let orders = self.orders.lock().ok()?;
        orders.get(order).map(|o| (o.amount_cents, o.currency.clone(), o.decision))
    }
}

impl Processor for TestProcessor {
    fn id(&self) -> &'static str {
        "test"
    }

    fn label(&self) -> &'static str {
        "Test processor (no money moves)"
    }

    fn call<'a>(
        &'a self,
        fields: &'a BTreeMap<String, String>,
        call: &'a Call,
    ) -> BoxFuture<'a, Result<Outcome, ProcessorError>> {
        Box::pin(async move {
            let mut orders = self.orders.lock().map_err(|_| ProcessorError("test processor state poisoned".into()))?;
            match call {
                Call::Checkout { return_url, cancel_url } => {
                    let order = format!("TEST-{}", uuid::Uuid::now_v7().simple());
                    orders.insert(
                        order.clone(),
                        TestOrder {
                            amount_cents: amount_cents(fields)?,
                            currency: get(fields, field::CURRENCY)?.to_string(),
                            decision: None,
                            return_url: return_url.clone(),
                            cancel_url: cancel_url.clone(),
                        },
                    );
                    let url = format!("{}/billing/test-processor/{order}", self.base_url);
                    Ok(Outcome::Redirect { order, url, return_mac: None })
                }
                Call::Complete { order, .. } => match orders.get(order) {
                    Some(o) if o.decision == Some(true) => Ok(Outcome::Paid {
                        payment: format!("{order}-P"),
                        amount_cents: o.amount_cents,
                        currency: o.currency.clone(),
                        token: Some(format!("test-token-{}", uuid::Uuid::now_v7().simple()).into()),
                    }),
                    Some(o) if o.decision == Some(false) => Ok(Outcome::NotPaid("You declined the payment.".into())),
                    Some(_) => Ok(Outcome::NotPaid("The payment was not approved yet.".into())),
                    None => Err(ProcessorError(format!("the test processor has no order {order} (restarted?)"))),
                },
                Call::Charge { .. } => Ok(Outcome::Paid {
                    payment: format!("TEST-{}", uuid::Uuid::now_v7().simple()),
                    amount_cents: amount_cents(fields)?,
                    currency: get(fields, field::CURRENCY)?.to_string(),
                    token: None,
                }),
                Call::Refund { payment } => Ok(Outcome::Refunded { refund: format!("{payment}-R") }),
            }
        })
    }

    fn verify_webhook<'a>(
        &'a self,
        _headers: &'a [(String, String)],
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<WebhookEvent, WebhookError>> {
        Box::pin(async { Err(WebhookError::Signature("the test processor sends no webhooks".into())) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_round_trip() {
        assert_eq!(decimal(1200), "12.00");
        assert_eq!(decimal(5), "0.05");
        assert_eq!(parse_decimal("12.00"), Some(1200));
        assert_eq!(parse_decimal("12.5"), Some(1250));
        assert_eq!(parse_decimal("12"), Some(1200));
        assert_eq!(parse_decimal("1.234"), None);
        assert_eq!(parse_decimal("-1.00"), None);
        assert_eq!(parse_decimal("abc"), None);
    }

    #[test]
    fn names_split_at_the_last_space() {
        assert_eq!(split_name("Ada King Lovelace"), ("Ada King".into(), "Lovelace".into()));
        assert_eq!(split_name("Plato"), ("Plato".into(), "Plato".into()));
    }
}

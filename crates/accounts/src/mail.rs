//! Outgoing mail: SMTP through lettre when configured; otherwise each message
//! is written as an `.eml` file under `<data>/mail/outbox`, where a new user
//! can read it and tests can follow its links.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lettre::message::Body;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use seldesk_domain::Actor;
use seldesk_privacy::{BoxFuture, Disclosure, DisclosureGate, Transport};

use crate::AccountError;

/// The relay's id in the provider registry.
pub const RELAY: &str = "smtp_relay";

/// The opaque ledger subject of a mail address: what the disclosure ledger
/// records for mail sent to it (the address itself is not kept there).
pub fn mail_subject(address: &str) -> String {
    format!("mail:{}", crate::secret::token_hash(&address.trim().to_lowercase()))
}

/// A plain-text message.
#[derive(Debug, Clone)]
pub struct OutgoingMail {
    pub to: String,
    pub subject: String,
    pub text: String,
}

/// Where mail goes.
#[derive(Clone)]
pub enum Mailer {
    Outbox { dir: PathBuf, from: String },
    Smtp { transport: AsyncSmtpTransport<Tokio1Executor>, from: String, gate: Option<Box<DisclosureGate>> },
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mailer::Outbox { dir, .. } => write!(f, "Mailer::Outbox({})", dir.display()),
            // The SMTP URL may hold a password: never print it.
            Mailer::Smtp { .. } => f.write_str("Mailer::Smtp"),
        }
    }
}

impl Mailer {
    pub fn outbox(dir: PathBuf, from: impl Into<String>) -> Self {
        Self::Outbox { dir, from: from.into() }
    }

    /// `smtp://host:25`, `smtp://user:pass@host:587?tls=required` or `smtps://…`.
    pub fn smtp(url: &str, from: impl Into<String>) -> Result<Self, AccountError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| AccountError::Internal(format!("invalid SMTP URL: {e}")))?
            .build();
        Ok(Self::Smtp { transport, from: from.into(), gate: None })
    }

    /// Sends every SMTP message through the disclosure gate: the relay is a
    /// third party, so it gets only its registered fields, and each message
    /// is recorded in the ledger. The outbox folder stays on our own disk.
    pub fn with_relay_gate(self, gate: DisclosureGate) -> Self {
        match self {
            Mailer::Smtp { transport, from, .. } => Mailer::Smtp { transport, from, gate: Some(Box::new(gate)) },
            outbox => outbox,
        }
    }

    /// The folder messages are written to instead of being sent, when no
    /// SMTP server is configured.
    pub fn outbox_dir(&self) -> Option<&std::path::Path> {
        match self {
            Mailer::Outbox { dir, .. } => Some(dir),
            Mailer::Smtp { .. } => None,
        }
    }

    fn from(&self) -> &str {
        match self {
            Mailer::Outbox { from, .. } | Mailer::Smtp { from, .. } => from,
        }
    }

    /// Sends one message.
    pub async fn send(&self, mail: &OutgoingMail) -> Result<(), AccountError> {
        self.send_with_headers(mail, &[]).await
    }

    /// Sends one message with extra headers (`List-Unsubscribe`, …); names
    /// are ASCII header names, values are sent as given.
    pub async fn send_with_headers(
        &self,
        mail: &OutgoingMail,
        headers: &[(&'static str, String)],
    ) -> Result<(), AccountError> {
        let bad = |e: String| AccountError::Internal(format!("cannot build the message: {e}"));
        let mut builder = Message::builder()
            .from(self.from().parse().map_err(|e: lettre::address::AddressError| bad(e.to_string()))?)
            .to(mail.to.parse().map_err(|e: lettre::address::AddressError| bad(e.to_string()))?)
            .subject(&mail.subject);
        for (name, value) in headers {
            builder = builder.raw_header(HeaderValue::new(HeaderName::new_from_ascii_str(name), value.clone()));
        }
        let message = builder
            .header(ContentType::TEXT_PLAIN)
            .body(Body::new(mail.text.replace("\r\n", "\n").replace('\n', "\r\n")))
            .map_err(|e| bad(e.to_string()))?;
        match self {
            Mailer::Outbox { dir, .. } => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| AccountError::Internal(format!("cannot create the outbox {}: {e}", dir.display())))?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map_err(|e| AccountError::Internal(format!("cannot write to the outbox: {e}")))?;
            }
            Mailer::Smtp { transport, gate: None, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| AccountError::Internal(format!("SMTP delivery failed: {e}")))?;
            }
            Mailer::Smtp { transport, gate: Some(gate), .. } => {
                let disclosure = Disclosure {
                    recipient: RELAY.into(),
                    recipient_name: None,
                    purpose: "mail".into(),
                    subject: mail_subject(&mail.to),
                    fields: BTreeMap::from([
                        ("mail.recipient".to_string(), mail.to.clone()),
                        ("mail.content".to_string(), format!("{}\n\n{}", mail.subject, mail.text)),
                    ]),
                };
                let relay = Relay { transport, message: std::sync::Mutex::new(Some(message)) };
                gate.send(&Actor::System, &disclosure, &relay)
                    .await
                    .map_err(|e| AccountError::Internal(e.to_string()))?;
            }
        }
        Ok(())
    }
}

/// One built message handed to the SMTP server once the gate approved it.
struct Relay<'a> {
    transport: &'a AsyncSmtpTransport<Tokio1Executor>,
    message: std::sync::Mutex<Option<Message>>,
}

impl Transport for Relay<'_> {
    fn deliver<'a>(&'a self, _: &'a Disclosure) -> BoxFuture<'a, Result<(), String>> {
        let message = self.message.lock().ok().and_then(|mut m| m.take());
        Box::pin(async move {
            let message = message.ok_or("the message was already sent")?;
            self.transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP delivery failed: {e}"))
        })
    }
}

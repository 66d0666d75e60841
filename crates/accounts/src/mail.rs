//! Outgoing mail: SMTP through lettre when configured; otherwise each message
//! is written as an `.eml` file under `<data>/mail/outbox`, where a new user
//! can read it and tests can follow its links.

use seldesk_domain::Fault;
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
            .map_err(|e| AccountError::Internal(Fault::new("invalid SMTP URL", e)))?
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
        let bad = |e: String| AccountError::Internal(Fault::new("cannot build the message", e));
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
                tokio::fs::create_dir_all(dir).await.map_err(|e| {
                    AccountError::Internal(Fault::new(format!("cannot create the outbox {}", dir.display()), e))
                })?;
                AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map_err(|e| AccountError::Internal(Fault::new("cannot write to the outbox", e)))?;
            }
            Mailer::Smtp { transport, gate: None, .. } => {
                transport
                    .send(message)
                    .await
                    .map_err(|e| AccountError::Internal(Fault::new("SMTP delivery failed", e)))?;
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
                    .map_err(|e| AccountError::Internal(Fault::new("the mail relay failed", e)))?;
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

/// Outbox files (`*.eml`), for retention and erasure.
fn outbox_files(dir: &std::path::Path) -> Result<Vec<std::fs::DirEntry>, AccountError> {
    match std::fs::read_dir(dir) {
        Ok(rd) => Ok(rd
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".eml") && e.file_type().is_ok_and(|t| t.is_file()))
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AccountError::Internal(Fault::new(format!("cannot read the outbox {}", dir.display()), e))),
    }
}

/// The recipients of a message file: its `To:` header, read from at most
/// the first 64 KiB (headers come first).
fn recipients_of(path: &std::path::Path) -> std::io::Result<String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)?.take(64 * 1024).read_to_end(&mut head)?;
    let text = String::from_utf8_lossy(&head);
    let mut to = String::new();
    let mut in_to = false;
    for line in text.split("\r\n").flat_map(|l| l.split('\n')) {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if in_to {
                to.push_str(line);
            }
            continue;
        }
        in_to = line.len() >= 3 && line[..3].eq_ignore_ascii_case("to:");
        if in_to {
            to.push_str(&line[3..]);
        }
    }
    Ok(to.to_lowercase())
}

/// Deletes every outbox message addressed to `email`; returns how many.
pub fn delete_outbox_mail_to(dir: &std::path::Path, email: &str) -> Result<usize, AccountError> {
    let email = email.trim().to_lowercase();
    let mut n = 0;
    for entry in outbox_files(dir)? {
        let path = entry.path();
        let to = recipients_of(&path)
            .map_err(|e| AccountError::Internal(Fault::new(format!("cannot read {}", path.display()), e)))?;
        let addressed = to.split([',', '<', '>', ' ']).any(|part| part.trim() == email);
        if addressed {
            remove_outbox_file(&path)?;
            n += 1;
        }
    }
    Ok(n)
}

fn remove_outbox_file(path: &std::path::Path) -> Result<(), AccountError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AccountError::Internal(Fault::new(format!("cannot delete {}", path.display()), e))),
    }
}

/// Retention of the outbox folder (`outgoing_mail`): a message goes the
/// policy's period after it was written. Deletions that fail are reported
/// (the run fails and is retried), never ignored.
pub struct OutboxEraser {
    pub dir: Option<PathBuf>,
}

impl seldesk_privacy::Eraser for OutboxEraser {
    fn category(&self) -> &'static str {
        "outgoing_mail"
    }

    fn candidates<'a>(
        &'a self,
        cutoff: time::OffsetDateTime,
    ) -> BoxFuture<'a, Result<Vec<seldesk_privacy::Candidate>, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let Some(dir) = &self.dir else { return Ok(Vec::new()) };
            let mut out = Vec::new();
            for (name, at) in outbox_times(dir)? {
                if at <= cutoff {
                    out.push(seldesk_privacy::Candidate { record: name, subject: None, start: at, country: None });
                }
            }
            Ok(out)
        })
    }

    fn erase<'a>(
        &'a self,
        records: &'a [seldesk_privacy::Candidate],
    ) -> BoxFuture<'a, Result<u64, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let Some(dir) = &self.dir else { return Ok(0) };
            let mut n = 0;
            for c in records {
                // Names come from our own listing; check the shape anyway.
                let ok = c.record.ends_with(".eml") && !c.record.contains(['/', '\\']) && !c.record.starts_with('.');
                if ok {
                    remove_outbox_file(&dir.join(&c.record)).map_err(privacy)?;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<seldesk_privacy::Census, seldesk_privacy::PrivacyError>> {
        Box::pin(async move {
            let times = match &self.dir {
                Some(dir) => outbox_times(dir)?,
                None => Vec::new(),
            };
            Ok(seldesk_privacy::Census { live: times.len() as u64, oldest: times.iter().map(|t| t.1).min() })
        })
    }
}

fn privacy(e: AccountError) -> seldesk_privacy::PrivacyError {
    seldesk_privacy::PrivacyError::Invalid(e.to_string())
}

/// (file name, when written) of each outbox message.
fn outbox_times(dir: &std::path::Path) -> Result<Vec<(String, time::OffsetDateTime)>, seldesk_privacy::PrivacyError> {
    let mut out = Vec::new();
    for entry in outbox_files(dir).map_err(privacy)? {
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .map_err(|e| seldesk_privacy::PrivacyError::Invalid(format!("cannot read the outbox: {e}")))?;
        out.push((entry.file_name().to_string_lossy().into_owned(), time::OffsetDateTime::from(modified)));
    }
    Ok(out)
}

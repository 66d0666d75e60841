//! Subscriptions and payments as stored, the finance console's views and
//! refunds, and the retention of payment records (ACC-4, ACC-6): kept for
//! the legal period of the buyer's country, then erased.

use seldesk_accounts::{StaffMember, finance};
use seldesk_domain::Role;
use seldesk_privacy::{BoxFuture, Candidate, Census, Eraser, PrivacyError};
use seldesk_store::{Db, from_millis, to_millis};
use serde::Serialize;
use sqlx::Row;
use sqlx::any::AnyRow;
use time::OffsetDateTime;

use crate::flow::order_fields;
use crate::processor::{Call, Outcome};
use crate::{Billing, BillingError, FailedRenewal};

/// The opaque reference of an account holder in ledgers and the audit trail.
pub(crate) fn subject(account_id: &str) -> String {
    seldesk_domain::Subject::person(account_id).into_string()
}

/// A subscription as stored.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Subscription {
    pub id: String,
    pub account_id: String,
    pub database_id: String,
    pub plan: String,
    pub interval: String,
    pub seats: i64,
    pub currency: String,
    pub country: Option<String>,
    /// What each renewal costs, tax included.
    pub amount_cents: i64,
    pub processor: String,
    /// Whether the processor holds a token for renewals (the token itself stays here).
    pub has_token: bool,
    #[serde(skip)]
    pub(crate) processor_token: Option<secrecy::SecretString>,
    pub status: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_start: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub period_end: Option<OffsetDateTime>,
    pub credit_cents: i64,
    pub failed_attempts: i64,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_retry_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// A payment as stored (never card data: there is no column for it).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Payment {
    pub id: String,
    pub account_id: Option<String>,
    pub subscription_id: Option<String>,
    pub kind: String,
    pub processor: String,
    pub processor_order: Option<String>,
    pub processor_payment: Option<String>,
    #[serde(skip)]
    pub(crate) return_mac: Option<String>,
    pub status: String,
    pub amount_cents: i64,
    pub refunded_cents: i64,
    pub currency: String,
    pub description: String,
    pub reference: String,
    pub country: Option<String>,
    pub error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub captured_at: Option<OffsetDateTime>,
}

impl Payment {
    /// The amount as text ("29.00 EUR").
    pub fn amount_text(&self) -> String {
        crate::money(self.amount_cents, &self.currency)
    }

    /// What was refunded, as text.
    pub fn refunded_text(&self) -> String {
        crate::money(self.refunded_cents, &self.currency)
    }
}

const SUB_COLUMNS: &str = "id, account_id, database_id, plan, billing_interval, seats, currency, country, amount_cents, processor, processor_token, status, period_start, period_end, credit_cents, failed_attempts, next_retry_at, last_error";
const PAY_COLUMNS: &str = "id, account_id, subscription_id, kind, processor, processor_order, processor_payment, return_mac, status, amount_cents, refunded_cents, currency, description, reference, country, error, created_at, captured_at";

fn sub_from(r: &AnyRow) -> Result<Subscription, sqlx::Error> {
    let token: Option<String> = r.try_get("processor_token")?;
    Ok(Subscription {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        database_id: r.try_get("database_id")?,
        plan: r.try_get("plan")?,
        interval: r.try_get("billing_interval")?,
        seats: r.try_get("seats")?,
        currency: r.try_get("currency")?,
        country: r.try_get("country")?,
        amount_cents: r.try_get("amount_cents")?,
        processor: r.try_get("processor")?,
        has_token: token.is_some(),
        processor_token: token.map(Into::into),
        status: r.try_get("status")?,
        period_start: r.try_get::<Option<i64>, _>("period_start")?.map(from_millis),
        period_end: r.try_get::<Option<i64>, _>("period_end")?.map(from_millis),
        credit_cents: r.try_get("credit_cents")?,
        failed_attempts: r.try_get("failed_attempts")?,
        next_retry_at: r.try_get::<Option<i64>, _>("next_retry_at")?.map(from_millis),
        last_error: r.try_get("last_error")?,
    })
}

fn pay_from(r: &AnyRow) -> Result<Payment, sqlx::Error> {
    Ok(Payment {
        id: r.try_get("id")?,
        account_id: r.try_get("account_id")?,
        subscription_id: r.try_get("subscription_id")?,
        kind: r.try_get("kind")?,
        processor: r.try_get("processor")?,
        processor_order: r.try_get("processor_order")?,
        processor_payment: r.try_get("processor_payment")?,
        return_mac: r.try_get("return_mac")?,
        status: r.try_get("status")?,
        amount_cents: r.try_get("amount_cents")?,
        refunded_cents: r.try_get("refunded_cents")?,
        currency: r.try_get("currency")?,
        description: r.try_get("description")?,
        reference: r.try_get("reference")?,
        country: r.try_get("country")?,
        error: r.try_get("error")?,
        created_at: from_millis(r.try_get("created_at")?),
        captured_at: r.try_get::<Option<i64>, _>("captured_at")?.map(from_millis),
    })
}

impl Billing {
    pub(crate) async fn subscription(&self, id: &str) -> Result<Subscription, BillingError> {
        let sql = format!("SELECT {SUB_COLUMNS} FROM subscriptions WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.inner.db.pool()).await?;
        row.map(|r| sub_from(&r)).transpose()?.ok_or_else(|| BillingError::NotFound("No such subscription.".into()))
    }

    /// The database's latest subscription, whatever its state.
    pub async fn subscription_of(&self, database_id: &str) -> Result<Option<Subscription>, BillingError> {
        let sql = format!(
            "SELECT {SUB_COLUMNS} FROM subscriptions WHERE database_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(database_id).fetch_optional(self.inner.db.pool()).await?;
        Ok(row.map(|r| sub_from(&r)).transpose()?)
    }

    pub(crate) async fn payment(&self, id: &str) -> Result<Payment, BillingError> {
        let sql = format!("SELECT {PAY_COLUMNS} FROM payments WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.inner.db.pool()).await?;
        row.map(|r| pay_from(&r)).transpose()?.ok_or_else(|| BillingError::NotFound("No such payment.".into()))
    }

    /// Finds the payment a processor event is about.
    pub(crate) async fn payment_by_processor(
        &self,
        processor: &str,
        order: Option<&str>,
        payment: Option<&str>,
        reference: Option<&str>,
    ) -> Result<Option<Payment>, BillingError> {
        let tries = [("processor_order", order), ("processor_payment", payment), ("reference", reference)];
        for (column, value) in tries {
            let Some(value) = value else { continue };
            let sql = format!("SELECT {PAY_COLUMNS} FROM payments WHERE processor = $1 AND {column} = $2 LIMIT 1");
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(processor)
                .bind(value)
                .fetch_optional(self.inner.db.pool())
                .await?;
            if let Some(r) = row {
                return Ok(Some(pay_from(&r)?));
            }
        }
        Ok(None)
    }

    /// An account's payments, newest first.
    pub async fn payments_of(&self, account_id: &str) -> Result<Vec<Payment>, BillingError> {
        let sql = format!("SELECT {PAY_COLUMNS} FROM payments WHERE account_id = $1 ORDER BY created_at DESC");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account_id).fetch_all(self.inner.db.pool()).await?;
        Ok(rows.iter().map(pay_from).collect::<Result<_, _>>()?)
    }

    fn finance_only(staff: &StaffMember) -> Result<(), BillingError> {
        if staff.has(Role::Finance) {
            Ok(())
        } else {
            Err(BillingError::Forbidden("The finance console is for the finance role.".into()))
        }
    }

    /// Every payment, for the finance role; the read is audited.
    pub async fn staff_payments(&self, staff: &StaffMember) -> Result<Vec<Payment>, BillingError> {
        Self::finance_only(staff)?;
        let sql = format!("SELECT {PAY_COLUMNS} FROM payments ORDER BY created_at DESC LIMIT 500");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.inner.db.pool()).await?;
        self.audit(&staff.actor(), "billing.payments_read", None, None, serde_json::json!({ "rows": rows.len() }))
            .await?;
        Ok(rows.iter().map(pay_from).collect::<Result<_, _>>()?)
    }

    /// Subscriptions whose renewal failed (retrying or lapsed), for the finance role.
    pub async fn failed_renewals(&self, staff: &StaffMember) -> Result<Vec<FailedRenewal>, BillingError> {
        Self::finance_only(staff)?;
        let rows = sqlx::query(
            "SELECT id, account_id, database_id, status, failed_attempts, last_error, next_retry_at FROM subscriptions WHERE failed_attempts > 0 AND status IN ('past_due', 'lapsed') ORDER BY id DESC LIMIT 500",
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FailedRenewal {
                    subscription: r.try_get("id")?,
                    account_id: r.try_get("account_id")?,
                    database_id: r.try_get("database_id")?,
                    status: r.try_get("status")?,
                    failed_attempts: r.try_get("failed_attempts")?,
                    last_error: r.try_get("last_error")?,
                    next_retry_at: r.try_get::<Option<i64>, _>("next_retry_at")?.map(from_millis),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// Refunds part or all of a captured payment through its processor
    /// (finance role; a reason is required and audited).
    pub async fn refund(
        &self,
        staff: &StaffMember,
        payment_id: &str,
        amount_cents: Option<i64>,
        reason: &str,
    ) -> Result<Payment, BillingError> {
        Self::finance_only(staff)?;
        if reason.trim().len() < 3 {
            return Err(BillingError::invalid("reason", "Say why the payment is refunded."));
        }
        if seldesk_privacy::card::contains_card_number(reason) {
            return Err(BillingError::invalid("reason", seldesk_privacy::card::CARD_NUMBER_REFUSED));
        }
        let p = self.payment(payment_id).await?;
        if p.status != "captured" {
            return Err(BillingError::Conflict(format!(
                "Only a captured payment can be refunded; this one is {}.",
                p.status
            )));
        }
        let left = p.amount_cents - p.refunded_cents;
        let amount = amount_cents.unwrap_or(left);
        if amount <= 0 || amount > left {
            return Err(BillingError::invalid(
                "amount",
                format!("Refund between 0.01 and {}.", crate::money(left, &p.currency)),
            ));
        }
        let processor = self.processor(&p.processor)?.clone();
        let processor_payment = p
            .processor_payment
            .clone()
            .ok_or_else(|| BillingError::Conflict("The processor's payment id is unknown.".into()))?;
        let subject = p.account_id.as_deref().map(subject).unwrap_or_else(|| format!("payment:{}", p.id));
        let fields = order_fields(&amount, &p.currency, &p.description, &p.reference, None);
        match self
            .through_gate(
                &staff.actor(),
                processor.as_ref(),
                &subject,
                fields,
                &Call::Refund { payment: processor_payment },
            )
            .await?
        {
            Outcome::Refunded { refund } => {
                self.apply_refund(&p.id, amount).await?;
                self.audit(
                    &staff.actor(),
                    "billing.refunded",
                    Some(&subject),
                    Some(&format!("payment:{}", p.id)),
                    serde_json::json!({ "amount": amount, "currency": p.currency, "refund": refund, "reason": reason.trim() }),
                )
                .await?;
                self.payment(&p.id).await
            }
            other => Err(BillingError::Processor(format!("the processor did not refund: {other:?}"))),
        }
    }

    /// Records a refund once: the amount never exceeds what was captured.
    pub(crate) async fn apply_refund(&self, payment_id: &str, amount: i64) -> Result<(), BillingError> {
        sqlx::query("UPDATE payments SET refunded_cents = CASE WHEN refunded_cents + $1 > amount_cents THEN amount_cents ELSE refunded_cents + $1 END WHERE id = $2 AND status = 'captured'")
            .bind(amount)
            .bind(payment_id)
            .execute(self.inner.db.pool())
            .await?;
        sqlx::query("UPDATE payments SET status = 'refunded' WHERE id = $1 AND status = 'captured' AND refunded_cents >= amount_cents")
            .bind(payment_id)
            .execute(self.inner.db.pool())
            .await?;
        Ok(())
    }
}

/// Payment records (`payment_order`): erased when the legal period of the
/// buyer's country ends, live or in the finance archive; subscriptions that
/// ended go with them.
pub struct PaymentEraser {
    pub db: Db,
}

impl Eraser for PaymentEraser {
    fn category(&self) -> &'static str {
        "payment_order"
    }

    fn candidates<'a>(&'a self, cutoff: OffsetDateTime) -> BoxFuture<'a, Result<Vec<Candidate>, PrivacyError>> {
        Box::pin(async move {
            let mut out = Vec::new();
            let live = sqlx::query("SELECT id, account_id, country, created_at FROM payments WHERE created_at <= $1")
                .bind(to_millis(cutoff))
                .fetch_all(self.db.pool())
                .await?;
            for r in &live {
                out.push(Candidate {
                    record: format!("payment:{}", r.try_get::<String, _>("id")?),
                    subject: r.try_get::<Option<String>, _>("account_id")?.map(|a| subject(&a)),
                    start: from_millis(r.try_get("created_at")?),
                    country: r.try_get("country")?,
                });
            }
            let ended = sqlx::query(
                "SELECT id, account_id, country, cancelled_at FROM subscriptions WHERE status IN ('cancelled', 'lapsed') AND cancelled_at <= $1",
            )
            .bind(to_millis(cutoff))
            .fetch_all(self.db.pool())
            .await?;
            for r in &ended {
                out.push(Candidate {
                    record: format!("subscription:{}", r.try_get::<String, _>("id")?),
                    subject: Some(subject(&r.try_get::<String, _>("account_id")?)),
                    start: from_millis(r.try_get("cancelled_at")?),
                    country: r.try_get("country")?,
                });
            }
            out.extend(finance::archived_candidates(&self.db, "payment", cutoff).await?);
            Ok(out)
        })
    }

    fn erase<'a>(&'a self, records: &'a [Candidate]) -> BoxFuture<'a, Result<u64, PrivacyError>> {
        Box::pin(async move {
            let mut n = 0;
            for c in records {
                let (sql, id) = if let Some(id) = c.record.strip_prefix("payment:") {
                    ("DELETE FROM payments WHERE id = $1", id.to_string())
                } else if let Some(id) = c.record.strip_prefix("subscription:") {
                    ("DELETE FROM subscriptions WHERE id = $1", id.to_string())
                } else if let Some(done) = finance::erase_archived(&self.db, "payment", &c.record).await? {
                    n += done;
                    continue;
                } else {
                    continue;
                };
                n += sqlx::query(sql).bind(id).execute(self.db.pool()).await?.rows_affected();
            }
            Ok(n)
        })
    }

    fn census<'a>(&'a self) -> BoxFuture<'a, Result<Census, PrivacyError>> {
        Box::pin(async move {
            let live = "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM payments";
            Ok(finance::census_with_archive(&self.db, live, "payment").await?)
        })
    }
}

/// The billing section of a person's access export: subscriptions (without
/// the processor's token), payments and invoices. On erasure, payments and
/// invoices move to the finance archive (tax law) and subscriptions go.
pub struct BillingRecords {
    pub db: Db,
    pub policy: std::sync::Arc<seldesk_domain::Policy>,
}

impl seldesk_privacy::PersonalDataStore for BillingRecords {
    fn section(&self) -> &'static str {
        "billing"
    }

    fn category(&self) -> &'static str {
        "payment_order"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["subscriptions", "payments", "invoices"]
    }

    fn export<'a>(&'a self, subject: &'a str) -> BoxFuture<'a, Result<serde_json::Value, PrivacyError>> {
        Box::pin(async move {
            let Some(account) = subject.strip_prefix("person:") else { return Ok(serde_json::Value::Null) };
            let subs = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {SUB_COLUMNS} FROM subscriptions WHERE account_id = $1 ORDER BY created_at"
            )))
            .bind(account)
            .fetch_all(self.db.pool())
            .await?;
            let pays = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PAY_COLUMNS} FROM payments WHERE account_id = $1 ORDER BY created_at"
            )))
            .bind(account)
            .fetch_all(self.db.pool())
            .await?;
            let invoices = sqlx::query(
                "SELECT number, currency, total_cents, issued_at, document FROM invoices WHERE account_id = $1 ORDER BY issued_at",
            )
            .bind(account)
            .fetch_all(self.db.pool())
            .await?;
            let subs: Vec<Subscription> = subs.iter().map(sub_from).collect::<Result<_, _>>()?;
            let pays: Vec<Payment> = pays.iter().map(pay_from).collect::<Result<_, _>>()?;
            let invoices = invoices
                .iter()
                .map(|r| {
                    Ok(serde_json::json!({
                        "number": r.try_get::<String, _>("number")?,
                        "currency": r.try_get::<String, _>("currency")?,
                        "total_cents": r.try_get::<i64, _>("total_cents")?,
                        "issued_at": from_millis(r.try_get("issued_at")?).to_string(),
                        "document": r.try_get::<Option<String>, _>("document")?
                            .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok()),
                    }))
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            Ok(serde_json::json!({
                "note": "Card details are never stored by Seldesk: the processor keeps them and gives us a token.",
                "subscriptions": subs,
                "payments": pays,
                "invoices": invoices,
            }))
        })
    }

    fn erase<'a>(
        &'a self,
        person: &'a seldesk_privacy::Person,
    ) -> BoxFuture<'a, Result<seldesk_privacy::Erased, PrivacyError>> {
        Box::pin(async move {
            let account = person.account_id.as_str();
            let now = person.at;
            let mut tx = self.db.begin_write().await?;
            // Invoices and payments leave the account for the restricted
            // finance archive, detached from any account (tax law).
            let invoices = sqlx::query(
                "SELECT id, number, buyer_name, buyer_email, buyer_address, country, currency, total_cents, issued_at, document FROM invoices WHERE account_id = $1",
            )
            .bind(account)
            .fetch_all(&mut *tx)
            .await?;
            let mut kept_until = Vec::new();
            for r in &invoices {
                let (id, country, issued): (String, Option<String>, i64) =
                    (r.try_get("id")?, r.try_get("country")?, r.try_get("issued_at")?);
                let data = serde_json::json!({
                    "number": r.try_get::<String, _>("number")?,
                    "buyer_name": r.try_get::<String, _>("buyer_name")?,
                    "buyer_email": r.try_get::<String, _>("buyer_email")?,
                    "buyer_address": r.try_get::<Option<String>, _>("buyer_address")?,
                    "currency": r.try_get::<String, _>("currency")?,
                    "total_cents": r.try_get::<i64, _>("total_cents")?,
                    "issued_at": from_millis(issued).to_string(),
                    "document": r.try_get::<Option<String>, _>("document")?
                        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok()),
                });
                let issued = from_millis(issued);
                finance::archive(&mut tx, "invoice", &format!("invoice:{id}"), &data, country.as_deref(), issued, now)
                    .await?;
                if let Some(rule) = self.policy.retention("invoice") {
                    kept_until.push(rule.due(issued, country.as_deref()).date());
                }
            }
            sqlx::query("DELETE FROM invoices WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
            let payments = sqlx::query(
                "SELECT id, kind, processor, processor_order, processor_payment, status, amount_cents, refunded_cents, currency, description, reference, country, created_at FROM payments WHERE account_id = $1",
            )
            .bind(account)
            .fetch_all(&mut *tx)
            .await?;
            for r in &payments {
                let (id, country, created): (String, Option<String>, i64) =
                    (r.try_get("id")?, r.try_get("country")?, r.try_get("created_at")?);
                let mut data = serde_json::Map::new();
                for column in ["kind", "processor", "status", "currency", "description", "reference"] {
                    data.insert(column.into(), r.try_get::<String, _>(column)?.into());
                }
                for column in ["processor_order", "processor_payment"] {
                    data.insert(column.into(), r.try_get::<Option<String>, _>(column)?.into());
                }
                for column in ["amount_cents", "refunded_cents"] {
                    data.insert(column.into(), r.try_get::<i64, _>(column)?.into());
                }
                let created = from_millis(created);
                data.insert("created_at".into(), created.to_string().into());
                let data = serde_json::Value::Object(data);
                finance::archive(&mut tx, "payment", &format!("payment:{id}"), &data, country.as_deref(), created, now)
                    .await?;
                if let Some(rule) = self.policy.retention("payment_order") {
                    kept_until.push(rule.due(created, country.as_deref()).date());
                }
            }
            sqlx::query("DELETE FROM payments WHERE account_id = $1").bind(account).execute(&mut *tx).await?;
            // Subscriptions and the processors' tokens are simply gone.
            let subs = sqlx::query("DELETE FROM subscriptions WHERE account_id = $1")
                .bind(account)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            tx.commit().await?;
            let mut out = seldesk_privacy::Erased { records: subs, ..Default::default() };
            if subs > 0 {
                out.erased.push(format!("{subs} subscription(s), with the payment tokens our processors gave us"));
            }
            match kept_until.iter().max() {
                Some(until) => {
                    let what = match payments.len() {
                        0 => format!("{} invoice(s)", invoices.len()),
                        n => format!("{} invoice(s) and {n} payment record(s)", invoices.len()),
                    };
                    out.kept.push(format!(
                        "{what}, in a restricted finance archive detached from your account, for the legal period of your country (tax law), until {until}"
                    ))
                }
                None => out.erased.push("invoices and payment records: you had none".into()),
            }
            Ok(out)
        })
    }
}

impl seldesk_privacy::AccountActivity for BillingRecords {
    fn activity<'a>(&'a self, account_id: &'a str) -> BoxFuture<'a, Result<seldesk_privacy::Activity, PrivacyError>> {
        Box::pin(async move {
            let subscribed: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM subscriptions WHERE account_id = $1 AND status = 'active'")
                    .bind(account_id)
                    .fetch_one(self.db.pool())
                    .await?;
            if subscribed > 0 {
                return Ok(seldesk_privacy::Activity::Live);
            }
            let last: Option<i64> = sqlx::query_scalar("SELECT MAX(issued_at) FROM invoices WHERE account_id = $1")
                .bind(account_id)
                .fetch_one(self.db.pool())
                .await?;
            Ok(match last {
                Some(at) => seldesk_privacy::Activity::Last(from_millis(at)),
                None => seldesk_privacy::Activity::None,
            })
        })
    }
}

//! The subscription's life: quote, checkout, the buyer's return, renewals
//! with retries, plan changes with proration, cancellation and reactivation.

use secrecy::ExposeSecret;
use seldesk_domain::Fault;
use std::collections::BTreeMap;

use seldesk_domain::Actor;
use seldesk_store::to_millis;
use seldesk_tenants::{CustomerDb, DbStatus};
use serde::Serialize;
use sqlx::Row;
use time::{Duration, OffsetDateTime};

use crate::processor::{Call, Outcome, decimal, field};
use crate::records::{Payment, Subscription};
use crate::{Billing, BillingError, Per};

/// How often a subscription is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Interval {
    Monthly,
    Yearly,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Self, BillingError> {
        match s {
            "monthly" => Ok(Self::Monthly),
            "yearly" => Ok(Self::Yearly),
            other => Err(BillingError::invalid("interval", format!("`{other}` is not monthly or yearly."))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Monthly => "monthly",
            Self::Yearly => "yearly",
        }
    }

    /// The end of a period that starts at `start` (same day of the month, clamped).
    pub fn after(self, start: OffsetDateTime) -> OffsetDateTime {
        let months = match self {
            Self::Monthly => 1,
            Self::Yearly => 12,
        };
        let date = start.date();
        let total = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
        let (year, month) = (total.div_euclid(12), (total.rem_euclid(12) + 1) as u8);
        let month = time::Month::try_from(month).unwrap_or(time::Month::January);
        let day = date.day().min(time::util::days_in_month(month, year));
        time::Date::from_calendar_date(year, month, day)
            .map(|d| start.replace_date(d))
            .unwrap_or(start + Duration::days(30))
    }
}

/// One line of a quote, printed as is on the invoice.
pub type QuoteLine = crate::pdf::InvoiceLine;

/// What a buyer will pay, computed on the server (amounts never come from the browser).
#[derive(Debug, Clone, Serialize)]
pub struct Quote {
    pub plan: String,
    pub plan_name: String,
    pub interval: Interval,
    pub seats: i64,
    pub currency: String,
    pub country: Option<String>,
    pub lines: Vec<QuoteLine>,
    pub subtotal_cents: i64,
    pub tax_label: Option<String>,
    pub tax_cents: i64,
    pub total_cents: i64,
    /// The full price of one period, the amount of each renewal.
    pub period_cents: i64,
}

impl Billing {
    /// Prices a plan for an account (its country decides currency and tax).
    pub async fn quote(
        &self,
        account_id: &str,
        database: &str,
        plan: &str,
        interval: Interval,
        seats: i64,
    ) -> Result<Quote, BillingError> {
        let account = self.account(account_id).await?;
        self.quote_for(account.country.as_deref(), database, plan, interval, seats)
    }

    pub(crate) fn quote_for(
        &self,
        country: Option<&str>,
        database: &str,
        plan_id: &str,
        interval: Interval,
        seats: i64,
    ) -> Result<Quote, BillingError> {
        let s = &self.inner.settings;
        let plan = s.plan(plan_id).ok_or_else(|| {
            let ids: Vec<&str> = s.plans.iter().map(|p| p.id.as_str()).collect();
            BillingError::invalid("plan", format!("`{plan_id}` is not a plan; choose one of {}.", ids.join(", ")))
        })?;
        let seats = match plan.per {
            Per::Database => 1,
            Per::User if (1..=10_000).contains(&seats) => seats,
            Per::User => return Err(BillingError::invalid("seats", "Give the number of users, from 1 to 10,000.")),
        };
        let currency = s.currency_for(country).to_string();
        let price = plan
            .prices
            .get(&currency)
            .ok_or_else(|| BillingError::Internal(Fault::msg(format!("plan {} has no {currency} price", plan.id))))?;
        let unit = match interval {
            Interval::Monthly => price.monthly,
            Interval::Yearly => price.yearly,
        };
        let what = match plan.per {
            Per::Database => format!("{} plan, {} — database {database}", plan.name, interval.as_str()),
            Per::User => format!("{} plan, {} — database {database}, per user", plan.name, interval.as_str()),
        };
        let lines =
            vec![QuoteLine { description: what, quantity: seats, unit_cents: unit, amount_cents: unit * seats }];
        Ok(self.totals(plan.id.clone(), plan.name.clone(), interval, seats, currency, country, lines))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn totals(
        &self,
        plan: String,
        plan_name: String,
        interval: Interval,
        seats: i64,
        currency: String,
        country: Option<&str>,
        lines: Vec<QuoteLine>,
    ) -> Quote {
        let subtotal: i64 = lines.iter().map(|l| l.amount_cents).sum();
        let tax = self.inner.settings.tax_for(country);
        // Half up, in minor units.
        let tax_cents = tax.map(|t| (subtotal * t.rate_bp + 5_000).div_euclid(10_000)).unwrap_or(0);
        let period = lines.first().map(|l| l.unit_cents * seats).unwrap_or(0);
        let period_tax = tax.map(|t| (period * t.rate_bp + 5_000).div_euclid(10_000)).unwrap_or(0);
        Quote {
            plan,
            plan_name,
            interval,
            seats,
            currency,
            country: country.map(str::to_ascii_uppercase),
            lines,
            subtotal_cents: subtotal,
            tax_label: tax.map(|t| t.label.clone()),
            tax_cents,
            total_cents: subtotal + tax_cents,
            period_cents: period + period_tax,
        }
    }

    /// Whether a database can be subscribed now, and if not why.
    fn check_subscribable(&self, d: &CustomerDb) -> Result<(), BillingError> {
        match d.status {
            DbStatus::Active => Ok(()),
            DbStatus::Deactivated if d.reactivate_until.is_some_and(|u| u > self.now()) => Ok(()),
            DbStatus::Deactivated => Err(BillingError::Conflict(
                "The grace period is over: this database is being destroyed and cannot be subscribed.".into(),
            )),
            DbStatus::Moving => {
                Err(BillingError::Conflict("The database is moving; subscribe once the move has finished.".into()))
            }
        }
    }

    /// Starts a checkout: records a pending subscription and a payment, opens
    /// the processor's hosted page and returns its address. The price comes
    /// from the configuration, never from the request.
    pub async fn subscribe(
        &self,
        account_id: &str,
        database_id: &str,
        plan: &str,
        interval: Interval,
        seats: i64,
        processor: &str,
    ) -> Result<String, BillingError> {
        let d = self.inner.databases.get(account_id, database_id).await?;
        self.check_subscribable(&d)?;
        if let Some(sub) = self.subscription_of(database_id).await?
            && matches!(sub.status.as_str(), "active" | "past_due")
        {
            return Err(BillingError::Conflict(
                "This database already has a subscription; change its plan instead.".into(),
            ));
        }
        let processor = self.processor(processor)?.clone();
        let account = self.account(account_id).await?;
        let quote = self.quote_for(account.country.as_deref(), &d.name, plan, interval, seats)?;
        let now = self.now();
        let sub_id = uuid::Uuid::now_v7().simple().to_string();
        let payment_id = uuid::Uuid::now_v7().simple().to_string();
        let reference = reference(&payment_id);
        let description = format!("Seldesk {} ({}) for {}", quote.plan_name, interval.as_str(), d.name);
        let mut tx = self.inner.db.begin_write().await?;
        // An abandoned checkout of the same database gives way to this one.
        sqlx::query("UPDATE subscriptions SET status = 'cancelled', cancelled_at = $1 WHERE database_id = $2 AND status = 'pending'")
            .bind(to_millis(now))
            .bind(database_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO subscriptions (id, account_id, database_id, plan, billing_interval, seats, currency, country, amount_cents, processor, status, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $11)",
        )
        .bind(&sub_id)
        .bind(account_id)
        .bind(database_id)
        .bind(&quote.plan)
        .bind(interval.as_str())
        .bind(quote.seats)
        .bind(&quote.currency)
        .bind(&quote.country)
        .bind(quote.period_cents)
        .bind(processor.id())
        .bind(to_millis(now))
        .execute(&mut *tx)
        .await?;
        self.insert_payment(
            &mut tx,
            &payment_id,
            account_id,
            &sub_id,
            "checkout",
            processor.id(),
            &quote,
            &description,
        )
        .await?;
        tx.commit().await?;
        let call = Call::Checkout {
            return_url: format!("{}/billing/return/{payment_id}", self.inner.base_url),
            cancel_url: format!("{}/databases/{database_id}/subscribe?cancelled=1", self.inner.base_url),
        };
        let fields = order_fields(&quote.total_cents, &quote.currency, &description, &reference, Some(&account));
        let outcome = self
            .through_gate(
                &Actor::Person { id: account_id.into() },
                processor.as_ref(),
                &account.subject(),
                fields,
                &call,
            )
            .await;
        match outcome {
            Ok(Outcome::Redirect { order, url, return_mac }) => {
                sqlx::query("UPDATE payments SET processor_order = $1, return_mac = $2 WHERE id = $3")
                    .bind(&order)
                    .bind(&return_mac)
                    .bind(&payment_id)
                    .execute(self.inner.db.pool())
                    .await?;
                self.audit(
                    &Actor::Person { id: account_id.into() },
                    "billing.checkout_started",
                    Some(&account.subject()),
                    Some(&format!("db:{database_id}")),
                    serde_json::json!({ "payment": payment_id, "processor": processor.id(), "total": quote.total_cents, "currency": quote.currency }),
                )
                .await?;
                Ok(url)
            }
            Ok(other) => {
                self.fail_payment(&payment_id, &format!("{other:?}")).await?;
                Err(BillingError::Processor("The processor did not open a checkout; try again.".into()))
            }
            Err(e) => {
                self.fail_payment(&payment_id, &e.to_string()).await?;
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_payment(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: &str,
        account_id: &str,
        subscription: &str,
        kind: &str,
        processor: &str,
        quote: &Quote,
        description: &str,
    ) -> Result<(), BillingError> {
        let document = serde_json::json!({
            "lines": quote.lines, "subtotal": quote.subtotal_cents, "tax_label": quote.tax_label, "tax": quote.tax_cents,
        });
        sqlx::query(
            "INSERT INTO payments (id, account_id, subscription_id, kind, processor, status, amount_cents, currency, description, reference, country, lines, created_at)
             VALUES ($1, $2, $3, $4, $5, 'created', $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(id)
        .bind(account_id)
        .bind(subscription)
        .bind(kind)
        .bind(processor)
        .bind(quote.total_cents)
        .bind(&quote.currency)
        .bind(description)
        .bind(reference(id))
        .bind(&quote.country)
        .bind(document.to_string())
        .bind(to_millis(self.now()))
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    pub(crate) async fn fail_payment(&self, id: &str, error: &str) -> Result<(), BillingError> {
        sqlx::query("UPDATE payments SET status = 'failed', error = $1 WHERE id = $2 AND status = 'created'")
            .bind(error)
            .bind(id)
            .execute(self.inner.db.pool())
            .await?;
        Ok(())
    }

    /// The buyer came back from the processor's page: capture (PayPal) or
    /// look up (Ingenico) the payment and settle it. Returning twice, or
    /// after the webhook already settled it, changes nothing.
    pub async fn complete_return(
        &self,
        account_id: &str,
        payment_id: &str,
        query: BTreeMap<String, String>,
    ) -> Result<Payment, BillingError> {
        let payment = self.payment(payment_id).await?;
        if payment.account_id.as_deref() != Some(account_id) {
            return Err(BillingError::NotFound("No such payment.".into()));
        }
        if payment.status != "created" {
            return Ok(payment);
        }
        let order = payment
            .processor_order
            .clone()
            .ok_or_else(|| BillingError::Conflict("This checkout never reached the processor; start again.".into()))?;
        let processor = self.processor(&payment.processor)?.clone();
        let account = self.account(account_id).await?;
        let call = Call::Complete { order, return_mac: payment.return_mac.clone(), query };
        let fields =
            order_fields(&payment.amount_cents, &payment.currency, &payment.description, &payment.reference, None);
        let outcome = self
            .through_gate(
                &Actor::Person { id: account_id.into() },
                processor.as_ref(),
                &account.subject(),
                fields,
                &call,
            )
            .await?;
        match outcome {
            Outcome::Paid { payment: processor_payment, amount_cents, currency, token } => {
                self.settle(
                    &payment,
                    &processor_payment,
                    amount_cents,
                    &currency,
                    token.as_ref().map(ExposeSecret::expose_secret),
                )
                .await?;
            }
            Outcome::NotPaid(why) => return Err(BillingError::PaymentRequired(why)),
            Outcome::Declined(why) => {
                self.fail_payment(payment_id, &why).await?;
                return Err(BillingError::PaymentRequired(format!(
                    "The processor declined the payment ({why}); try again or choose another way to pay."
                )));
            }
            other => return Err(BillingError::Processor(format!("unexpected answer {other:?}"))),
        }
        self.payment(payment_id).await
    }

    /// Applies a captured payment exactly once: checks the amount and
    /// currency against ours, marks it captured, starts or extends the
    /// subscription, issues the invoice, then activates the database and
    /// mails the invoice.
    pub(crate) async fn settle(
        &self,
        payment: &Payment,
        processor_payment: &str,
        amount_cents: i64,
        currency: &str,
        token: Option<&str>,
    ) -> Result<(), BillingError> {
        if amount_cents != payment.amount_cents || !currency.eq_ignore_ascii_case(&payment.currency) {
            sqlx::query("UPDATE payments SET status = 'mismatch', processor_payment = $1, error = $2 WHERE id = $3 AND status = 'created'")
                .bind(processor_payment)
                .bind(format!("processor reported {amount_cents} {currency}"))
                .bind(&payment.id)
                .execute(self.inner.db.pool())
                .await?;
            self.audit(
                &Actor::System,
                "billing.amount_mismatch",
                payment.account_id.as_deref().map(crate::records::subject).as_deref(),
                Some(&format!("payment:{}", payment.id)),
                serde_json::json!({ "expected": payment.amount_cents, "expected_currency": payment.currency, "reported": amount_cents, "reported_currency": currency }),
            )
            .await?;
            return Err(BillingError::Conflict(format!(
                "The processor reported {} instead of {}: nothing was activated. Our billing team has been told; write to {} if you were charged.",
                crate::money(amount_cents, currency),
                crate::money(payment.amount_cents, &payment.currency),
                self.inner.settings.seller.email
            )));
        }
        let now = self.now();
        let sub = match &payment.subscription_id {
            Some(id) => Some(self.subscription(id).await?),
            None => None,
        };
        let document = self.invoice_document(payment).await?;
        let mut tx = self.inner.db.begin_write().await?;
        let claimed = sqlx::query(
            "UPDATE payments SET status = 'captured', processor_payment = $1, captured_at = $2 WHERE id = $3 AND status = 'created'",
        )
        .bind(processor_payment)
        .bind(to_millis(now))
        .bind(&payment.id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            // Settled already (the return and the webhook raced): nothing to do.
            return Ok(());
        }
        if let Some(sub) = &sub {
            let interval = Interval::parse(&sub.interval)?;
            match payment.kind.as_str() {
                "checkout" => {
                    sqlx::query("UPDATE subscriptions SET status = 'active', processor_token = COALESCE($1, processor_token), period_start = $2, period_end = $3, failed_attempts = 0, next_retry_at = NULL, last_error = NULL WHERE id = $4")
                        .bind(token)
                        .bind(to_millis(now))
                        .bind(to_millis(interval.after(now)))
                        .bind(&sub.id)
                        .execute(&mut *tx)
                        .await?;
                }
                "renewal" => {
                    let start = sub.period_end.unwrap_or(now);
                    sqlx::query("UPDATE subscriptions SET status = 'active', period_start = $1, period_end = $2, failed_attempts = 0, next_retry_at = NULL, last_error = NULL, credit_cents = 0 WHERE id = $3")
                        .bind(to_millis(start))
                        .bind(to_millis(interval.after(start)))
                        .bind(&sub.id)
                        .execute(&mut *tx)
                        .await?;
                }
                _ => {}
            }
        }
        let invoice = self.issue_invoice(&mut tx, payment, document).await?;
        tx.commit().await?;
        if let Some(sub) = &sub {
            self.inner.databases.activate_paid(&sub.database_id).await?;
        }
        let subject = payment.account_id.as_deref().map(crate::records::subject);
        self.audit(
            &Actor::System,
            "billing.payment_captured",
            subject.as_deref(),
            Some(&format!("payment:{}", payment.id)),
            serde_json::json!({ "invoice": invoice.number, "amount": amount_cents, "currency": currency, "processor": payment.processor }),
        )
        .await?;
        self.mail_invoice(&invoice).await;
        Ok(())
    }

    /// Cancels: no more renewals, the processor's token is forgotten, and the
    /// database is deactivated with its grace period (DB-7).
    pub async fn cancel(&self, account_id: &str, database_id: &str) -> Result<CustomerDb, BillingError> {
        let d = self.inner.databases.cancel(account_id, database_id).await?;
        let now = to_millis(self.now());
        let n = sqlx::query("UPDATE subscriptions SET status = 'cancelled', cancelled_at = $1, processor_token = NULL, next_retry_at = NULL WHERE database_id = $2 AND account_id = $3 AND status IN ('pending', 'active', 'past_due')")
            .bind(now)
            .bind(database_id)
            .bind(account_id)
            .execute(self.inner.db.pool())
            .await?
            .rows_affected();
        if n > 0 {
            self.audit(
                &Actor::Person { id: account_id.into() },
                "billing.subscription_cancelled",
                Some(&crate::records::subject(account_id)),
                Some(&format!("db:{database_id}")),
                serde_json::json!({}),
            )
            .await?;
        }
        Ok(d)
    }

    /// Reactivates a deactivated database within its grace period when no
    /// payment is due: a trial still running, or a cancelled subscription
    /// whose paid period has not ended (it resumes, the token being gone, as
    /// a subscription to pay at the next checkout). Otherwise the owner is
    /// told to subscribe.
    pub async fn reactivate(&self, account_id: &str, database_id: &str) -> Result<CustomerDb, BillingError> {
        let d = self.inner.databases.get(account_id, database_id).await?;
        let now = self.now();
        let sub = self.subscription_of(database_id).await?;
        let paid_until = sub.as_ref().filter(|s| s.status != "pending").and_then(|s| s.period_end).filter(|e| *e > now);
        let free = match d.plan.as_str() {
            "trial" => d.trial_ends.is_some_and(|t| t > now),
            // Subscribed: only while a paid (or granted) period runs.
            _ => paid_until.is_some() || d.granted_until.is_some_and(|g| g > now),
        };
        if !free {
            return Err(BillingError::PaymentRequired(format!(
                "Subscribe to reactivate \"{}\": its {} has ended. Choose a plan on /databases/{}/subscribe.",
                d.name,
                if d.plan == "trial" { "free trial" } else { "paid period" },
                d.id
            )));
        }
        Ok(self.inner.databases.reactivate(account_id, database_id).await?)
    }

    /// Changes plan, interval or seats with proration: the unused part of
    /// the current period is credited; the new plan's share of the rest (or,
    /// with a new interval, a whole new period from now) is charged at once
    /// to the processor's token. A credit larger than the charge waits for
    /// the next renewal.
    pub async fn change_plan(
        &self,
        account_id: &str,
        database_id: &str,
        plan: &str,
        interval: Interval,
        seats: i64,
    ) -> Result<Option<Payment>, BillingError> {
        let sub = self
            .subscription_of(database_id)
            .await?
            .filter(|s| s.account_id == account_id && s.status == "active")
            .ok_or_else(|| BillingError::Conflict("Only an active subscription can change plan.".into()))?;
        let d = self.inner.databases.get(account_id, database_id).await?;
        let (start, end) = match (sub.period_start, sub.period_end) {
            (Some(s), Some(e)) if e > s => (s, e),
            _ => return Err(BillingError::Internal(Fault::msg("the subscription has no current period"))),
        };
        let now = self.now().clamp(start, end);
        let old_quote =
            self.quote_for(sub.country.as_deref(), &d.name, &sub.plan, Interval::parse(&sub.interval)?, sub.seats)?;
        let new_quote = self.quote_for(sub.country.as_deref(), &d.name, plan, interval, seats)?;
        if new_quote.plan == old_quote.plan
            && new_quote.interval == old_quote.interval
            && new_quote.seats == old_quote.seats
        {
            return Err(BillingError::invalid("plan", "That is the plan you have."));
        }
        let (remaining, total) = ((end - now).whole_seconds(), (end - start).whole_seconds().max(1));
        let share = |cents: i64| -> i64 { (i128::from(cents) * i128::from(remaining) / i128::from(total)) as i64 };
        let old_net = old_quote.subtotal_cents;
        let credit = share(old_net) + sub.credit_cents;
        let same_interval = new_quote.interval == old_quote.interval;
        let new_amount = if same_interval { share(new_quote.subtotal_cents) } else { new_quote.subtotal_cents };
        let lines = vec![
            QuoteLine {
                description: format!("Unused time on {} until {}", old_quote.lines[0].description, end.date()),
                quantity: 1,
                unit_cents: -credit,
                amount_cents: -credit,
            },
            QuoteLine {
                description: if same_interval {
                    format!("Remaining time on {} until {}", new_quote.lines[0].description, end.date())
                } else {
                    new_quote.lines[0].description.clone()
                },
                quantity: 1,
                unit_cents: new_amount,
                amount_cents: new_amount,
            },
        ];
        let charge = self.totals(
            new_quote.plan.clone(),
            new_quote.plan_name.clone(),
            interval,
            new_quote.seats,
            new_quote.currency.clone(),
            sub.country.as_deref(),
            lines,
        );
        let (period_start, period_end) = if same_interval { (start, end) } else { (now, interval.after(now)) };
        let leftover = (-charge.subtotal_cents).max(0);
        let mut tx = self.inner.db.begin_write().await?;
        sqlx::query("UPDATE subscriptions SET plan = $1, billing_interval = $2, seats = $3, amount_cents = $4, credit_cents = $5, period_start = $6, period_end = $7 WHERE id = $8")
            .bind(&new_quote.plan)
            .bind(interval.as_str())
            .bind(new_quote.seats)
            .bind(new_quote.period_cents)
            .bind(leftover)
            .bind(to_millis(period_start))
            .bind(to_millis(period_end))
            .bind(&sub.id)
            .execute(&mut *tx)
            .await?;
        let payment_id = uuid::Uuid::now_v7().simple().to_string();
        if charge.subtotal_cents > 0 {
            let description = format!("Seldesk plan change to {} for {}", new_quote.plan_name, d.name);
            self.insert_payment(
                &mut tx,
                &payment_id,
                account_id,
                &sub.id,
                "change",
                &sub.processor,
                &charge,
                &description,
            )
            .await?;
        }
        tx.commit().await?;
        self.audit(
            &Actor::Person { id: account_id.into() },
            "billing.plan_changed",
            Some(&crate::records::subject(account_id)),
            Some(&format!("db:{database_id}")),
            serde_json::json!({ "from": old_quote.plan, "to": new_quote.plan, "interval": interval.as_str(), "seats": new_quote.seats, "charge": charge.total_cents.max(0), "credit_left": leftover }),
        )
        .await?;
        if charge.subtotal_cents <= 0 {
            return Ok(None);
        }
        let payment = self.payment(&payment_id).await?;
        self.charge_token(&sub, &payment, &Actor::Person { id: account_id.into() }).await?;
        Ok(Some(self.payment(&payment_id).await?))
    }

    /// Charges a payment to the subscription's processor-held token.
    /// Returns whether it was paid.
    async fn charge_token(&self, sub: &Subscription, payment: &Payment, actor: &Actor) -> Result<bool, BillingError> {
        let Some(token) = sub.processor_token.clone() else {
            self.fail_payment(&payment.id, "no processor token").await?;
            return Ok(false);
        };
        let processor = self.processor(&sub.processor)?.clone();
        let account = self.account(&sub.account_id).await?;
        let fields =
            order_fields(&payment.amount_cents, &payment.currency, &payment.description, &payment.reference, None);
        let outcome =
            self.through_gate(actor, processor.as_ref(), &account.subject(), fields, &Call::Charge { token }).await;
        match outcome {
            Ok(Outcome::Paid { payment: p, amount_cents, currency, .. }) => {
                self.settle(payment, &p, amount_cents, &currency, None).await?;
                Ok(true)
            }
            Ok(Outcome::Declined(why)) | Ok(Outcome::NotPaid(why)) => {
                self.fail_payment(&payment.id, &why).await?;
                Ok(false)
            }
            Ok(other) => {
                self.fail_payment(&payment.id, &format!("{other:?}")).await?;
                Ok(false)
            }
            Err(e) => {
                self.fail_payment(&payment.id, &e.to_string()).await?;
                Ok(false)
            }
        }
    }

    /// Renews every subscription whose period has ended (or whose retry is
    /// due). A failed charge is retried after `retry_days`; after the last
    /// one the subscription lapses and its database is deactivated with a
    /// notice (DB-7). Returns (renewed, failed, lapsed).
    pub async fn renew_due(&self) -> Result<(u64, u64, u64), BillingError> {
        let now = self.now();
        let rows = sqlx::query(
            "SELECT id FROM subscriptions WHERE status IN ('active', 'past_due') AND period_end <= $1 AND (next_retry_at IS NULL OR next_retry_at <= $1) ORDER BY period_end",
        )
        .bind(to_millis(now))
        .fetch_all(self.inner.db.pool())
        .await?;
        let (mut renewed, mut failed, mut lapsed) = (0, 0, 0);
        for r in &rows {
            let sub = self.subscription(&r.try_get::<String, _>("id")?).await?;
            let d = match self.inner.databases.find(&sub.database_id).await {
                Ok(d) => d,
                Err(seldesk_tenants::TenantError::NotFound(_)) => {
                    // The database was removed: nothing left to bill.
                    sqlx::query("UPDATE subscriptions SET status = 'cancelled', cancelled_at = $1, processor_token = NULL WHERE id = $2")
                        .bind(to_millis(now))
                        .bind(&sub.id)
                        .execute(self.inner.db.pool())
                        .await?;
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let interval = Interval::parse(&sub.interval)?;
            let mut quote = self.quote_for(sub.country.as_deref(), &d.name, &sub.plan, interval, sub.seats)?;
            let start = sub.period_end.unwrap_or(now);
            quote.lines[0].description =
                format!("{} — {} to {}", quote.lines[0].description, start.date(), interval.after(start).date());
            if sub.credit_cents > 0 {
                let credit = sub.credit_cents.min(quote.subtotal_cents);
                quote.lines.push(QuoteLine {
                    description: "Credit from a plan change".into(),
                    quantity: 1,
                    unit_cents: -credit,
                    amount_cents: -credit,
                });
            }
            let quote = self.totals(
                quote.plan.clone(),
                quote.plan_name.clone(),
                interval,
                quote.seats,
                quote.currency.clone(),
                sub.country.as_deref(),
                quote.lines,
            );
            let payment_id = uuid::Uuid::now_v7().simple().to_string();
            let description = format!("Seldesk {} ({}) for {}, renewal", quote.plan_name, interval.as_str(), d.name);
            let mut tx = self.inner.db.begin_write().await?;
            self.insert_payment(
                &mut tx,
                &payment_id,
                &sub.account_id,
                &sub.id,
                "renewal",
                &sub.processor,
                &quote,
                &description,
            )
            .await?;
            tx.commit().await?;
            let payment = self.payment(&payment_id).await?;
            if self.charge_token(&sub, &payment, &Actor::System).await? {
                renewed += 1;
                continue;
            }
            let error = self.payment(&payment_id).await?.error.unwrap_or_default();
            let attempts = sub.failed_attempts + 1;
            let retry = self.inner.settings.retry_days.get(usize::try_from(attempts - 1).unwrap_or(usize::MAX));
            match retry {
                Some(days) => {
                    let next = now + Duration::days(i64::from(*days));
                    sqlx::query("UPDATE subscriptions SET status = 'past_due', failed_attempts = $1, next_retry_at = $2, last_error = $3 WHERE id = $4")
                        .bind(attempts)
                        .bind(to_millis(next))
                        .bind(&error)
                        .bind(&sub.id)
                        .execute(self.inner.db.pool())
                        .await?;
                    self.notify(
                        &sub.account_id,
                        &format!("Payment for {} failed", d.name),
                        &format!(
                            "We could not charge {} for your database \"{}\" ({error}).\n\nWe will try again on {}. To pay another way, open {}/databases/{}.\n",
                            crate::money(quote.total_cents, &quote.currency),
                            d.name,
                            next.date(),
                            self.inner.base_url,
                            d.id
                        ),
                    )
                    .await;
                    failed += 1;
                }
                None => {
                    sqlx::query("UPDATE subscriptions SET status = 'lapsed', failed_attempts = $1, next_retry_at = NULL, last_error = $2, processor_token = NULL, cancelled_at = $3 WHERE id = $4")
                        .bind(attempts)
                        .bind(&error)
                        .bind(to_millis(now))
                        .bind(&sub.id)
                        .execute(self.inner.db.pool())
                        .await?;
                    let d = self.inner.databases.suspend(&d.id, "payment failed").await?;
                    let until = d.reactivate_until.map(|u| u.date().to_string()).unwrap_or_default();
                    self.notify(
                        &sub.account_id,
                        &format!("{} is deactivated: payment failed", d.name),
                        &format!(
                            "We tried {attempts} times to charge your renewal for \"{}\" and each failed (last: {error}).\n\nThe database is deactivated. Subscribe again before {until} to reactivate it: {}/databases/{}/subscribe\nAfter that date it is destroyed.\n",
                            d.name, self.inner.base_url, d.id
                        ),
                    )
                    .await;
                    self.audit(
                        &Actor::System,
                        "billing.subscription_lapsed",
                        Some(&crate::records::subject(&sub.account_id)),
                        Some(&format!("db:{}", d.id)),
                        serde_json::json!({ "attempts": attempts, "grace_until": until }),
                    )
                    .await?;
                    lapsed += 1;
                }
            }
        }
        Ok((renewed, failed, lapsed))
    }

    pub(crate) async fn notify(&self, account_id: &str, subject: &str, text: &str) {
        let Ok(account) = self.account(account_id).await else { return };
        let mail = seldesk_accounts::OutgoingMail { to: account.email, subject: subject.into(), text: text.into() };
        if let Err(e) = self.inner.mailer.send(&mail).await {
            tracing::warn!(error = %e, "billing notice not sent");
        }
    }
}

/// Our reference of a payment, sent to the processor (not personal).
pub(crate) fn reference(payment_id: &str) -> String {
    format!("SD-{}", &payment_id[payment_id.len().saturating_sub(16)..])
}

/// The gate fields of a processor call: order details, and the customer's
/// name and e-mail only when the processor must show or receipt them.
pub(crate) fn order_fields(
    amount_cents: &i64,
    currency: &str,
    description: &str,
    reference: &str,
    customer: Option<&seldesk_accounts::Account>,
) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert(field::AMOUNT.to_string(), decimal(*amount_cents));
    f.insert(field::CURRENCY.to_string(), currency.to_string());
    f.insert(field::DESCRIPTION.to_string(), description.to_string());
    f.insert(field::REFERENCE.to_string(), reference.to_string());
    if let Some(a) = customer {
        f.insert(field::NAME.to_string(), a.name.clone());
        f.insert(field::EMAIL.to_string(), a.email.clone());
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_keep_the_day_of_the_month() {
        let t = time::macros::datetime!(2026-01-31 10:00 UTC);
        assert_eq!(Interval::Monthly.after(t), time::macros::datetime!(2026-02-28 10:00 UTC));
        assert_eq!(Interval::Yearly.after(t), time::macros::datetime!(2027-01-31 10:00 UTC));
        let t = time::macros::datetime!(2026-12-15 00:00 UTC);
        assert_eq!(Interval::Monthly.after(t), time::macros::datetime!(2027-01-15 00:00 UTC));
    }

    #[test]
    fn references_are_short_and_not_personal() {
        assert_eq!(reference("0192f0a1b2c3d4e5f60718293a4b5c6d"), "SD-f60718293a4b5c6d");
    }
}

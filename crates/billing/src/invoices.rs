//! Invoices: numbered without gaps per year (the counter and the invoice
//! are written in one transaction), with the seller and buyer as they were
//! on the day, stored as a document so a reprint never changes; an HTML
//! view, a PDF, and a copy by mail on payment.

use seldesk_accounts::StaffMember;
use seldesk_domain::Fault;
use seldesk_domain::Role;
use seldesk_store::{from_millis, to_millis};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use time::OffsetDateTime;

use crate::flow::QuoteLine;
use crate::records::Payment;
use crate::{Billing, BillingError, pdf};

/// What is printed on an invoice, frozen when it is issued: the PDF's own
/// document, so the page, the PDF and the archive show the same thing.
pub type InvoiceData = pdf::InvoiceDoc;

/// An invoice in a list.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct InvoiceSummary {
    pub id: String,
    pub number: String,
    pub account_id: Option<String>,
    pub buyer_name: String,
    pub currency: String,
    pub total_cents: i64,
    pub payment_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
}

impl InvoiceSummary {
    /// The total as text ("29.00 EUR").
    pub fn total_text(&self) -> String {
        crate::money(self.total_cents, &self.currency)
    }
}

#[derive(Deserialize)]
struct PaymentDocument {
    lines: Vec<QuoteLine>,
    subtotal: i64,
    tax_label: Option<String>,
    tax: i64,
}

impl Billing {
    /// The invoice's content for a payment, read before the transaction that issues it.
    pub(crate) async fn invoice_document(&self, payment: &Payment) -> Result<InvoiceData, BillingError> {
        let lines: String = sqlx::query_scalar("SELECT lines FROM payments WHERE id = $1")
            .bind(&payment.id)
            .fetch_one(self.inner.db.pool())
            .await?;
        let doc: PaymentDocument =
            serde_json::from_str(&lines).map_err(|e| BillingError::Internal(Fault::new("payment lines", e)))?;
        let account_id = payment.account_id.as_deref().ok_or_else(|| BillingError::Internal(Fault::msg("no buyer")))?;
        let a = self.account(account_id).await?;
        let seller = &self.inner.settings.seller;
        let processor = self.inner.processors.iter().find(|p| p.id() == payment.processor).map(|p| p.label());
        Ok(InvoiceData {
            // Number and date are given when the invoice is issued.
            number: String::new(),
            issued: String::new(),
            seller_name: seller.name.clone(),
            seller_address: seller.address.clone(),
            seller_tax_id: seller.tax_id.clone(),
            seller_email: seller.email.clone(),
            buyer_name: a.name.clone(),
            buyer_company: Some(a.company.clone()).filter(|c| !c.trim().is_empty()),
            buyer_email: a.email.clone(),
            // The address is printed only when the buyer gave one for invoices (ACC-1).
            buyer_address: a
                .address
                .as_deref()
                .filter(|_| a.invoice_by_post)
                .map(|s| s.lines().map(str::to_string).filter(|l| !l.trim().is_empty()).collect())
                .unwrap_or_default(),
            buyer_country: a.country.as_deref().and_then(seldesk_domain::country::name).map(str::to_string),
            currency: payment.currency.clone(),
            lines: doc.lines,
            subtotal_cents: doc.subtotal,
            tax_label: doc.tax_label,
            tax_cents: doc.tax,
            total_cents: payment.amount_cents,
            paid_note: Some(format!(
                "Paid on {} through {} (reference {}).",
                self.now().date(),
                processor.unwrap_or(&payment.processor),
                payment.reference
            )),
        })
    }

    /// Takes the next number of the year and writes the invoice, inside the
    /// caller's transaction: if it rolls back, the number is not used.
    pub(crate) async fn issue_invoice(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        payment: &Payment,
        mut doc: InvoiceData,
    ) -> Result<InvoiceSummary, BillingError> {
        let now = self.now();
        let year = i64::from(now.year());
        let last: i64 = sqlx::query_scalar(
            "INSERT INTO invoice_counters (year, last) VALUES ($1, 1) ON CONFLICT (year) DO UPDATE SET last = invoice_counters.last + 1 RETURNING last",
        )
        .bind(year)
        .fetch_one(&mut **tx)
        .await?;
        let number = format!("{year}-{last:06}");
        doc.number = number.clone();
        doc.issued = now.date().to_string();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let document =
            serde_json::to_string(&doc).map_err(|e| BillingError::Internal(Fault::new("encoding the invoice", e)))?;
        sqlx::query(
            "INSERT INTO invoices (id, number, account_id, buyer_name, buyer_email, buyer_address, country, currency, total_cents, issued_at, payment_id, document)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&id)
        .bind(&number)
        .bind(&payment.account_id)
        .bind(&doc.buyer_name)
        .bind(&doc.buyer_email)
        .bind(Some(doc.buyer_address.join("\n")).filter(|s| !s.is_empty()))
        .bind(&payment.country)
        .bind(&doc.currency)
        .bind(doc.total_cents)
        .bind(to_millis(now))
        .bind(&payment.id)
        .bind(&document)
        .execute(&mut **tx)
        .await?;
        Ok(InvoiceSummary {
            id,
            number,
            account_id: payment.account_id.clone(),
            buyer_name: doc.buyer_name,
            currency: doc.currency,
            total_cents: doc.total_cents,
            payment_id: Some(payment.id.clone()),
            issued_at: from_millis(to_millis(now)),
        })
    }

    pub(crate) async fn mail_invoice(&self, invoice: &InvoiceSummary) {
        let Some(account_id) = invoice.account_id.as_deref() else { return };
        let text = format!(
            "Thank you for your payment of {}.\n\nYour invoice {} is at {}/account/invoices/{} (PDF: {}/account/invoices/{}/pdf).\n\n{}\n",
            crate::money(invoice.total_cents, &invoice.currency),
            invoice.number,
            self.inner.base_url,
            invoice.id,
            self.inner.base_url,
            invoice.id,
            self.inner.settings.seller.name
        );
        self.notify(account_id, &format!("Invoice {}", invoice.number), &text).await;
    }

    fn summary(r: &sqlx::any::AnyRow) -> Result<InvoiceSummary, sqlx::Error> {
        Ok(InvoiceSummary {
            id: r.try_get("id")?,
            number: r.try_get("number")?,
            account_id: r.try_get("account_id")?,
            buyer_name: r.try_get("buyer_name")?,
            currency: r.try_get("currency")?,
            total_cents: r.try_get("total_cents")?,
            payment_id: r.try_get("payment_id")?,
            issued_at: from_millis(r.try_get("issued_at")?),
        })
    }

    /// An account's invoices, newest first.
    pub async fn invoices_of(&self, account_id: &str) -> Result<Vec<InvoiceSummary>, BillingError> {
        let rows = sqlx::query(
            "SELECT id, number, account_id, buyer_name, currency, total_cents, payment_id, issued_at FROM invoices WHERE account_id = $1 ORDER BY issued_at DESC, number DESC",
        )
        .bind(account_id)
        .fetch_all(self.inner.db.pool())
        .await?;
        Ok(rows.iter().map(Self::summary).collect::<Result<_, _>>()?)
    }

    /// Every invoice, for the finance role (audited).
    pub async fn staff_invoices(&self, staff: &StaffMember) -> Result<Vec<InvoiceSummary>, BillingError> {
        if !staff.has(Role::Finance) {
            return Err(BillingError::Forbidden("The finance console is for the finance role.".into()));
        }
        let rows = sqlx::query(
            "SELECT id, number, account_id, buyer_name, currency, total_cents, payment_id, issued_at FROM invoices ORDER BY issued_at DESC, number DESC LIMIT 500",
        )
        .fetch_all(self.inner.db.pool())
        .await?;
        self.audit(&staff.actor(), "billing.invoices_read", None, None, serde_json::json!({ "rows": rows.len() }))
            .await?;
        Ok(rows.iter().map(Self::summary).collect::<Result<_, _>>()?)
    }

    /// One invoice of the account (another account's is "not found"), or
    /// any invoice for the finance role.
    pub async fn invoice(
        &self,
        account_id: Option<&str>,
        id: &str,
    ) -> Result<(InvoiceSummary, InvoiceData), BillingError> {
        let row = sqlx::query(
            "SELECT id, number, account_id, buyer_name, currency, total_cents, payment_id, issued_at, document FROM invoices WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(self.inner.db.pool())
        .await?
        .filter(|r| account_id.is_none() || r.try_get::<Option<String>, _>("account_id").ok().flatten().as_deref() == account_id)
        .ok_or_else(|| BillingError::NotFound("No such invoice.".into()))?;
        let summary = Self::summary(&row)?;
        let document: Option<String> = row.try_get("document")?;
        let data = document
            .and_then(|d| serde_json::from_str::<InvoiceData>(&d).ok())
            .ok_or_else(|| BillingError::NotFound("This invoice predates printable invoices.".into()))?;
        Ok((summary, data))
    }

    /// Any invoice's PDF, for the finance role (audited).
    pub async fn staff_invoice_pdf(&self, staff: &StaffMember, id: &str) -> Result<(String, Vec<u8>), BillingError> {
        if !staff.has(Role::Finance) {
            return Err(BillingError::Forbidden("The finance console is for the finance role.".into()));
        }
        let out = self.invoice_pdf(None, id).await?;
        self.audit(&staff.actor(), "billing.invoice_read", None, Some(&format!("invoice:{id}")), serde_json::json!({}))
            .await?;
        Ok(out)
    }

    /// The PDF of an invoice: (file name, bytes).
    pub async fn invoice_pdf(&self, account_id: Option<&str>, id: &str) -> Result<(String, Vec<u8>), BillingError> {
        let (summary, doc) = self.invoice(account_id, id).await?;
        Ok((format!("invoice-{}.pdf", summary.number), pdf::render(&doc)))
    }
}

//! Records of processing activities (GDPR art. 30), generated from the policy
//! file so the register and the enforcement share one source.

use serde::Serialize;

use super::Policy;

/// One processing activity: a data category.
#[derive(Debug, Clone, Serialize)]
pub struct RopaEntry {
    pub category: String,
    pub name: String,
    pub description: String,
    pub personal: bool,
    pub purposes: Vec<String>,
    pub legal_basis: String,
    /// Who receives or hosts it: provider names with what they get.
    pub recipients: Vec<String>,
    /// Where it is stored: hosting and backup locations.
    pub locations: Vec<String>,
    pub retention: String,
    pub promises: Vec<String>,
}

/// The whole register.
#[derive(Debug, Clone, Serialize)]
pub struct Ropa {
    pub controller: String,
    pub contact: String,
    pub policy_version: String,
    pub activities: Vec<RopaEntry>,
    pub security_measures: Vec<String>,
}

impl Ropa {
    pub fn from_policy(p: &Policy) -> Self {
        let hosting: Vec<String> = p.hosting_regions().map(|r| r.name.clone()).collect();
        let backup: Vec<String> = p.backup_regions().map(|r| r.name.clone()).collect();
        let activities = p
            .categories
            .iter()
            .map(|c| {
                let mut recipients = Vec::new();
                for pr in &p.providers {
                    let fields: Vec<String> = pr
                        .fields
                        .iter()
                        .filter_map(|f| p.field(f))
                        .filter(|f| f.category == c.id)
                        .map(|f| f.label.clone())
                        .collect();
                    if !fields.is_empty() {
                        recipients.push(format!("{} ({})", pr.name, fields.join(", ")));
                    } else if pr.hosts.contains(&c.id) {
                        recipients.push(format!("{} (hosting)", pr.name));
                    }
                }
                let mut locations = Vec::new();
                if c.id == "upgrade_upload" {
                    locations.push(p.upgrade_location.name.clone());
                } else if c.id == "backup" {
                    locations.push(format!("backups: {}", backup.join(", ")));
                } else {
                    locations.push(format!("hosting: {}", hosting.join(", ")));
                    locations.push(format!("backups: {}", backup.join(", ")));
                }
                RopaEntry {
                    category: c.id.clone(),
                    name: c.name.clone(),
                    description: c.description.clone(),
                    personal: c.personal,
                    purposes: c.purposes.iter().filter_map(|id| p.purpose(id)).map(|x| x.description.clone()).collect(),
                    legal_basis: c.legal_basis.label().to_string(),
                    recipients,
                    locations,
                    retention: c.retention.to_string(),
                    promises: c.promises.clone(),
                }
            })
            .collect();
        Self {
            controller: p.organisation.name.clone(),
            contact: p.organisation.helpdesk_email.clone(),
            policy_version: p.newest_version().effective.to_string(),
            activities,
            security_measures: p.security_measures.clone(),
        }
    }

    /// The register as Markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = format!(
            "# Records of processing activities\n\nController: {}  \nContact: {}  \nPolicy version: {}\n\n",
            self.controller, self.contact, self.policy_version
        );
        out.push_str(
            "| Activity | Purposes | Legal basis | Recipients | Locations | Retention |\n|---|---|---|---|---|---|\n",
        );
        let cell = |s: &str| s.replace('|', "\\|");
        for a in &self.activities {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                cell(&a.name),
                cell(&a.purposes.join("; ")),
                a.legal_basis,
                cell(&if a.recipients.is_empty() { "none".to_string() } else { a.recipients.join("; ") }),
                cell(&a.locations.join("; ")),
                cell(&a.retention)
            ));
        }
        out.push_str("\n## Security measures\n\n");
        for m in &self.security_measures {
            out.push_str(&format!("- {m}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // promise: PRC-1, ACC-5
    #[test]
    fn register_lists_every_category_with_its_recipients() {
        let p = Policy::builtin().expect("policy");
        let ropa = Ropa::from_policy(&p);
        assert_eq!(ropa.activities.len(), p.categories.len());
        let payments = ropa.activities.iter().find(|a| a.category == "payment_order").expect("payments");
        assert!(payments.recipients.iter().any(|r| r.starts_with("PayPal (Order amount")), "{:?}", payments.recipients);
        let upgrades = ropa.activities.iter().find(|a| a.category == "upgrade_upload").expect("upgrades");
        assert!(upgrades.recipients.iter().any(|r| r.starts_with("Amazon Web Services")));
        assert_eq!(upgrades.retention, "4 months after the last successful upgrade");
        let md = ropa.to_markdown();
        assert!(md.contains("## Security measures"));
        assert!(!ropa.security_measures.is_empty());
        let account = ropa.activities.iter().find(|a| a.category == "account_contact").expect("accounts");
        assert_eq!(account.purposes.len(), 4, "account data is used for exactly the purposes ACC-5 lists");
    }
}

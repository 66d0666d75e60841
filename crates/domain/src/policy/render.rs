//! The public policy text, rendered from the policy file as Markdown. The web
//! page converts the same Markdown to HTML and `seldesk policy render` prints
//! it, so the published text and what the code enforces cannot drift apart.

use askama::Template;

use super::{CookieClassId, Policy, ProviderKind, Version};

#[derive(Template)]
#[template(path = "privacy.md", escape = "none")]
struct PrivacyText<'a> {
    p: &'a Policy,
    version: &'a Version,
}

/// Escapes text for a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// "A, B and C".
fn join_and(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

impl PrivacyText<'_> {
    /// The period a category is kept, e.g. "2 months".
    fn keep(&self, category: &str) -> String {
        self.p.retention(category).map(|r| r.keep.to_string()).unwrap_or_else(|| "(not set)".into())
    }

    fn hosting_regions(&self) -> String {
        join_and(&self.p.hosting_regions().map(|r| r.name.clone()).collect::<Vec<_>>())
    }

    fn backup_regions(&self) -> String {
        join_and(&self.p.backup_regions().map(|r| r.name.clone()).collect::<Vec<_>>())
    }

    fn upgrade_provider(&self) -> String {
        self.p.provider(&self.p.upgrade_location.provider).map(|pr| pr.name.clone()).unwrap_or_default()
    }

    fn fields_of(&self, provider: &str) -> String {
        let labels: Vec<String> = self
            .p
            .provider(provider)
            .map(|pr| pr.fields.iter().filter_map(|f| self.p.field(f)).map(|f| f.label.to_lowercase()).collect())
            .unwrap_or_default();
        join_and(&labels)
    }

    fn payment_processors(&self) -> String {
        let names: Vec<String> =
            self.p.providers.iter().filter(|pr| pr.kind == ProviderKind::Payment).map(|pr| pr.name.clone()).collect();
        join_and(&names)
    }

    fn provider_table(&self) -> String {
        let mut out = String::from("| Service provider | Purpose | Data shared |\n|---|---|---|\n");
        for pr in self.p.providers.iter().filter(|pr| pr.kind != ProviderKind::Recipient) {
            let mut name = cell(&pr.name);
            if let Some(cert) = &pr.certification {
                name.push_str(&format!(" ({})", cell(cert)));
            }
            let mut shared = Vec::new();
            if !pr.fields.is_empty() {
                let labels: Vec<String> =
                    pr.fields.iter().filter_map(|f| self.p.field(f)).map(|f| f.label.clone()).collect();
                shared.push(format!("Shared with {}: {}.", pr.name, labels.join(", ")));
            }
            if !pr.hosts.is_empty() {
                let names: Vec<String> =
                    pr.hosts.iter().filter_map(|c| self.p.category(c)).map(|c| c.name.clone()).collect();
                shared.push(format!("Hosted by {}: {}.", pr.name, names.join(", ")));
            }
            if let Some(only) = &pr.only_stored_by_provider {
                shared.push(format!("Only stored by {}: {}.", pr.name, only));
            }
            out.push_str(&format!("| {} | {} | {} |\n", name, cell(&pr.description), cell(&shared.join(" "))));
        }
        out
    }

    fn retention_table(&self) -> String {
        let mut out =
            String::from("| Data | Why we hold it | Legal basis | How long we keep it |\n|---|---|---|---|\n");
        for c in &self.p.categories {
            let purposes: Vec<String> =
                c.purposes.iter().filter_map(|id| self.p.purpose(id)).map(|p| p.description.clone()).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                cell(&c.name),
                cell(&purposes.join("; ")),
                c.legal_basis.label(),
                cell(&c.retention.to_string())
            ));
        }
        out
    }

    fn region_table(&self) -> String {
        let mut out = String::from(
            "| Data center | City | Hosts customer databases | Holds backups | Serves best |\n|---|---|---|---|---|\n",
        );
        for r in &self.p.regions {
            let yes = |b: bool| if b { "yes" } else { "no" };
            let mut served = r.countries.join(", ");
            if r.default {
                served.push_str(if served.is_empty() { "every other country" } else { ", and every other country" });
            }
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                cell(&r.name),
                cell(&r.city),
                yes(r.hosting),
                yes(r.backup),
                served
            ));
        }
        out
    }

    fn cookie_table(&self) -> String {
        let mut out =
            String::from("| Class | Needs your consent | Cookie | What it does | Lifetime |\n|---|---|---|---|---|\n");
        for class in &self.p.cookies {
            for c in &class.cookies {
                out.push_str(&format!(
                    "| {} | {} | `{}` | {} | {} |\n",
                    cell(&class.name),
                    if class.needs_consent { "yes" } else { "no" },
                    c.name,
                    cell(&c.purpose),
                    cell(&c.lifetime)
                ));
            }
        }
        out
    }

    fn third_party_cookie_provider(&self) -> String {
        self.p
            .cookie_class(CookieClassId::ThirdPartyAnalytics)
            .and_then(|c| c.provider.as_deref())
            .and_then(|id| self.p.provider(id))
            .map(|pr| pr.name.clone())
            .unwrap_or_else(|| "third-party analytics services".into())
    }

    fn version_list(&self) -> String {
        let mut out = String::new();
        for v in self.p.versions() {
            let marker = if v.effective == self.version.effective { " (this version)" } else { "" };
            // Each listed version is one that was published (POL-1).
            out.push_str(&format!(
                "- [{}](/privacy/versions/{}){}: {}[[POL-1]]\n",
                v.effective, v.effective, marker, v.summary
            ));
        }
        out
    }
}

/// Renders the policy text of `version` from the values in `policy`.
pub fn render_markdown(policy: &Policy, version: &Version) -> String {
    super::markers::strip(&render_with_markers(policy, version))
}

/// The text with each sentence's promise markers (`[[DB-7]]`, `[[-]]`) kept,
/// for `seldesk policy promises` and the marker check.
pub fn render_with_markers(policy: &Policy, version: &Version) -> String {
    PrivacyText { p: policy, version }
        .render()
        .unwrap_or_else(|e| format!("The policy text could not be rendered: {e}"))
}

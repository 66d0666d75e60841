//! The app frame: who a page is for, so its header shows the right
//! navigation. Signed out: the product, pricing, the policy, sign in and
//! sign up. A customer: their databases, requests and billing, and a menu
//! under their name with the account and sign-out. Staff: the consoles their
//! roles open, from one table ([`STAFF_PAGES`]) that a test checks against
//! what each console lets each role do.
//!
//! A middleware finds the visitor once per page request (one session read,
//! only when the browser sends a session cookie) and keeps it for the
//! templates in a task-local, as the language is kept.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use seldesk_accounts::{AccountStatus, Principal, SessionKind};
use seldesk_domain::Role;

use crate::AppState;
use crate::auth::{CSRF_COOKIE, SESSION_COOKIE, cookie};
use crate::i18n::t;

/// Who the page is for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Visitor {
    #[default]
    Anonymous,
    /// A signed-in customer: their name, and the form token for signing out.
    Customer { name: String, csrf: String },
    /// A signed-in staff member.
    Staff { email: String, roles: Vec<Role>, csrf: String },
}

/// A staff console, and the roles whose work it is.
pub struct StaffPage {
    pub path: &'static str,
    /// Its label's key in the message catalog.
    pub label: &'static str,
    /// Empty: every staff member.
    pub roles: &'static [Role],
}

/// The staff consoles in the order the navigation shows them. Each console
/// still checks its own rule; a test signs in with each role and finds every
/// page listed here for it open and every other one closed.
pub const STAFF_PAGES: &[StaffPage] = &[
    StaffPage { path: "/staff/tickets", label: "staff.nav.tickets", roles: &[Role::Support, Role::Dpo] },
    StaffPage { path: "/staff/support", label: "staff.nav.support", roles: &[Role::Support, Role::Security] },
    StaffPage { path: "/staff/retention", label: "staff.nav.retention", roles: &[Role::Dpo] },
    StaffPage { path: "/staff/holds", label: "staff.nav.holds", roles: &[Role::Security, Role::Dpo] },
    StaffPage { path: "/staff/security", label: "staff.nav.security", roles: &[Role::Security] },
    StaffPage { path: "/staff/finance", label: "staff.nav.finance", roles: &[Role::Finance] },
    StaffPage { path: "/staff/marketing", label: "staff.nav.marketing", roles: &[Role::Marketing] },
    StaffPage { path: "/staff/careers", label: "staff.nav.careers", roles: &[Role::Hr] },
    StaffPage { path: "/staff/backups", label: "staff.nav.backups", roles: &[Role::Admin, Role::Dpo, Role::Support] },
    StaffPage { path: "/staff/nodes", label: "staff.nav.nodes", roles: &[Role::Admin] },
    StaffPage { path: "/staff/people", label: "staff.nav.people", roles: &[Role::Admin] },
    StaffPage { path: "/staff/analytics", label: "staff.nav.analytics", roles: &[] },
];

/// The consoles a member with `roles` may open.
pub fn staff_pages_for(roles: &[Role]) -> impl Iterator<Item = &'static StaffPage> + '_ {
    STAFF_PAGES.iter().filter(|p| p.roles.is_empty() || p.roles.iter().any(|r| roles.contains(r)))
}

/// A link of the header.
pub struct NavLink {
    pub href: &'static str,
    pub label: String,
    /// The page being shown is this link's (or under it).
    pub current: bool,
    /// Drawn as a button (sign up).
    pub cta: bool,
}

/// What the header shows for the request being served.
pub struct Frame {
    pub visitor: Visitor,
    path: String,
}

impl Frame {
    /// Where the brand leads: the visitor's own start page.
    pub fn home(&self) -> &'static str {
        match self.visitor {
            Visitor::Anonymous => "/",
            Visitor::Customer { .. } => "/databases",
            Visitor::Staff { .. } => "/staff",
        }
    }

    fn link(&self, href: &'static str, label: &str, cta: bool) -> NavLink {
        let current = self.path == href || (href != "/" && self.path.starts_with(&format!("{href}/")));
        NavLink { href, label: t(label), current, cta }
    }

    /// The main links.
    pub fn links(&self) -> Vec<NavLink> {
        match &self.visitor {
            Visitor::Anonymous => vec![
                self.link("/", "nav.product", false),
                self.link("/pricing", "nav.pricing", false),
                self.link("/privacy", "nav.privacy", false),
                self.link("/signin", "nav.signin", false),
                self.link("/signup", "nav.signup", true),
            ],
            Visitor::Customer { .. } => vec![
                self.link("/databases", "nav.databases", false),
                self.link("/account/requests", "nav.requests", false),
                self.link("/account/billing", "nav.billing", false),
            ],
            Visitor::Staff { roles, .. } => staff_pages_for(roles).map(|p| self.link(p.path, p.label, false)).collect(),
        }
    }

    /// Whose menu the header shows (a name or an e-mail address), if signed in.
    pub fn who(&self) -> Option<&str> {
        match &self.visitor {
            Visitor::Anonymous => None,
            Visitor::Customer { name, .. } => Some(name),
            Visitor::Staff { email, .. } => Some(email),
        }
    }

    /// The account link of the user menu (customers only).
    pub fn account(&self) -> Option<NavLink> {
        matches!(self.visitor, Visitor::Customer { .. }).then(|| self.link("/account", "nav.account", false))
    }

    /// Where the sign-out form posts.
    pub fn signout(&self) -> &'static str {
        match self.visitor {
            Visitor::Staff { .. } => "/staff/signout",
            _ => "/signout",
        }
    }

    /// The form token for the sign-out form.
    pub fn csrf(&self) -> &str {
        match &self.visitor {
            Visitor::Anonymous => "",
            Visitor::Customer { csrf, .. } | Visitor::Staff { csrf, .. } => csrf,
        }
    }
}

tokio::task_local! {
    static FRAME: (Visitor, String, time::Date);
}

/// The frame of the request being served (signed out outside one).
pub fn current() -> Frame {
    FRAME
        .try_with(|(visitor, path, _)| Frame { visitor: visitor.clone(), path: path.clone() })
        .unwrap_or(Frame { visitor: Visitor::Anonymous, path: String::new() })
}

/// Today, by the platform's clock, for the page being served (dates read
/// "in 3 days" from it).
pub fn today() -> Option<time::Date> {
    FRAME.try_with(|(_, _, today)| *today).ok()
}

async fn visitor(state: &AppState, token: Option<String>, csrf: Option<String>) -> Visitor {
    let Some(token) = token else { return Visitor::Anonymous };
    let csrf = csrf.unwrap_or_default();
    let Ok(Some(session)) = state.accounts.session(&token).await else { return Visitor::Anonymous };
    match (&session.kind, &session.principal) {
        (SessionKind::Web, Principal::Account(id)) => match state.accounts.account(id).await {
            Ok(a) if a.status == AccountStatus::Active => Visitor::Customer { name: a.name, csrf },
            _ => Visitor::Anonymous,
        },
        (SessionKind::Staff, Principal::Staff(id)) => match state.accounts.staff(id).await {
            Ok(s) if !s.disabled => Visitor::Staff { email: s.email, roles: s.roles, csrf },
            _ => Visitor::Anonymous,
        },
        _ => Visitor::Anonymous,
    }
}

/// Finds the visitor of a page request (never for the API's operations,
/// static files or health checks, which show no header; the API's reference
/// and problem pages are pages).
pub(crate) async fn middleware(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/api/v1/") || path.starts_with("/static/") || path == "/healthz" {
        return next.run(req).await;
    }
    // The cookies are read before the request is held across an await (a
    // request is not Sync).
    let (token, csrf) = (cookie(req.headers(), SESSION_COOKIE), cookie(req.headers(), CSRF_COOKIE));
    let who = visitor(&state, token, csrf).await;
    let today = state.clock.now().date();
    FRAME.scope((who, path, today), next.run(req)).await
}

/// Runs `f` as if serving a page on `today` (for tests of dates in words).
#[cfg(test)]
pub(crate) async fn with_today<F: std::future::Future>(today: time::Date, f: F) -> F::Output {
    FRAME.scope((Visitor::Anonymous, String::new(), today), f).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_sees_its_consoles_and_analytics() {
        let paths = |roles: &[Role]| staff_pages_for(roles).map(|p| p.path).collect::<Vec<_>>();
        assert_eq!(paths(&[Role::Hr]), ["/staff/careers", "/staff/analytics"]);
        assert!(paths(&[Role::Admin]).contains(&"/staff/people"));
        assert!(!paths(&[Role::Finance]).contains(&"/staff/people"));
        for role in Role::ALL {
            assert!(paths(&[role]).len() >= 2, "{role:?} has a console of its own");
        }
    }

    #[test]
    fn the_current_page_is_marked() {
        let f =
            Frame { visitor: Visitor::Customer { name: "A".into(), csrf: String::new() }, path: "/databases/x".into() };
        let links = f.links();
        assert!(links.iter().find(|l| l.href == "/databases").is_some_and(|l| l.current));
        assert!(links.iter().filter(|l| l.current).count() == 1);
        let f = Frame { visitor: Visitor::Anonymous, path: "/privacy/versions".into() };
        assert!(f.links().iter().find(|l| l.href == "/").is_some_and(|l| !l.current));
    }
}

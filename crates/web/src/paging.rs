//! Pages of the API's lists: `?limit=&cursor=`, the next page's address in
//! `Link: <…>; rel="next"` (RFC 8288) and its cursor in `Next-Cursor`, the
//! body unchanged (a list stays a list), as contacts already do.
//!
//! Contacts, which grow without bound, are paged in SQL by the tenants crate
//! (`seldesk_tenants::app::Cursor`). The lists here are each account's own
//! and small by nature (databases bounded by plans, at most 50 live tokens,
//! requests, invoices, upgrades, a contact's attachments, a database's
//! backups) or the site's own (events, partners, postings): they are read
//! whole and paged by a stable key, so a cursor means "after this key" and
//! inserts or deletions elsewhere in the list neither repeat nor hide items.

use askama::Template;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use data_encoding::BASE64URL_NOPAD;
use serde::Deserialize;

use crate::auth::ApiError;

/// The largest page.
pub const MAX_LIMIT: usize = 500;

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// At most this many items, 1 to 500 (500 when absent).
    pub limit: Option<i64>,
    /// Where the page starts: the `Next-Cursor` of the page before.
    pub cursor: Option<String>,
}

/// In which order a list comes: the order its service gives, kept so that
/// paging changes no client's view of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    Oldest,
    Newest,
}

/// One page of `items`, ordered by `key` (unique per item) in `order`, after
/// the query's cursor; and the cursor of the next page when there is one.
pub fn page<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> String,
    order: Order,
    q: &PageQuery,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = match q.limit {
        None => MAX_LIMIT,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "`limit` is a number from 1 to 500.",
            )
            .at("limit"));
        }
    };
    let after = match &q.cursor {
        None => None,
        Some(c) => Some(decode(c).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "This cursor is not one we gave: use the Next-Cursor of the page before, or leave it out for the first page.",
            )
            .at("cursor")
        })?),
    };
    items.sort_by_key(&key);
    if order == Order::Newest {
        items.reverse();
    }
    let start = after.map_or(0, |a| match order {
        Order::Oldest => items.partition_point(|i| key(i) <= a),
        Order::Newest => items.partition_point(|i| key(i) >= a),
    });
    let mut rest: Vec<T> = items.drain(start..).collect();
    let next = (rest.len() > limit).then(|| {
        rest.truncate(limit);
        rest.last().map(|last| BASE64URL_NOPAD.encode(key(last).as_bytes()))
    });
    Ok((rest, next.flatten()))
}

/// The key a cursor carries, when it is one of ours.
fn decode(cursor: &str) -> Option<String> {
    BASE64URL_NOPAD.decode(cursor.as_bytes()).ok().and_then(|b| String::from_utf8(b).ok()).filter(|k| k.len() <= 200)
}

/// Rows per page of the site's lists.
pub const SITE_PAGE: usize = 25;

/// A site list's pager: a link back to the first page (when not on it) and
/// one to the next page (when there is one), so no row is ever silently
/// left out of a list.
#[derive(Template, Default)]
#[template(path = "pager.html")]
pub struct Pager {
    /// What the pages hold, for the navigation's label ("Activity pages").
    pub label: &'static str,
    /// Prefix of the links' ids (`first-{id}`, `next-{id}`).
    pub id: &'static str,
    pub first: Option<String>,
    pub next: Option<String>,
}

impl Pager {
    /// Whether the list is longer than this page.
    pub fn shown(&self) -> bool {
        self.first.is_some() || self.next.is_some()
    }
}

/// One page of a site list, in the same order and with the same cursors as
/// the API's: `cursor` comes from the page's query (one we did not give
/// shows the first page: a stale bookmark is not an error), and the pager
/// links to `link(None)` for the first page and `link(Some(cursor))` for the
/// next.
#[allow(clippy::too_many_arguments)]
pub fn site_page<T>(
    items: Vec<T>,
    key: impl Fn(&T) -> String,
    order: Order,
    cursor: Option<&str>,
    per_page: usize,
    label: &'static str,
    id: &'static str,
    link: impl Fn(Option<&str>) -> String,
) -> (Vec<T>, Pager) {
    let cursor = cursor.filter(|c| decode(c).is_some()).map(str::to_string);
    let paged = cursor.is_some();
    let q = PageQuery { limit: Some(per_page.clamp(1, MAX_LIMIT) as i64), cursor };
    match page(items, key, order, &q) {
        Ok((items, next)) => {
            let pager = Pager { label, id, first: paged.then(|| link(None)), next: next.map(|n| link(Some(&n))) };
            (items, pager)
        }
        // Unreachable: the cursor and the limit were checked above.
        Err(_) => (Vec::new(), Pager { label, id, first: Some(link(None)), next: None }),
    }
}

/// Announces the next page of `path` on a list's answer.
pub fn announce(mut r: Response, path: &str, q: &PageQuery, next: Option<String>) -> Response {
    let Some(next) = next else { return r };
    let mut query = vec![("cursor", next.clone())];
    if let Some(limit) = q.limit {
        query.insert(0, ("limit", limit.to_string()));
    }
    let query = serde_urlencoded::to_string(&query).unwrap_or_default();
    let link = format!("<{path}?{query}>; rel=\"next\"");
    for (name, value) in [(header::LINK, link), (HeaderName::from_static("next-cursor"), next)] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            r.headers_mut().insert(name, v);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(limit: i64, cursor: Option<String>) -> PageQuery {
        PageQuery { limit: Some(limit), cursor }
    }

    #[test]
    fn every_item_is_seen_once_while_others_come_and_go() {
        let mut list: Vec<u32> = (0..100).map(|i| i * 2).collect();
        let key = |i: &u32| format!("{i:010}");
        let (mut seen, mut cursor) = (Vec::new(), None);
        loop {
            let (items, next) = page(list.clone(), key, Order::Oldest, &q(7, cursor.clone())).expect("page");
            seen.extend(items.iter().copied());
            // Inserted before, among and after what was read; one deleted ahead.
            // (odd numbers: new items, each once)
            let p = seen.len() as u32;
            list.extend([2 * p + 1, 2 * p + 101, 10_001 + 2 * p]);
            list.retain(|i| *i != 150);
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let original: Vec<u32> = seen.iter().copied().filter(|i| i % 2 == 0 && *i < 200).collect();
        assert_eq!(original.len(), 99, "all but the one deleted before it was reached");
        let unique: std::collections::BTreeSet<_> = seen.iter().collect();
        assert_eq!(unique.len(), seen.len(), "none twice");
    }

    #[test]
    fn bad_limits_and_cursors_name_their_field() {
        for (limit, cursor, field) in [(0, None, "limit"), (501, None, "limit"), (5, Some("***".to_string()), "cursor")]
        {
            let e = page(vec![1u8], |i| i.to_string(), Order::Oldest, &q(limit, cursor)).expect_err("refused");
            assert_eq!(e.field, Some(field));
        }
        let (all, next) = page(vec![3u8, 1, 2], |i| i.to_string(), Order::Oldest, &PageQuery::default()).expect("page");
        assert_eq!((all, next), (vec![1, 2, 3], None));
        let (first, next) = page(vec![3u8, 1, 2, 4], |i| i.to_string(), Order::Newest, &q(2, None)).expect("page");
        assert_eq!(first, vec![4, 3]);
        let (second, last) = page(vec![3u8, 1, 2, 5, 4], |i| i.to_string(), Order::Newest, &q(2, next)).expect("page");
        assert_eq!((second, last), (vec![2, 1], None), "what came after the first page is not on a later one");
    }

    #[test]
    fn a_site_list_links_its_pages_and_ignores_a_stale_cursor() {
        let link = |c: Option<&str>| c.map_or_else(|| "/l".to_string(), |c| format!("/l?after={c}"));
        let (first, pager) = site_page((0..7).collect(), |i| format!("{i:03}"), Order::Oldest, None, 3, "L", "l", link);
        assert_eq!(first, [0, 1, 2]);
        assert!(pager.first.is_none());
        let next = pager.next.expect("a next page");
        let cursor = next.trim_start_matches("/l?after=").to_string();
        let (second, pager) =
            site_page((0..7).collect(), |i| format!("{i:03}"), Order::Oldest, Some(&cursor), 3, "L", "l", link);
        assert_eq!(second, [3, 4, 5]);
        assert_eq!(pager.first.as_deref(), Some("/l"));
        let html = pager.render().expect("render");
        assert!(html.contains("id=\"first-l\"") && html.contains("id=\"next-l\""), "{html}");
        let (stale, pager) =
            site_page((0..7).collect(), |i| format!("{i:03}"), Order::Oldest, Some("**"), 3, "L", "l", link);
        assert_eq!(stale, [0, 1, 2]);
        assert!(pager.first.is_none());
        let (short, pager) = site_page((0..2).collect(), |i| format!("{i:03}"), Order::Oldest, None, 3, "L", "l", link);
        assert_eq!(short, [0, 1]);
        assert!(!pager.shown() && pager.render().expect("render").trim().is_empty());
    }
}

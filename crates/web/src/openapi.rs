//! The API's OpenAPI 3.1 document, generated from the handlers' own
//! `#[utoipa::path]` attributes, served at `/api/v1/openapi.json` and read
//! as a page at `/api/docs` (rendered here, no script, no CDN). A test
//! compares the document with the routes the router registers, both ways,
//! so neither can change without the other.

use std::sync::OnceLock;

use askama::Template;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// An API error: RFC 9457 problem details, with the first API's `error`
/// code and `message` kept beside them.
#[derive(Serialize, ToSchema)]
pub struct Problem {
    /// A page of this site describing the problem type (`/api/problems/{code}`).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the problem type.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What happened this time, and what to change.
    pub detail: String,
    /// The stable code to branch on.
    pub error: String,
    /// The same as `detail`.
    pub message: String,
    /// The field or header at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "signin_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A sign-in token from POST /api/v1/auth/token: every scope of its account."))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "personal_token",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("sdpat_…")
                    .description(Some(
                        "A personal access token made on the account page: only the scopes listed on each operation \
                         (account:read, account:write, databases:read, databases:write, billing:read, billing:write).",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Seldesk API",
        version = "1",
        description = "Accounts, personal-data requests, customer databases and their contacts, backups, billing, upgrades, careers, events and partners. Errors are RFC 9457 problem documents; creates take an Idempotency-Key; contacts come in pages. The guide: /api/docs."
    ),
    paths(
        crate::api::create_account,
        crate::api::token,
        crate::api::me,
        crate::api::update_me,
        crate::api::create_request,
        crate::api::list_requests,
        crate::api::request,
        crate::api::download,
        crate::api::erasure_preview,
        crate::api::close_account,
        crate::api::list_tokens,
        crate::api::create_token,
        crate::api::show_token,
        crate::api::revoke_token,
        crate::db_api::create,
        crate::db_api::list,
        crate::db_api::show,
        crate::db_api::remove,
        crate::db_api::backups,
        crate::db_api::restore_backup,
        crate::db_api::restore_at,
        crate::db_api::cancel,
        crate::db_api::reactivate,
        crate::db_api::upgrade,
        crate::db_api::test_upgrade,
        crate::db_api::move_db,
        crate::db_api::access_log,
        crate::db_api::revoke,
        crate::db_api::approve,
        crate::db_api::create_contact,
        crate::db_api::list_contacts,
        crate::db_api::show_contact,
        crate::db_api::update_contact,
        crate::db_api::delete_contact,
        crate::db_api::sql,
        crate::db_api::export,
        crate::db_api::download_attachment,
        crate::db_api::delete_attachment,
        crate::db_api::show_attachment,
        crate::db_api::upload_attachment,
        crate::db_api::list_attachments,
        crate::db_api::import,
        crate::billing_pages::api_plans,
        crate::billing_pages::api_invoices,
        crate::billing_pages::api_invoice,
        crate::billing_pages::api_invoice_pdf,
        crate::billing_pages::api_complete,
        crate::billing_pages::webhook,
        crate::billing_pages::api_subscription,
        crate::billing_pages::api_subscribe,
        crate::billing_pages::api_change_plan,
        crate::careers_pages::api_postings,
        crate::careers_pages::api_application,
        crate::careers_pages::api_apply,
        crate::marketing_pages::api_events,
        crate::marketing_pages::api_register,
        crate::marketing_pages::api_partners,
        crate::marketing_pages::api_refer,
        crate::upgrade_pages::api_list,
        crate::upgrade_pages::api_show,
        crate::upgrade_pages::api_delete,
        crate::upgrade_pages::api_download,
        crate::upgrade_pages::api_upload,
    ),
    components(schemas(Problem)),
    modifiers(&Credentials),
)]
pub struct ApiDoc;

/// The document, built once.
pub fn document() -> &'static serde_json::Value {
    static DOC: OnceLock<serde_json::Value> = OnceLock::new();
    DOC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or_default())
}

/// `GET /api/v1/openapi.json`.
pub async fn json() -> Response {
    let mut r = axum::Json(document()).into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    r
}

/// One operation of the document, as the docs page shows it.
struct Operation {
    anchor: String,
    method: String,
    path: String,
    summary: String,
    access: String,
    params: Vec<(String, String, String, bool)>,
    body: Option<String>,
    responses: Vec<(String, String, String)>,
}

struct Tag {
    name: String,
    operations: Vec<Operation>,
}

#[derive(Template)]
#[template(path = "api_docs.html")]
struct DocsPage {
    title: &'static str,
    tags: Vec<Tag>,
    count: usize,
}

/// What a schema is called on the page: a component's name, a list of it,
/// or its JSON type.
fn schema_name(s: &serde_json::Value) -> String {
    if let Some(r) = s.get("$ref").and_then(|r| r.as_str()) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    match s.get("type").and_then(|t| t.as_str()) {
        Some("array") => format!("list of {}", s.get("items").map(schema_name).unwrap_or_default()),
        Some("string") if s.get("format").is_some_and(|f| f == "binary") => "bytes".into(),
        Some(t) => t.to_string(),
        None => "JSON".into(),
    }
}

fn operations(doc: &serde_json::Value) -> Vec<Tag> {
    let mut tags: Vec<Tag> = Vec::new();
    let Some(paths) = doc["paths"].as_object() else { return tags };
    for (path, item) in paths {
        let Some(item) = item.as_object() else { continue };
        for (method, op) in item {
            let tag = op["tags"][0].as_str().unwrap_or("other").to_string();
            let access = match op["security"].as_array() {
                Some(list) if list.iter().all(|s| s.as_object().is_some_and(|o| o.is_empty())) => {
                    "no sign-in".to_string()
                }
                Some(list) => {
                    let scopes: Vec<String> = list
                        .iter()
                        .filter_map(|s| s["personal_token"].as_array())
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect();
                    if scopes.is_empty() {
                        "a sign-in token only".to_string()
                    } else {
                        format!("a sign-in token, or a personal token with {}", scopes.join(", "))
                    }
                }
                None => "no sign-in".to_string(),
            };
            let params = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            (
                                p["name"].as_str().unwrap_or_default().to_string(),
                                p["in"].as_str().unwrap_or_default().to_string(),
                                p["description"].as_str().unwrap_or_default().to_string(),
                                p["required"].as_bool().unwrap_or(false),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let body = op["requestBody"]["content"]
                .as_object()
                .and_then(|c| c.iter().next().map(|(media, v)| format!("{media}: {}", schema_name(&v["schema"]))));
            let responses = op["responses"]
                .as_object()
                .map(|rs| {
                    rs.iter()
                        .map(|(status, r)| {
                            let content = r["content"]
                                .as_object()
                                .and_then(|c| {
                                    c.iter().next().map(|(m, v)| format!("{m}: {}", schema_name(&v["schema"])))
                                })
                                .unwrap_or_default();
                            (status.clone(), r["description"].as_str().unwrap_or_default().to_string(), content)
                        })
                        .collect()
                })
                .unwrap_or_default();
            let operation = Operation {
                anchor: format!("{method}-{}", path.replace(['/', '{', '}'], "-")),
                method: method.to_uppercase(),
                path: path.clone(),
                summary: op["summary"].as_str().unwrap_or_default().to_string(),
                access,
                params,
                body,
                responses,
            };
            match tags.iter_mut().find(|t| t.name == tag) {
                Some(t) => t.operations.push(operation),
                None => tags.push(Tag { name: tag, operations: vec![operation] }),
            }
        }
    }
    tags
}

/// `GET /api/docs`: the document as a page.
pub async fn docs() -> Response {
    let tags = operations(document());
    let count = tags.iter().map(|t| t.operations.len()).sum();
    crate::pages::render(StatusCode::OK, &DocsPage { title: "API reference", tags, count })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every (method, path) the web crate registers under /api/v1, read
    /// from its source as the router is written.
    fn registered() -> BTreeSet<(String, String)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(dir).expect("sources") {
            let text = std::fs::read_to_string(entry.expect("entry").path()).expect("read");
            for part in text.split(".route(\"/api/v1").skip(1) {
                let (path, rest) = part.split_once('"').expect("path");
                let handlers = rest.split_once("))\n").map_or(rest, |(h, _)| h);
                for method in ["get", "post", "put", "patch", "delete"] {
                    let starts = [format!(", {method}("), format!(".{method}("), format!("routing::{method}(")];
                    if starts.iter().any(|s| handlers.contains(s.as_str())) {
                        out.insert((method.to_string(), format!("/api/v1{path}")));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn the_document_and_the_router_name_the_same_operations() {
        let doc = document();
        assert_eq!(doc["openapi"].as_str().map(|v| &v[..3]), Some("3.1"), "OpenAPI 3.1");
        let mut documented = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("item").keys() {
                documented.insert((method.clone(), path.clone()));
            }
        }
        let mut routed = registered();
        // The document itself is not an operation of the API.
        routed.remove(&("get".to_string(), "/api/v1/openapi.json".to_string()));
        let missing: Vec<_> = routed.difference(&documented).collect();
        let stale: Vec<_> = documented.difference(&routed).collect();
        assert!(missing.is_empty(), "routed but not documented: {missing:?}");
        assert!(stale.is_empty(), "documented but not routed: {stale:?}");
        assert!(routed.len() > 60, "{routed:?}");
    }

    #[test]
    fn every_operation_says_who_may_call_it_and_documents_its_errors() {
        for tag in operations(document()) {
            for op in tag.operations {
                assert!(!op.summary.is_empty(), "{} {}", op.method, op.path);
                assert!(
                    op.responses.iter().any(|(s, _, c)| s == "default" && c.starts_with("application/problem+json"))
                );
                let placeholders = op.path.matches('{').count();
                assert_eq!(
                    op.params.iter().filter(|p| p.1 == "path").count(),
                    placeholders,
                    "{} {}",
                    op.method,
                    op.path
                );
                if op.path.starts_with("/api/v1/databases") || op.path.starts_with("/api/v1/me") {
                    assert!(op.access.contains("sign-in token"), "{} {}: {}", op.method, op.path, op.access);
                }
            }
        }
    }

    /// Resolves a `$ref` to its component, once.
    fn resolved<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
        match schema.get("$ref").and_then(|r| r.as_str()) {
            Some(r) => doc.pointer(&r.replacen('#', "", 1)).unwrap_or(schema),
            None => schema,
        }
    }

    /// A JSON body the document leaves as "anything" lets a response change
    /// shape without schemathesis noticing: every JSON answer and body is a
    /// typed object or list, and every property of a component is typed
    /// (a free-form object is allowed only where it is said so, such as a
    /// processor's notification or an upgrade report).
    #[test]
    fn every_json_body_has_a_typed_schema() {
        let doc = document();
        let mut loose = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("item") {
                let mut bodies: Vec<(String, &serde_json::Value)> = Vec::new();
                if let Some(c) = op["requestBody"]["content"]["application/json"].get("schema") {
                    bodies.push(("request".into(), c));
                }
                for (status, r) in op["responses"].as_object().into_iter().flatten() {
                    if let Some(c) = r["content"]["application/json"].get("schema") {
                        bodies.push((status.clone(), c));
                    }
                }
                for (what, schema) in bodies {
                    let schema = resolved(doc, schema);
                    let typed = schema.get("type").is_some() || schema.get("allOf").is_some();
                    if !typed {
                        loose.push(format!("{method} {path} {what}: {schema}"));
                    }
                }
            }
        }
        for (name, schema) in doc["components"]["schemas"].as_object().expect("schemas") {
            for (field, prop) in schema["properties"].as_object().into_iter().flatten() {
                let prop = resolved(doc, prop);
                let typed = ["type", "allOf", "oneOf", "anyOf", "$ref"].iter().any(|k| prop.get(k).is_some());
                let free_form_by_design =
                    matches!((name.as_str(), field.as_str()), ("AuditEntry", "details") | ("UpgradeRequest", "report"))
                        || (name == "QueryResult" && field == "rows");
                if !typed && !free_form_by_design {
                    loose.push(format!("component {name}.{field}: {prop}"));
                }
            }
        }
        assert!(loose.is_empty(), "untyped JSON in the document:\n{}", loose.join("\n"));
    }
}

//! The Seldesk app inside each customer database: contacts (people and
//! companies). Deletes are real: `secure_delete` is on for every connection.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use crate::TenantError;

/// A person or company.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Contact {
    pub id: i64,
    pub is_company: bool,
    pub name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub notes: Option<String>,
    pub company_id: Option<i64>,
    pub tags: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// Fields to create or change a contact (absent fields stay as they are).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContactInput {
    pub is_company: Option<bool>,
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<String>,
    pub notes: Option<String>,
    pub company_id: Option<i64>,
    pub tags: Option<Vec<String>>,
}

const COLUMNS: &str = "id, is_company, name, email, phone, address, notes, company_id, tags, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<Contact> {
    let tags: String = r.get(8)?;
    Ok(Contact {
        id: r.get(0)?,
        is_company: r.get::<_, i64>(1)? != 0,
        name: r.get(2)?,
        email: r.get(3)?,
        phone: r.get(4)?,
        address: r.get(5)?,
        notes: r.get(6)?,
        company_id: r.get(7)?,
        tags: tags.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
        created_at: r.get(9)?,
        updated_at: r.get(10)?,
    })
}

fn clean(field: &'static str, label: &str, v: Option<&str>, max: usize) -> Result<Option<String>, TenantError> {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else { return Ok(None) };
    if v.chars().count() > max {
        return Err(TenantError::invalid(field, format!("{label} is too long: at most {max} characters.")));
    }
    // Line breaks and tabs belong in notes and addresses; other control
    // characters (NUL) and the bidi controls that make a name read as
    // another (U+202E) belong nowhere.
    if v.chars().any(|c| (c.is_control() && !matches!(c, '\n' | '\r' | '\t')) || seldesk_domain::is_bidi_control(c))
        || (field == "name" && v.contains(['\n', '\r', '\t']))
    {
        return Err(TenantError::invalid(
            field,
            format!("{label} contains control or text-direction characters; type it again without them."),
        ));
    }
    Ok(Some(v.to_string()))
}

/// A contact's e-mail address: as typed (trimmed), if it has an address's shape.
fn email(v: Option<&str>) -> Result<Option<String>, TenantError> {
    let v = clean("email", "E-mail", v, 254)?;
    match v {
        Some(e) if !seldesk_domain::contact::is_email(&e) => {
            Err(TenantError::invalid("email", seldesk_domain::contact::EMAIL_HINT))
        }
        v => Ok(v),
    }
}

/// A contact's phone number, if it has a number's shape.
fn phone(v: Option<&str>) -> Result<Option<String>, TenantError> {
    let v = clean("phone", "Phone", v, 40)?;
    match v {
        Some(p) if !seldesk_domain::contact::is_phone(&p) => {
            Err(TenantError::invalid("phone", seldesk_domain::contact::PHONE_HINT))
        }
        v => Ok(v),
    }
}

fn tags(input: &[String]) -> Result<String, TenantError> {
    let mut out = Vec::new();
    for t in input {
        let t = t.trim();
        if t.is_empty() {
            continue;
        }
        if t.contains(',') || t.chars().count() > 40 {
            return Err(TenantError::invalid("tags", "Tags have at most 40 characters and no commas."));
        }
        out.push(t.to_string());
    }
    Ok(out.join(","))
}

/// Contacts whose name, e-mail or tags contain `q` (any case), by name.
///
/// Walking the names in order finds a common text ("example", "gmail") in
/// the first few rows, and a rare one only after reading them all (about
/// 0.35 µs a row). So a query of three characters or more walks only the
/// first few names, and when they do not settle it, asks the search index
/// (`crate::search`) for the rows that may hold it: up to
/// [`most_candidates`] of them are read and sorted; a text found in more
/// than that is common enough to walk all the names instead. Every path applies
/// the same `LIKE` and the same order, so the answer is always the walk's.
pub fn list(conn: &Connection, q: Option<&str>, limit: i64) -> Result<Vec<Contact>, TenantError> {
    list_after(conn, q, limit, None)
}

/// Where a page of contacts starts: after this contact, in the list's
/// order (name, then id). New contacts never shift a page a client is
/// reading through: each page starts where the last one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    name: String,
    id: i64,
}

impl Cursor {
    /// The position just after `c`.
    pub fn after(c: &Contact) -> Self {
        Self { name: c.name.clone(), id: c.id }
    }

    /// As clients carry it: `{id}.{name in base64url}`.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.id, data_encoding::BASE64URL_NOPAD.encode(self.name.as_bytes()))
    }

    /// A cursor a client sent back; anything else is refused with a reason.
    pub fn parse(s: &str) -> Result<Self, TenantError> {
        let bad = || TenantError::invalid("cursor", "This cursor is not one this list gave: start again without it.");
        if s.len() > 1000 {
            return Err(bad());
        }
        let (id, name) = s.split_once('.').ok_or_else(bad)?;
        let id = id.parse().map_err(|_| bad())?;
        let name = data_encoding::BASE64URL_NOPAD.decode(name.as_bytes()).map_err(|_| bad())?;
        Ok(Self { name: String::from_utf8(name).map_err(|_| bad())?, id })
    }

    /// Before every contact: names are never empty, ids never this small.
    fn start() -> Self {
        Self { name: String::new(), id: i64::MIN }
    }
}

/// One page of a contact list, and the cursor of the next when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    pub next_cursor: Option<String>,
}

/// Up to `limit` contacts matching `q` after `after`, as [`list`] orders
/// them, with the cursor of the next page.
pub fn page(
    conn: &Connection,
    q: Option<&str>,
    limit: i64,
    after: Option<&Cursor>,
) -> Result<ContactPage, TenantError> {
    let mut contacts = list_after(conn, q, limit + 1, after)?;
    let more = contacts.len() as i64 > limit;
    contacts.truncate(usize::try_from(limit).unwrap_or(0));
    let next_cursor = if more { contacts.last().map(|c| Cursor::after(c).encode()) } else { None };
    Ok(ContactPage { contacts, next_cursor })
}

fn list_after(
    conn: &Connection,
    q: Option<&str>,
    limit: i64,
    after: Option<&Cursor>,
) -> Result<Vec<Contact>, TenantError> {
    let start = Cursor::start();
    let after = after.unwrap_or(&start);
    let q = q.unwrap_or_default();
    let like = format!("%{}%", q.replace('%', "\\%").replace('_', "\\_"));
    let Some(candidates) = crate::search::candidates(q) else { return scan(conn, &like, limit, after) };
    if !crate::search::has_index(conn)? {
        return scan(conn, &like, limit, after);
    }
    // A common text: the walk of the names finds it in the first rows. The
    // walk is cut off after a few rows' work (SQLite's progress handler):
    // then the text is rarer, and the index is asked.
    if let Some(walked) = walk_briefly(conn, &like, limit, after)? {
        return Ok(walked);
    }
    let rows: i64 = conn.prepare_cached("SELECT coalesce(max(id), 0) FROM contacts")?.query_row([], |r| r.get(0))?;
    let most = most_candidates(rows);
    // The candidates are gathered once; when they reach the bound, the
    // constant condition skips the join (CROSS JOIN: the candidates drive,
    // never a walk of every name).
    let found: Vec<Contact> = conn
        .prepare_cached(&format!(
            "WITH candidate (found) AS MATERIALIZED (
                 SELECT rowid FROM seldesk_search WHERE seldesk_search MATCH ?3 LIMIT ?4)
             SELECT {COLUMNS} FROM candidate CROSS JOIN contacts ON contacts.id = candidate.found
             WHERE (SELECT count(*) FROM candidate) < ?4 AND {MATCHES} AND (name, id) > (?5, ?6)
             ORDER BY name, id LIMIT ?2"
        ))?
        .query_map(params![like, limit, candidates, most, after.name, after.id], from_row)?
        .collect::<Result<_, _>>()?;
    if !found.is_empty() {
        return Ok(found);
    }
    // Nothing: either no contact holds it, or the bound was reached.
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM (SELECT 1 FROM seldesk_search WHERE seldesk_search MATCH ?1 LIMIT ?2)")?
        .query_row(params![candidates, most], |r| r.get(0))?;
    if n < most { Ok(found) } else { scan(conn, &like, limit, after) }
}

/// Most candidates a search reads from the index, for a table of up to
/// `rows` contacts: about √(20·rows), where reading them (0.2 µs each) and
/// walking the names to the first 20 matches of a text that common cost the
/// same; within 200 and 5,000.
fn most_candidates(rows: i64) -> i64 {
    ((20.0 * rows.max(0) as f64).sqrt() as i64).clamp(200, 5000)
}

/// The conditions of a match, on `?1` (a `LIKE` pattern).
const MATCHES: &str = "(name LIKE ?1 ESCAPE '\\' OR email LIKE ?1 ESCAPE '\\' OR tags LIKE ?1 ESCAPE '\\')";

/// The walk of the names in order, stopped after about [`BRIEF_WALK_STEPS`]
/// virtual-machine steps (some 25 rows); None when it was stopped.
fn walk_briefly(
    conn: &Connection,
    like: &str,
    limit: i64,
    after: &Cursor,
) -> Result<Option<Vec<Contact>>, TenantError> {
    let mut ticks = 0;
    conn.progress_handler(
        BRIEF_WALK_STEPS / 16,
        Some(move || {
            ticks += 1;
            ticks > 16
        }),
    )?;
    let walked = scan(conn, like, limit, after);
    conn.progress_handler(0, None::<fn() -> bool>)?;
    match walked {
        Ok(rows) => Ok(Some(rows)),
        Err(TenantError::Sqlite(rusqlite::Error::SqliteFailure(e, _)))
            if e.code == rusqlite::ErrorCode::OperationInterrupted =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// How much of the walk a search tries before it asks the index.
const BRIEF_WALK_STEPS: i32 = 800;

/// The walk of every name, for queries the index cannot serve.
fn scan(conn: &Connection, like: &str, limit: i64, after: &Cursor) -> Result<Vec<Contact>, TenantError> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM contacts WHERE {MATCHES} AND (name, id) > (?3, ?4) ORDER BY name, id LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![like, limit, after.name, after.id], from_row)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

pub fn get(conn: &Connection, id: i64) -> Result<Contact, TenantError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM contacts WHERE id = ?1"))?
        .query_row([id], from_row)
        .optional()?
        .ok_or_else(|| TenantError::NotFound(format!("No contact {id} in this database.")))
}

pub fn create(conn: &Connection, input: &ContactInput, now: &str) -> Result<Contact, TenantError> {
    let name = clean("name", "Name", input.name.as_deref(), 200)?
        .ok_or_else(|| TenantError::invalid("name", "Name is required."))?;
    if let Some(c) = input.company_id {
        get(conn, c).map_err(|_| TenantError::invalid("company_id", format!("No company {c} in this database.")))?;
    }
    conn.prepare_cached(
        "INSERT INTO contacts (is_company, name, email, phone, address, notes, company_id, tags, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?9)",
    )?
    .execute(params![
            i64::from(input.is_company.unwrap_or(false)),
            name,
            email(input.email.as_deref())?,
            phone(input.phone.as_deref())?,
            clean("address", "Address", input.address.as_deref(), 1000)?,
            clean("notes", "Notes", input.notes.as_deref(), 20_000)?,
            input.company_id,
            tags(input.tags.as_deref().unwrap_or_default())?,
            now
        ],
    )?;
    get(conn, conn.last_insert_rowid())
}

pub fn update(conn: &Connection, id: i64, input: &ContactInput, now: &str) -> Result<Contact, TenantError> {
    let mut c = get(conn, id)?;
    if let Some(v) = input.is_company {
        c.is_company = v;
    }
    if input.name.is_some() {
        c.name = clean("name", "Name", input.name.as_deref(), 200)?
            .ok_or_else(|| TenantError::invalid("name", "Name is required."))?;
    }
    if input.email.is_some() {
        c.email = email(input.email.as_deref())?;
    }
    if input.phone.is_some() {
        c.phone = phone(input.phone.as_deref())?;
    }
    if input.address.is_some() {
        c.address = clean("address", "Address", input.address.as_deref(), 1000)?;
    }
    if input.notes.is_some() {
        c.notes = clean("notes", "Notes", input.notes.as_deref(), 20_000)?;
    }
    if let Some(company) = input.company_id {
        if company == id {
            return Err(TenantError::invalid("company_id", "A contact cannot be its own company."));
        }
        get(conn, company)
            .map_err(|_| TenantError::invalid("company_id", format!("No company {company} in this database.")))?;
        c.company_id = Some(company);
    }
    let t = match &input.tags {
        Some(t) => tags(t)?,
        None => c.tags.join(","),
    };
    conn.prepare_cached(
        "UPDATE contacts SET is_company = ?1, name = ?2, email = ?3, phone = ?4, address = ?5, notes = ?6, company_id = ?7, tags = ?8, updated_at = ?9 WHERE id = ?10",
    )?
    .execute(params![i64::from(c.is_company), c.name, c.email, c.phone, c.address, c.notes, c.company_id, t, now, id])?;
    get(conn, id)
}

/// Deletes for real (`secure_delete`); attachments go with the contact.
/// The caller has the WAL checkpointed after the commit, so the deleted
/// rows' old pages leave it too (`Databases::write_db`).
pub fn delete(conn: &Connection, id: i64) -> Result<(), TenantError> {
    let n = conn.prepare_cached("DELETE FROM contacts WHERE id = ?1")?.execute([id])?;
    if n == 0 {
        return Err(TenantError::NotFound(format!("No contact {id} in this database.")));
    }
    Ok(())
}

/// A file attached to a contact.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Attachment {
    pub id: i64,
    pub contact_id: i64,
    pub file_name: String,
    pub size: i64,
    pub created_at: String,
    #[serde(skip)]
    pub stored_name: String,
}

/// Largest attachment.
pub const MAX_ATTACHMENT_BYTES: usize = 25 * 1024 * 1024;

fn attachment_from(r: &Row<'_>) -> rusqlite::Result<Attachment> {
    Ok(Attachment {
        id: r.get(0)?,
        contact_id: r.get(1)?,
        file_name: r.get(2)?,
        stored_name: r.get(3)?,
        size: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// A file name as shown to people: the last path segment, no control characters.
fn clean_file_name(name: &str) -> Result<String, TenantError> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or_default().trim();
    if base.is_empty() || base == "." || base == ".." {
        return Err(TenantError::invalid("name", "Give the file a name, e.g. ?name=contract.pdf."));
    }
    if base.chars().count() > 200 || base.chars().any(|c| c.is_control() || seldesk_domain::is_bidi_control(c)) {
        return Err(TenantError::invalid(
            "name",
            "The file name is too long or has control or text-direction characters.",
        ));
    }
    Ok(base.to_string())
}

/// Stores a file for a contact in the database's own `files/` folder.
pub fn add_attachment(
    conn: &Connection,
    files: &Path,
    contact_id: i64,
    name: &str,
    bytes: &[u8],
    now: &str,
) -> Result<Attachment, TenantError> {
    get(conn, contact_id)?;
    let file_name = clean_file_name(name)?;
    if bytes.is_empty() {
        return Err(TenantError::invalid("file", "The file is empty."));
    }
    if bytes.len() > MAX_ATTACHMENT_BYTES {
        return Err(TenantError::TooLarge("Attachments are at most 25 MiB.".into()));
    }
    let stored = uuid::Uuid::now_v7().simple().to_string();
    std::fs::create_dir_all(files)?;
    let path = stored_path(files, &stored)?;
    std::fs::write(&path, bytes)?;
    let inserted = conn.execute(
        "INSERT INTO attachments (contact_id, file_name, stored_name, size, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![contact_id, file_name, stored, bytes.len() as i64, now],
    );
    if let Err(e) = inserted {
        // The row failed, so nothing refers to the file: it must go.
        std::fs::remove_file(&path)?;
        return Err(e.into());
    }
    attachment(conn, conn.last_insert_rowid())
}

pub fn attachment(conn: &Connection, id: i64) -> Result<Attachment, TenantError> {
    conn.query_row(
        "SELECT id, contact_id, file_name, stored_name, size, created_at FROM attachments WHERE id = ?1",
        [id],
        attachment_from,
    )
    .optional()?
    .ok_or_else(|| TenantError::NotFound(format!("No attachment {id} in this database.")))
}

pub fn attachments(conn: &Connection, contact_id: i64) -> Result<Vec<Attachment>, TenantError> {
    get(conn, contact_id)?;
    let mut stmt = conn.prepare("SELECT id, contact_id, file_name, stored_name, size, created_at FROM attachments WHERE contact_id = ?1 ORDER BY id")?;
    let rows = stmt.query_map([contact_id], attachment_from)?.collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Deletes an attachment and its file.
pub fn delete_attachment(conn: &Connection, files: &Path, id: i64) -> Result<(), TenantError> {
    let a = attachment(conn, id)?;
    conn.execute("DELETE FROM attachments WHERE id = ?1", [id])?;
    remove_file(files, &a.stored_name)
}

/// Reads an attachment's bytes from the database's `files/` folder.
pub fn read_attachment(conn: &Connection, files: &Path, id: i64) -> Result<(Attachment, Vec<u8>), TenantError> {
    let a = attachment(conn, id)?;
    let path = stored_path(files, &a.stored_name)?;
    let missing = || TenantError::NotFound(format!("The file of attachment {id} is missing."));
    // Only a regular file, never what a link points to.
    match std::fs::symlink_metadata(&path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Err(missing()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
        Err(e) => return Err(e.into()),
    }
    let bytes = std::fs::read(&path)?;
    Ok((a, bytes))
}

/// Whether `name` has the shape of a name Seldesk gives a stored file (a
/// UUID's 32 lowercase hex digits). Anything else in the `stored_name`
/// column was written by someone else: the console, an import, a tamperer.
pub fn is_stored_name(name: &str) -> bool {
    name.len() == 32 && name.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The path of a stored file inside `files`. The `stored_name` column lives
/// in the customer's own database, so its value is hostile: only a name of
/// the shape Seldesk generates is joined, which cannot name a parent, a
/// root, a separator or a NUL.
fn stored_path(files: &Path, stored: &str) -> Result<PathBuf, TenantError> {
    if !is_stored_name(stored) {
        return Err(TenantError::Conflict(
            "This attachment's record was altered outside Seldesk; its file cannot be reached.".into(),
        ));
    }
    Ok(files.join(stored))
}

fn remove_file(files: &Path, stored: &str) -> Result<(), TenantError> {
    // A name that is not ours names no file of ours: there is nothing to remove.
    let Ok(path) = stored_path(files, stored) else { return Ok(()) };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes a contact for real, with its attachments' files.
pub fn delete_with_files(conn: &Connection, files: &Path, id: i64) -> Result<(), TenantError> {
    let stored: Vec<String> = {
        let mut stmt = conn.prepare("SELECT stored_name FROM attachments WHERE contact_id = ?1")?;
        stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?
    };
    delete(conn, id)?;
    for s in stored {
        remove_file(files, &s)?;
    }
    Ok(())
}

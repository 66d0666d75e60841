//! Running SQL that customers (or their archives) supply: an authorizer that
//! forbids ATTACH, extensions, file access and dangerous pragmas, size limits,
//! and a deadline that interrupts runaway queries.

use std::time::{Duration, Instant};

use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, ToSql};
use serde::Serialize;

use crate::TenantError;

/// Functions that reach outside the database or change how it works.
const FORBIDDEN_FUNCTIONS: &[&str] =
    &["load_extension", "readfile", "writefile", "edit", "fts3_tokenizer", "sqlite_dbpage"];

/// Authorizer for loading an export's dump.sql: tables, indexes, inserts.
pub fn restrict_to_load(conn: &Connection) -> Result<(), TenantError> {
    conn.authorizer(Some(|ctx: AuthContext<'_>| match ctx.action {
        // CREATE INDEX asks for Reindex of the index it builds.
        AuthAction::CreateTable { .. }
        | AuthAction::CreateIndex { .. }
        | AuthAction::Reindex { .. }
        | AuthAction::Insert { .. }
        | AuthAction::Transaction { .. } => Authorization::Allow,
        AuthAction::Pragma { pragma_name, pragma_value } if pragma_name == "foreign_keys" && pragma_value.is_some() => {
            Authorization::Allow
        }
        // Inserting into sqlite_master is how CREATE works; plain reads of it are harmless.
        AuthAction::Read { .. } | AuthAction::Select => Authorization::Allow,
        AuthAction::Update { table_name: "sqlite_master", .. } => Authorization::Allow,
        _ => Authorization::Deny,
    }))?;
    Ok(())
}

/// Authorizer of the owner's SQL console: their own tables, nothing beyond.
fn console_authorizer(ctx: AuthContext<'_>) -> Authorization {
    if ctx.database_name.is_some_and(|d| d != "main" && d != "temp") {
        return Authorization::Deny;
    }
    match ctx.action {
        AuthAction::Attach { .. }
        | AuthAction::Detach { .. }
        | AuthAction::CreateVtable { .. }
        | AuthAction::DropVtable { .. }
        | AuthAction::CreateTrigger { .. }
        | AuthAction::CreateTempTrigger { .. } => Authorization::Deny,
        AuthAction::Pragma { pragma_name, pragma_value } => {
            // Read-only introspection only.
            let safe = ["table_info", "table_list", "index_list", "index_info", "foreign_key_list", "user_version"];
            if safe.contains(&pragma_name)
                && (pragma_value.is_none() || pragma_name.ends_with("_info") || pragma_name.ends_with("_list"))
            {
                Authorization::Allow
            } else {
                Authorization::Deny
            }
        }
        AuthAction::Function { function_name }
            if FORBIDDEN_FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Deny
        }
        AuthAction::Insert { table_name } | AuthAction::Delete { table_name } if table_name == "seldesk_meta" => {
            Authorization::Deny
        }
        AuthAction::Update { table_name, .. } if table_name == "seldesk_meta" || table_name == "sqlite_master" => {
            Authorization::Deny
        }
        AuthAction::DropTable { table_name } | AuthAction::AlterTable { table_name, .. }
            if table_name == "seldesk_meta" =>
        {
            Authorization::Deny
        }
        _ => Authorization::Allow,
    }
}

/// Support staff read, and nothing else (DB-3).
fn read_only_authorizer(ctx: AuthContext<'_>) -> Authorization {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } => Authorization::Allow,
        AuthAction::Function { function_name }
            if !FORBIDDEN_FUNCTIONS.contains(&function_name.to_ascii_lowercase().as_str()) =>
        {
            Authorization::Allow
        }
        _ => Authorization::Deny,
    }
}

/// Runs one read-only statement (support access).
pub fn run_read_only(conn: &Connection, sql: &str, deadline: Duration) -> Result<QueryResult, TenantError> {
    conn.authorizer(Some(read_only_authorizer))?;
    let started = Instant::now();
    conn.progress_handler(10_000, Some(move || started.elapsed() > deadline))?;
    let result = (|| {
        let mut stmt =
            conn.prepare(sql.trim().trim_end_matches(';')).map_err(|e| TenantError::invalid("sql", explain(&e)))?;
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
        let q = stmt.query([]).map_err(|e| TenantError::invalid("sql", explain(&e)))?;
        collect(columns, q)
    })();
    conn.progress_handler(0, None::<fn() -> bool>)?;
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
    result
}

/// The result of a console statement.
#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows changed by a write.
    pub changed: usize,
    /// Whether more rows existed than were returned.
    pub truncated: bool,
}

/// Most rows a console query returns.
pub const MAX_ROWS: usize = 1000;

struct Param<'a>(&'a serde_json::Value);

impl ToSql for Param<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self.0 {
            serde_json::Value::Null => ToSqlOutput::Owned(Value::Null),
            serde_json::Value::Bool(b) => ToSqlOutput::Owned(Value::Integer(i64::from(*b))),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => ToSqlOutput::Owned(Value::Integer(i)),
                None => ToSqlOutput::Owned(Value::Real(n.as_f64().unwrap_or(0.0))),
            },
            serde_json::Value::String(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            other => ToSqlOutput::Owned(Value::Text(other.to_string())),
        })
    }
}

/// Runs one statement with bound parameters under the console's rules.
pub fn run_console(
    conn: &Connection,
    sql: &str,
    params: &[serde_json::Value],
    deadline: Duration,
) -> Result<QueryResult, TenantError> {
    let sql = sql.trim().trim_end_matches(';');
    if sql.is_empty() {
        return Err(TenantError::invalid("sql", "Write a SQL statement."));
    }
    if sql.len() > 100_000 {
        return Err(TenantError::invalid("sql", "The statement is longer than 100,000 characters."));
    }
    conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, 10_000_000)?;
    conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000)?;
    conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0)?;
    conn.authorizer(Some(console_authorizer))?;
    let started = Instant::now();
    conn.progress_handler(10_000, Some(move || started.elapsed() > deadline))?;
    let result = (|| {
        let mut stmt = conn.prepare(sql).map_err(|e| TenantError::invalid("sql", explain(&e)))?;
        if stmt.parameter_count() != params.len() {
            return Err(TenantError::invalid(
                "params",
                format!(
                    "The statement has {} parameters but {} values were given.",
                    stmt.parameter_count(),
                    params.len()
                ),
            ));
        }
        let bound: Vec<Param<'_>> = params.iter().map(Param).collect();
        let refs: Vec<&dyn ToSql> = bound.iter().map(|p| p as &dyn ToSql).collect();
        let columns: Vec<String> = stmt.column_names().into_iter().map(str::to_string).collect();
        if columns.is_empty() {
            let changed = stmt.execute(refs.as_slice()).map_err(|e| TenantError::invalid("sql", explain(&e)))?;
            return Ok(QueryResult { columns, rows: Vec::new(), changed, truncated: false });
        }
        let q = stmt.query(refs.as_slice()).map_err(|e| TenantError::invalid("sql", explain(&e)))?;
        collect(columns, q)
    })();
    conn.progress_handler(0, None::<fn() -> bool>)?;
    conn.authorizer(None::<fn(AuthContext<'_>) -> Authorization>)?;
    result
}

/// Reads up to [`MAX_ROWS`] rows as JSON values.
fn collect(columns: Vec<String>, mut q: rusqlite::Rows<'_>) -> Result<QueryResult, TenantError> {
    let mut rows = Vec::new();
    let mut truncated = false;
    while let Some(row) = q.next().map_err(|e| TenantError::invalid("sql", explain(&e)))? {
        if rows.len() == MAX_ROWS {
            truncated = true;
            break;
        }
        let mut out = Vec::with_capacity(columns.len());
        for i in 0..columns.len() {
            out.push(match row.get_ref(i)? {
                ValueRef::Null => serde_json::Value::Null,
                ValueRef::Integer(v) => v.into(),
                ValueRef::Real(v) => serde_json::json!(v),
                ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
                ValueRef::Blob(b) => format!("<{} bytes>", b.len()).into(),
            });
        }
        rows.push(out);
    }
    Ok(QueryResult { columns, rows, changed: 0, truncated })
}

fn explain(e: &rusqlite::Error) -> String {
    let text = e.to_string();
    if text.contains("not authorized") {
        "Not allowed in the SQL console: ATTACH, extensions, file access, triggers and pragmas that change settings are refused.".into()
    } else if text.contains("interrupted") {
        "The statement ran past its time limit and was stopped.".into()
    } else {
        format!("SQL error: {text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> Connection {
        let c = Connection::open_in_memory().expect("db");
        c.execute_batch("CREATE TABLE seldesk_meta (key TEXT PRIMARY KEY, value TEXT); CREATE TABLE t (x INTEGER);")
            .expect("schema");
        c
    }

    #[test]
    fn console_refuses_attach_extensions_files_and_settings() {
        let c = db();
        for sql in [
            "ATTACH DATABASE '/etc/passwd' AS x",
            "SELECT load_extension('/tmp/evil.so')",
            "PRAGMA journal_mode = OFF",
            "PRAGMA writable_schema = 1",
            "UPDATE seldesk_meta SET value = '9'",
            "CREATE TRIGGER tr AFTER INSERT ON t BEGIN DELETE FROM t; END",
        ] {
            let err = run_console(&c, sql, &[], Duration::from_secs(2)).expect_err(sql);
            assert!(err.to_string().contains("Not allowed") || err.to_string().contains("SQL error"), "{sql}: {err}");
        }
        let ok = run_console(&c, "INSERT INTO t (x) VALUES (?1)", &[serde_json::json!(5)], Duration::from_secs(2))
            .expect("insert");
        assert_eq!(ok.changed, 1);
        let rows = run_console(&c, "SELECT x FROM t", &[], Duration::from_secs(2)).expect("select");
        assert_eq!(rows.rows, vec![vec![serde_json::json!(5)]]);
    }

    #[test]
    fn runaway_queries_stop_at_the_deadline() {
        let c = db();
        let started = Instant::now();
        let err = run_console(
            &c,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
            &[],
            Duration::from_millis(300),
        )
        .expect_err("stopped");
        assert!(err.to_string().contains("time limit"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

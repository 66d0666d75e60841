//! The contact search index inside each customer database: an FTS5 table
//! with the trigram tokenizer over the contacts' name, e-mail and tags, kept
//! by triggers, so a substring search reads a few index pages instead of
//! every contact (issue 29).
//!
//! The index is Seldesk's, not the customer's: it is derived from
//! `contacts`, made by Seldesk's own code (never loaded from an archive or
//! an upload), left out of exports, out of reach of the SQL console, and
//! rebuilt when a database arrives without it. It is not part of the schema
//! version: a database with or without it is the same database.

use rusqlite::{Connection, OptionalExtension};

use crate::TenantError;

/// The index table; its shadow tables and triggers start with it too.
pub const INDEX: &str = "seldesk_search";

/// Shortest query the index serves: a trigram index cannot look up fewer
/// than three characters, so shorter queries scan.
pub const MIN_INDEXED_CHARS: usize = 3;

/// The index and the triggers that keep it equal to `contacts`.
/// `content='contacts'`: the index holds no copy of the text, only its
/// trigrams. `secure-delete`: a deleted or changed contact's trigrams are
/// removed from the index pages at once, as `secure_delete` removes the row
/// itself, so nothing of an erased name stays in the file (DB-6, ACC-4).
const CREATE: &str = "
CREATE VIRTUAL TABLE seldesk_search USING fts5(
    name, email, tags, content='contacts', content_rowid='id', tokenize='trigram', columnsize=0
);
INSERT INTO seldesk_search (seldesk_search, rank) VALUES ('secure-delete', 1);
CREATE TRIGGER seldesk_search_insert AFTER INSERT ON contacts BEGIN
    INSERT INTO seldesk_search (rowid, name, email, tags) VALUES (new.id, new.name, new.email, new.tags);
END;
CREATE TRIGGER seldesk_search_delete AFTER DELETE ON contacts BEGIN
    INSERT INTO seldesk_search (seldesk_search, rowid, name, email, tags) VALUES ('delete', old.id, old.name, old.email, old.tags);
END;
CREATE TRIGGER seldesk_search_update AFTER UPDATE OF id, name, email, tags ON contacts BEGIN
    INSERT INTO seldesk_search (seldesk_search, rowid, name, email, tags) VALUES ('delete', old.id, old.name, old.email, old.tags);
    INSERT INTO seldesk_search (rowid, name, email, tags) VALUES (new.id, new.name, new.email, new.tags);
END;
INSERT INTO seldesk_search (seldesk_search) VALUES ('rebuild');
";

/// Whether a schema object (table, shadow table, trigger) belongs to the
/// index: such objects are never exported, imported or counted as the
/// customer's.
pub fn is_index_object(name: &str) -> bool {
    name.eq_ignore_ascii_case(INDEX)
        || name.get(..INDEX.len() + 1).is_some_and(|p| p.eq_ignore_ascii_case(&format!("{INDEX}_")))
}

/// Whether the database has the index.
pub fn has_index(conn: &Connection) -> Result<bool, TenantError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'seldesk_search'")?
        .query_row([], |_| Ok(()))
        .optional()?
        .is_some())
}

/// Makes the index if the database has none (a database made before it
/// existed, or one that arrived by import, which never carries it), in one
/// transaction. Returns whether it was made. A database whose contacts
/// table the owner dropped or reshaped gets none: its search scans.
pub fn ensure_index(conn: &Connection) -> Result<bool, TenantError> {
    if has_index(conn)? || !has_searchable_contacts(conn)? {
        return Ok(false);
    }
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {CREATE} COMMIT;")).inspect_err(|_| {
        let _ = conn.execute_batch("ROLLBACK");
    })?;
    Ok(true)
}

/// `contacts` exists with the columns the index reads.
fn has_searchable_contacts(conn: &Connection) -> Result<bool, TenantError> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info('contacts')")?;
    let columns: Vec<String> = stmt.query_map([], |r| r.get(0))?.collect::<Result<_, _>>()?;
    Ok(["id", "name", "email", "tags"].iter().all(|c| columns.iter().any(|have| have == c)))
}

/// The FTS5 query that finds every contact holding `q`, and some more: two
/// of the trigrams that cover `q` without overlapping, both required. The
/// caller's `LIKE` keeps only the true matches, so the query need not be
/// the exact phrase, and each trigram costs a walk of its list: the phrase
/// of every trigram of `Person 12345` took 154 µs on 20,000 contacts, its
/// four covering trigrams 62 µs, the two kept here (" 12", "345") 26 µs.
/// Digits, signs and spaces are rarer in names and addresses than letters,
/// so the trigrams with most of them are kept, and of equals the later
/// ones (a name's end tells more than its start). None when `q` is too
/// short for the index.
pub fn candidates(q: &str) -> Option<String> {
    let chars: Vec<char> = q.chars().collect();
    if chars.len() < MIN_INDEXED_CHARS {
        return None;
    }
    let last = chars.len() - MIN_INDEXED_CHARS;
    let mut starts: Vec<usize> = (0..=last).step_by(MIN_INDEXED_CHARS).collect();
    if starts.last() != Some(&last) {
        starts.push(last);
    }
    let rare = |i: &usize| chars[*i..*i + MIN_INDEXED_CHARS].iter().filter(|c| !c.is_alphabetic()).count();
    starts.sort_by_key(|i| std::cmp::Reverse((rare(i), *i)));
    starts.truncate(2);
    starts.sort_unstable();
    let terms: Vec<String> = starts
        .into_iter()
        .map(|i| {
            let trigram: String = chars[i..i + MIN_INDEXED_CHARS].iter().collect();
            format!("\"{}\"", trigram.replace('"', "\"\""))
        })
        .collect();
    Some(terms.join(" AND "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::{self, ContactInput};

    /// A customer database at the newest version, configured as every
    /// Seldesk connection is, with or without the index.
    fn database(dir: &std::path::Path, name: &str, indexed: bool) -> Connection {
        let path = dir.join(name);
        drop(crate::files::create_at_version(&path, crate::files::SCHEMA_VERSION).expect("create"));
        let conn = crate::files::open_configured(&path).expect("open");
        if indexed {
            assert!(ensure_index(&conn).expect("index"));
            assert!(!ensure_index(&conn).expect("again"), "made once");
        }
        conn
    }

    fn input(name: &str, email: Option<&str>, tags: &[&str]) -> ContactInput {
        ContactInput {
            name: Some(name.into()),
            email: email.map(str::to_string),
            tags: Some(tags.iter().map(|t| t.to_string()).collect()),
            ..Default::default()
        }
    }

    fn names(conn: &Connection, q: &str) -> Vec<String> {
        app::list(conn, Some(q), 20).expect("list").into_iter().map(|c| format!("{} #{}", c.name, c.id)).collect()
    }

    #[test]
    fn the_index_finds_exactly_what_a_scan_finds_through_inserts_updates_and_deletes() {
        let dir = tempfile::tempdir().expect("tmp");
        let indexed = database(dir.path(), "indexed.sqlite", true);
        let scanned = database(dir.path(), "scanned.sqlite", false);
        let first = ["Asha", "Élodie", "O'Brien", "Zoë", "100%", "under_score", "Ana \"Q\" Lee", "kim"];
        let last = ["Rao", "Dupont", "Smith", "Müller", "Nakamura", "van der Berg"];
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 33) as usize
        };
        for conn in [&indexed, &scanned] {
            conn.execute_batch("BEGIN").expect("begin");
        }
        let mut made = Vec::new();
        for i in 0..3000 {
            let name = format!("{} {} {}", first[next() % first.len()], last[next() % last.len()], next() % 500);
            let email = format!(
                "{}.{i}@example.{}",
                last[next() % last.len()].to_lowercase().replace(' ', "-"),
                ["com", "in", "sg"][i % 3]
            );
            let tags = [["vip"], ["lead"], ["100%"]][next() % 3];
            let c = input(&name, (i % 4 != 0).then_some(email.as_str()), &tags);
            for conn in [&indexed, &scanned] {
                made.push(app::create(conn, &c, "now").expect("create").id);
            }
        }
        for conn in [&indexed, &scanned] {
            conn.execute_batch("COMMIT").expect("commit");
        }
        let queries = [
            "Asha",
            "asha rao",
            "DUPONT",
            "o'brien",
            "100%",
            "0%",
            "under_score",
            "der_s",
            "\"Q\"",
            "ler 4",
            "@example.sg",
            ".in",
            "vip",
            "lea",
            "ë",
            "Zoë Mü",
            "zz",
            "no such person",
            "Nakamura 12",
            "kim van",
            "example",
            "Rao",
            "a R",
            "Person",
        ];
        let compare = |when: &str| {
            for q in queries {
                assert_eq!(names(&indexed, q), names(&scanned, q), "{when}: `{q}`");
            }
        };
        compare("after inserts");
        assert_eq!(names(&indexed, "no such person"), Vec::<String>::new());
        assert!(!names(&indexed, "Asha").is_empty());
        // Changes through the app and through plain SQL (the console's way).
        for id in (1..=3000).step_by(7) {
            for conn in [&indexed, &scanned] {
                app::update(conn, id, &input("Renamed Person", Some("moved@example.org"), &["moved"]), "later")
                    .expect("update");
            }
        }
        for conn in [&indexed, &scanned] {
            conn.execute("DELETE FROM contacts WHERE id % 5 = 0", []).expect("delete");
            conn.execute("UPDATE contacts SET tags = 'swapped' WHERE id % 11 = 0", []).expect("retag");
        }
        compare("after changes");
        assert!(!names(&indexed, "Renamed").is_empty());
        // FTS5's own check of the index against `contacts`.
        indexed
            .execute("INSERT INTO seldesk_search (seldesk_search, rank) VALUES ('integrity-check', 1)", [])
            .expect("the index matches the contacts");
    }

    // promise: DB-6
    #[test]
    fn a_deleted_contact_leaves_none_of_its_trigrams_in_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let conn = database(dir.path(), "db.sqlite", true);
        let path = dir.path().join("db.sqlite");
        // Upper case in the row, lower case in the index: the grep below
        // finds the index's terms, not the row.
        let id = app::create(&conn, &input("QZJXW", None, &[]), "now").expect("create").id;
        let file = |conn: &Connection| {
            conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").expect("checkpoint");
            std::fs::read(&path).expect("read")
        };
        let holds = |bytes: &[u8], term: &[u8]| bytes.windows(term.len()).any(|w| w == term);
        let before = file(&conn);
        assert!(holds(&before, b"zjx") && holds(&before, b"QZJXW"), "the index holds the name's trigrams");
        app::delete(&conn, id).expect("delete");
        let after = file(&conn);
        for term in [&b"qzj"[..], b"zjx", b"jxw", b"QZJXW"] {
            assert!(!holds(&after, term), "`{}` is still in the file", String::from_utf8_lossy(term));
        }
        assert!(names(&conn, "zjx").is_empty());
    }

    #[test]
    fn the_console_cannot_change_the_index_but_its_writes_keep_it_current() {
        use crate::sandbox::run_console;
        let dir = tempfile::tempdir().expect("tmp");
        let conn = database(dir.path(), "db.sqlite", true);
        app::create(&conn, &input("Asha Rao", None, &[]), "now").expect("create");
        let run = |sql: &str| run_console(&conn, sql, &[], std::time::Duration::from_secs(5));
        for sql in [
            "INSERT INTO seldesk_search (seldesk_search) VALUES ('delete-all')",
            "DELETE FROM seldesk_search",
            "INSERT INTO seldesk_search_data VALUES (99, x'00')",
            "DELETE FROM seldesk_search_data",
            "UPDATE seldesk_search_config SET v = 0",
            "DROP TRIGGER seldesk_search_insert",
            "DROP TABLE seldesk_search",
            "DROP TABLE seldesk_search_data",
            "ALTER TABLE seldesk_search_idx RENAME TO mine",
            "CREATE TABLE seldesk_search_mine (x)",
            "CREATE TABLE Seldesk_Search_Mine (x)",
            "CREATE VIEW seldesk_search_view AS SELECT 1",
            "CREATE INDEX seldesk_search_by_name ON contacts (name)",
        ] {
            assert!(run(sql).is_err(), "the console ran `{sql}`");
        }
        run("INSERT INTO contacts (name, created_at, updated_at) VALUES ('Ravi Kumar', 'now', 'now')").expect("insert");
        run("UPDATE contacts SET name = 'Asha Menon' WHERE name = 'Asha Rao'").expect("update");
        assert_eq!(names(&conn, "kumar").len(), 1);
        assert_eq!(names(&conn, "Menon").len(), 1);
        assert!(names(&conn, "Asha Rao").is_empty());
        let read = run("SELECT count(*) FROM seldesk_search WHERE seldesk_search MATCH '\"ravi\"'").expect("read");
        assert_eq!(read.rows, vec![vec![serde_json::json!(1)]]);
    }

    #[test]
    fn index_objects_are_told_from_the_customers_own() {
        assert!(is_index_object("seldesk_search"));
        assert!(is_index_object("seldesk_search_data"));
        assert!(is_index_object("SELDESK_SEARCH_insert"));
        assert!(!is_index_object("seldesk_searches"));
        assert!(!is_index_object("contacts"));
        assert!(!is_index_object("seldesk_meta"));
    }

    #[test]
    fn the_candidate_query_keeps_two_covering_trigrams_and_quotes_inside() {
        assert_eq!(candidates("ab"), None);
        assert_eq!(candidates("a\"b").as_deref(), Some("\"a\"\"b\""));
        assert_eq!(candidates("élé").as_deref(), Some("\"élé\""));
        assert_eq!(candidates("Person 12345").as_deref(), Some("\" 12\" AND \"345\""));
        assert_eq!(candidates("Asha R").as_deref(), Some("\"Ash\" AND \"a R\""));
        assert_eq!(candidates("Asha Rao").as_deref(), Some("\"a R\" AND \"Rao\""));
        assert_eq!(candidates("ravi@example.in").as_deref(), Some("\"i@e\" AND \".in\""));
    }

    /// Paging through a list while contacts are added between pages sees
    /// every contact that was there before exactly once, in the list's order,
    /// whichever path (walk, index, full scan) each page takes.
    #[test]
    fn pages_see_every_contact_once_while_others_are_added() {
        let dir = tempfile::tempdir().expect("tmp");
        for (file, indexed) in [("indexed.sqlite", true), ("scanned.sqlite", false)] {
            let conn = database(dir.path(), file, indexed);
            conn.execute_batch("BEGIN").expect("begin");
            let mut before = Vec::new();
            for i in 0..2000 {
                let name = format!("{} {}", ["Asha", "Zoë", "Kim", "Rao"][i % 4], (i * 7919) % 1000);
                let email = format!("p{i}@example.{}", ["com", "in"][i % 2]);
                before.push(app::create(&conn, &input(&name, Some(&email), &["vip"]), "now").expect("create"));
            }
            conn.execute_batch("COMMIT").expect("commit");
            for q in [None, Some("asha"), Some("example.in"), Some("vip"), Some("Zoë 9")] {
                let want: Vec<i64> = app::list(&conn, q, 10_000).expect("all").iter().map(|c| c.id).collect();
                let (mut seen, mut cursor, mut added) = (Vec::new(), None, 0);
                loop {
                    let page = app::page(&conn, q, 37, cursor.as_ref()).expect("page");
                    seen.extend(page.contacts.iter().map(|c| c.id));
                    // New contacts land before and after the cursor.
                    for name in ["Aaron New", "Zz New", "Asha 0 New"] {
                        app::create(&conn, &input(name, Some("new@example.in"), &["vip"]), "now").expect("add");
                        added += 1;
                    }
                    let Some(next) = page.next_cursor else { break };
                    cursor = Some(app::Cursor::parse(&next).expect("our cursor"));
                }
                let old: Vec<i64> = seen.iter().copied().filter(|id| want.contains(id)).collect();
                assert_eq!(old, want, "{file} `{q:?}`: every contact of before, once, in order ({added} added)");
                let unique: std::collections::BTreeSet<_> = seen.iter().collect();
                assert_eq!(unique.len(), seen.len(), "{file} `{q:?}`: no contact twice");
            }
        }
        assert!(app::Cursor::parse("12.not base64!").is_err());
        assert!(app::Cursor::parse("x.QQ").is_err());
        assert!(app::Cursor::parse(&"9".repeat(2000)).is_err());
    }
}

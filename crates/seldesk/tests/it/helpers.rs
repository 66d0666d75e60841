use std::path::{Path, PathBuf};
use std::sync::Arc;

use seldesk::{Application, Config};
use seldesk_domain::{Policy, TestClock};
use sqlx::Executor;
use tempfile::TempDir;
use time::OffsetDateTime;

/// A running test server.
pub struct TestApp {
    pub base: String,
    pub admin: String,
    pub client: reqwest::Client,
    pub clock: TestClock,
    pub app: Option<Application>,
    pub database_url: String,
    pub config: Config,
    pub data: TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn text(&self, path: &str) -> (u16, String) {
        let r = self.get(path).await;
        let status = r.status().as_u16();
        (status, r.text().await.expect("body"))
    }

    pub fn app(&self) -> &Application {
        self.app.as_ref().expect("running")
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.stop().await;
        }
    }
}

/// The PostgreSQL server to test against, if any (`SELDESK_TEST_PG`, e.g.
/// `postgres://postgres@127.0.0.1/postgres`).
pub fn pg_admin_url() -> Option<String> {
    std::env::var("SELDESK_TEST_PG").ok().filter(|s| !s.is_empty())
}

/// A fresh control-plane database URL: a new PostgreSQL database when
/// testing on PostgreSQL, else a SQLite file in `dir`.
pub async fn fresh_database_url(dir: &Path) -> String {
    match pg_admin_url() {
        Some(admin) => {
            let name = format!("seldesk_t_{}", uuid::Uuid::now_v7().simple());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await.expect("connect to SELDESK_TEST_PG");
            pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).await.expect("create test database");
            pool.close().await;
            let base = admin.rsplit_once('/').map(|(b, _)| b.to_string()).unwrap_or(admin);
            format!("{base}/{name}")
        }
        None => format!("sqlite://{}", dir.join("control.db").display()),
    }
}

pub fn test_config(data: &Path, database_url: String) -> Config {
    Config {
        data: data.to_path_buf(),
        listen: "127.0.0.1:0".parse().expect("addr"),
        admin_listen: "127.0.0.1:0".parse().expect("addr"),
        database_url: Some(database_url),
        // Tests move the clock and run jobs by hand; background workers would
        // race them. Tests of the runner turn workers on.
        jobs: seldesk::config::JobsConfig { workers: 0, ..Default::default() },
        // Upgrades run in the test's process, by hand like every job; the
        // upgrade service's own process is tested with the real binary.
        upgrades: seldesk::config::UpgradesConfig {
            worker: seldesk::config::UpgradeWorkerMode::Inline,
            ..Default::default()
        },
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}, Policy::builtin().expect("policy")).await
}

/// Starts the real server with a tweaked configuration and a given policy.
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Config), policy: Policy) -> TestApp {
    let data = tempfile::tempdir().expect("tempdir");
    let url = fresh_database_url(data.path()).await;
    let url_for_app = url.clone();
    let mut config = test_config(data.path(), url);
    tweak(&mut config);
    let config_copy = config.clone();
    let clock = TestClock::new(OffsetDateTime::now_utc());
    let app = Application::build(config, policy, Arc::new(clock.clone())).await.expect("server starts");
    TestApp {
        base: format!("http://{}", app.web_addr()),
        admin: format!("http://{}", app.admin_addr()),
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client"),
        clock,
        app: Some(app),
        database_url: url_for_app,
        config: config_copy,
        data,
    }
}

/// The built `seldesk` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seldesk"))
}

/// The repository's policy folder (for tests that edit a copy of the file).
pub fn policy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy")
}

/// Copies the policy folder into `dir` with one replacement in the file.
pub fn edited_policy(dir: &Path, from: &str, to: &str) -> PathBuf {
    let source = std::fs::read_to_string(policy_dir().join("seldesk.toml")).expect("policy");
    assert!(source.contains(from), "the edit applies: {from}");
    std::fs::create_dir_all(dir.join("versions")).expect("mkdir");
    // The shipped history may be a single version with no archives yet.
    for entry in std::fs::read_dir(policy_dir().join("versions")).into_iter().flatten() {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join("versions").join(entry.file_name())).expect("copy");
    }
    let path = dir.join("seldesk.toml");
    std::fs::write(&path, source.replacen(from, to, 1)).expect("write");
    path
}

/// The built-in policy plus an earlier version, 2025-06-01, whose archived
/// text kept upgrade uploads 3 months. A fixture: the shipped file lists only
/// versions that were really published.
pub fn policy_with_an_older_version(dir: &Path) -> Policy {
    let builtin = Policy::builtin().expect("policy");
    let newest = builtin.newest_version().effective.to_string();
    let from = format!("[[versions]]\neffective = {newest}\nsummary = \"First published version.\"\n");
    let to = format!(
        "[[versions]]\neffective = {newest}\nsummary = \"Upgrade uploads are kept up to 4 months (was 3 months).\"\n\n[[versions]]\neffective = 2025-06-01\nsummary = \"First published version.\"\narchive = \"versions/2025-06-01.md\"\n"
    );
    let file = edited_policy(dir, &from, &to);
    let old = builtin
        .text_of(builtin.newest_version())
        .replace(&format!("Last updated: {newest}"), "Last updated: 2025-06-01")
        .replace(
            "for up to 4 months after the last successful upgrade",
            "for up to 3 months after the last successful upgrade",
        );
    std::fs::write(dir.join("versions").join("2025-06-01.md"), old).expect("archive");
    Policy::load(&file).expect("a policy with an older version")
}

impl TestApp {
    pub fn clock_now(&self) -> time::OffsetDateTime {
        use seldesk_domain::Clock;
        self.clock.now()
    }

    /// Today on the test clock.
    pub fn clock_today(&self) -> time::Date {
        use seldesk_domain::Clock;
        self.clock.now().date()
    }
}

impl TestApp {
    /// The control-plane URL, for running the CLI against this server's data.
    pub fn database_url(&self) -> String {
        self.database_url.clone()
    }

    pub fn data_dir(&self) -> &str {
        self.data.path().to_str().expect("utf-8 temp path")
    }

    pub fn db(&self) -> &seldesk_store::Db {
        self.app().db()
    }
}

/// Runs the built binary; returns exit code, stdout, stderr.
pub fn cli_run(args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin()).args(args).env_remove("SELDESK_CONFIG").output().expect("run seldesk");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl TestApp {
    /// Runs every due job now (background workers are off in tests).
    pub async fn run_jobs(&self) -> usize {
        self.app().run_pending_jobs(&self.config).await.expect("jobs run")
    }

    /// Every message in the outbox, oldest first.
    pub fn outbox(&self) -> Vec<String> {
        let dir = self.data.path().join("mail").join("outbox");
        let mut files: Vec<_> = match std::fs::read_dir(&dir) {
            Ok(rd) => rd
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect(),
            Err(_) => Vec::new(),
        };
        files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
        files.iter().map(|p| decode_eml(&std::fs::read_to_string(p).expect("read eml"))).collect()
    }

    /// The newest message to `to` whose subject contains `subject`.
    pub fn mail_to(&self, to: &str, subject: &str) -> Option<String> {
        self.outbox().into_iter().rev().find(|m| m.contains(&format!("To: {to}")) && m.contains(subject))
    }

    /// Signs up through the API; returns the account id.
    pub async fn sign_up(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/v1/accounts"))
            .json(&serde_json::json!({ "name": "Asha Rao", "company": "Rao Textiles", "email": email, "password": password }))
            .send()
            .await
            .expect("signup");
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
        let v: serde_json::Value = r.json().await.expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// An API token.
    pub async fn token(&self, email: &str, password: &str) -> String {
        let r = self
            .client
            .post(self.url("/api/v1/auth/token"))
            .json(&serde_json::json!({ "email": email, "password": password }))
            .send()
            .await
            .expect("token");
        assert_eq!(r.status(), 200);
        let v: serde_json::Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }
}

/// Puts an invoice on an account (billing will issue them; erasure must keep them).
pub async fn add_invoice(app: &TestApp, account_id: &str, number: &str, country: &str) {
    sqlx::query(
        "INSERT INTO invoices (id, number, account_id, buyer_name, buyer_email, country, currency, total_cents, issued_at)
         VALUES ($1, $2, $3, 'Buyer Name', 'buyer@example.com', $4, 'EUR', 4900, $5)",
    )
    .bind(uuid::Uuid::now_v7().simple().to_string())
    .bind(number)
    .bind(account_id)
    .bind(country)
    .bind(seldesk_store::to_millis(app.clock_now()))
    .execute(app.db().pool())
    .await
    .expect("invoice");
}

/// The first link in `mail` that starts with `prefix` (e.g. "http://127.0.0.1:1234/verify-email").
pub fn link(mail: &str, path: &str) -> Option<String> {
    mail.split_whitespace().find(|w| w.starts_with("http") && w.contains(path)).map(str::to_string)
}

/// Headers as written, body decoded when it is base64 (non-ASCII text).
fn decode_eml(raw: &str) -> String {
    let Some((head, body)) = raw.split_once("\r\n\r\n").or_else(|| raw.split_once("\n\n")) else {
        return raw.to_string();
    };
    if head.to_ascii_lowercase().contains("content-transfer-encoding: base64") {
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        if let Ok(bytes) = data_encoding::BASE64.decode(compact.as_bytes()) {
            return format!("{head}\n\n{}", String::from_utf8_lossy(&bytes));
        }
    }
    if head.to_ascii_lowercase().contains("content-transfer-encoding: quoted-printable") {
        let joined = body.replace("=\r\n", "").replace("=\n", "");
        let bytes = joined.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'='
                && i + 2 < bytes.len()
                && let Ok(b) = u8::from_str_radix(&joined[i + 1..i + 3], 16)
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        return format!("{head}\n\n{}", String::from_utf8_lossy(&out));
    }
    raw.to_string()
}

/// Creates a staff member with `role`; returns the one-time password and TOTP secret.
pub fn add_staff(app: &TestApp, email: &str, role: &str) -> (String, String) {
    let (code, out, err) = cli_run(&[
        "staff",
        "add",
        "--email",
        email,
        "--role",
        role,
        "--database-url",
        &app.database_url(),
        "--data",
        app.data_dir(),
    ]);
    assert_eq!(code, 0, "{err}");
    let field =
        |label: &str| out.lines().find_map(|l| l.strip_prefix(label)).map(|s| s.trim().to_string()).expect(label);
    (field("one-time password:"), field("TOTP secret:"))
}

/// Creates a staff member with `role` and signs in; returns the cookie header.
pub async fn staff_session(app: &TestApp, email: &str, role: &str) -> String {
    let (password, secret) = add_staff(app, email, role);
    let page = app.client.get(app.url("/staff")).send().await.expect("page");
    let csrf_cookie =
        page.headers()["set-cookie"].to_str().expect("cookie").split(';').next().expect("pair").to_string();
    let csrf = csrf_cookie.split_once('=').expect("kv").1.to_string();
    let code = seldesk_accounts::staff::totp_code(&secret, app.clock_now()).expect("code");
    let r = app
        .client
        .post(app.url("/staff"))
        .header("cookie", &csrf_cookie)
        .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password.as_str()), ("code", code.as_str())])
        .send()
        .await
        .expect("signin");
    assert_eq!(r.status(), 303);
    let session = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_session="))
        .expect("cookie");
    format!("{}; {csrf_cookie}", session.split(';').next().expect("pair"))
}

/// The CSRF cookie (`name=value`) a page set, and its token.
pub fn csrf_of(page: &reqwest::Response) -> (String, String) {
    let cookie = page
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("seldesk_csrf="))
        .expect("csrf cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    let token = cookie.split_once('=').expect("kv").1.to_string();
    (cookie, token)
}

impl TestApp {
    /// A page's CSRF cookie (`name=value`) and its token, for form posts.
    pub async fn csrf(&self, path: &str) -> (String, String) {
        csrf_of(&self.get(path).await)
    }

    /// Signs in through the form; returns the cookie header for later requests.
    pub async fn web_session(&self, email: &str, password: &str) -> String {
        let (cookie, csrf) = self.csrf("/signin").await;
        let r = self
            .client
            .post(self.url("/signin"))
            .header("cookie", &cookie)
            .form(&[("csrf", csrf.as_str()), ("email", email), ("password", password), ("next", "/account")])
            .send()
            .await
            .expect("signin");
        assert_eq!(r.status(), 303, "signed in");
        let session = r
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("seldesk_session="))
            .expect("session cookie")
            .split(';')
            .next()
            .expect("pair")
            .to_string();
        format!("{session}; {cookie}")
    }
}

/// Signs up a customer on the server at `base` (`http://host:port`) and
/// returns an API token.
pub async fn customer_token_at(client: &reqwest::Client, base: &str, email: &str, password: &str) -> String {
    let r = client
        .post(format!("{base}/api/v1/accounts"))
        .json(&serde_json::json!({ "name": "Test Customer", "company": "T", "email": email, "password": password }))
        .send()
        .await
        .expect("signup");
    assert_eq!(r.status(), 201, "sign-up");
    let token: serde_json::Value = client
        .post(format!("{base}/api/v1/auth/token"))
        .json(&serde_json::json!({ "email": email, "password": password }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    token["token"].as_str().expect("token").to_string()
}

/// A real `seldesk serve` process over its own data folder, for what an
/// in-process server cannot show: its memory, its logs, signals.
pub struct ServerProcess {
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    pub dir: TempDir,
    /// The control-plane database.
    pub url: String,
    /// Log lines read so far (see [`ServerProcess::read_log`]).
    pub log: Vec<String>,
    lines: std::sync::mpsc::Receiver<String>,
    env: Vec<(String, String)>,
    args: Vec<String>,
}

impl ServerProcess {
    /// Starts the server on free ports with `env` set; waits until it says
    /// where it listens.
    pub async fn start(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let url = fresh_database_url(dir.path()).await;
        Self::start_with(dir, url, &[], env)
    }

    /// Starts a node of a cluster over its own data folder `dir` and the
    /// control plane at `url`, with extra `serve` arguments (`--region`…).
    pub fn start_with(dir: TempDir, url: String, args: &[String], env: &[(&str, &str)]) -> Self {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, base, log, lines) = Self::spawn(dir.path(), &url, &env, args);
        Self { child, base, dir, url, log, lines, env, args: args.to_vec() }
    }

    fn spawn(
        dir: &Path,
        url: &str,
        env: &[(String, String)],
        args: &[String],
    ) -> (std::process::Child, String, Vec<String>, std::sync::mpsc::Receiver<String>) {
        let mut child = std::process::Command::new(bin())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--database-url",
                url,
                "--data",
            ])
            .arg(dir)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)).map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut log = Vec::new();
        let mut addr = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while addr.is_none() && std::time::Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(std::time::Duration::from_millis(200)) {
                if let Some(rest) = line.split("web_addr=").nth(1) {
                    addr = rest.split_whitespace().next().map(str::to_string);
                }
                log.push(line);
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("the server announced its address: {log:?}"));
        (child, format!("http://{addr}"), log, lines)
    }

    /// SIGKILL, then the same server again over the same data folder and
    /// control plane (on new ports).
    pub fn kill_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (child, base, log, lines) = Self::spawn(self.dir.path(), &self.url, &self.env, &self.args);
        (self.child, self.base, self.lines) = (child, base, lines);
        self.log.extend(log);
    }

    /// Signs up a customer with `password` and returns an API token.
    pub async fn customer_token(&self, client: &reqwest::Client, email: &str, password: &str) -> String {
        customer_token_at(client, &self.base, email, password).await
    }

    /// Creates a customer database (`body`: name, region...) and returns its id.
    pub async fn create_database(&self, client: &reqwest::Client, token: &str, body: serde_json::Value) -> String {
        let db: serde_json::Value = client
            .post(format!("{}/api/v1/databases", self.base))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        db["id"].as_str().unwrap_or_else(|| panic!("a database: {db}")).to_string()
    }

    /// The host and port it listens on.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// Reads the log lines written until `quiet` passes without a new one.
    pub fn read_log(&mut self, quiet: std::time::Duration) {
        while let Ok(line) = self.lines.recv_timeout(quiet) {
            self.log.push(line);
        }
    }

    /// The most resident memory the process has used so far, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("VmHWM")
    }

    /// Sends SIGTERM and waits up to 20 s for the exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let killed = std::process::Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        assert!(killed.is_ok_and(|s| s.success()), "SIGTERM sent");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(std::time::Instant::now() < deadline, "stopped within 20 s");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Test setup: a subscription in force for database `id` (paid a month
/// ahead), as a confirmed payment leaves it, and the database subscribed.
pub async fn paid(app: &TestApp, id: &str) {
    let now = seldesk_store::to_millis(app.clock_now());
    let month = 31 * 86_400_000i64;
    let account: String = sqlx::query_scalar("SELECT account_id FROM databases WHERE id = $1")
        .bind(id)
        .fetch_one(app.db().pool())
        .await
        .expect("database");
    sqlx::query(
        "INSERT INTO subscriptions (id, account_id, database_id, plan, billing_interval, seats, currency, amount_cents, processor, status, period_start, period_end, created_at)
         VALUES ($1, $2, $3, 'standard', 'monthly', 1, 'USD', 1000, 'test', 'active', $4, $5, $4)",
    )
    .bind(uuid::Uuid::now_v7().simple().to_string())
    .bind(&account)
    .bind(id)
    .bind(now)
    .bind(now + month)
    .execute(app.db().pool())
    .await
    .expect("subscription");
    app.app().services().databases.activate_paid(id).await.expect("subscribed");
}

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
    pub data: TempDir,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
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
    std::env::var("SELDESK_TEST_PG")
        .ok()
        .filter(|s| !s.is_empty())
}

/// A fresh control-plane database URL: a new PostgreSQL database when
/// testing on PostgreSQL, else a SQLite file in `dir`.
pub async fn fresh_database_url(dir: &Path) -> String {
    match pg_admin_url() {
        Some(admin) => {
            let name = format!("seldesk_t_{}", uuid::Uuid::now_v7().simple());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin)
                .await
                .expect("connect to SELDESK_TEST_PG");
            pool.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create test database");
            pool.close().await;
            let base = admin
                .rsplit_once('/')
                .map(|(b, _)| b.to_string())
                .unwrap_or(admin);
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
        jobs: seldesk::config::JobsConfig {
            workers: 0,
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
    let clock = TestClock::new(OffsetDateTime::now_utc());
    let app = Application::build(config, policy, Arc::new(clock.clone()))
        .await
        .expect("server starts");
    TestApp {
        base: format!("http://{}", app.web_addr()),
        admin: format!("http://{}", app.admin_addr()),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        clock,
        app: Some(app),
        database_url: url_for_app,
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
    for entry in std::fs::read_dir(policy_dir().join("versions")).expect("versions") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), dir.join("versions").join(entry.file_name())).expect("copy");
    }
    let path = dir.join("seldesk.toml");
    std::fs::write(&path, source.replacen(from, to, 1)).expect("write");
    path
}

impl TestApp {
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
    let out = std::process::Command::new(bin())
        .args(args)
        .env_remove("SELDESK_CONFIG")
        .output()
        .expect("run seldesk");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

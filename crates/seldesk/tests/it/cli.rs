use std::process::Command;
use std::time::Duration;

use seldesk_domain::Policy;

use crate::helpers::{bin, cli_run as run, edited_policy};

#[test]
fn version_and_help_on_every_subcommand() {
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert_eq!(out.trim(), format!("seldesk {}", env!("CARGO_PKG_VERSION")));
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for sub in ["serve", "migrate", "healthcheck", "policy", "jobs"] {
        assert!(out.contains(sub), "top-level help lists {sub}");
    }
    for args in [
        &["serve", "--help"][..],
        &["migrate", "--help"],
        &["healthcheck", "--help"],
        &["policy", "--help"],
        &["policy", "check", "--help"],
        &["policy", "render", "--help"],
        &["policy", "versions", "--help"],
        &["jobs", "status", "--help"],
        &["node", "list", "--help"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!(code, 0, "{args:?}: {err}");
        assert!(out.contains("Usage:"), "{args:?}");
    }
    let (_, out, _) = run(&["serve", "--help"]);
    for flag in
        ["--data", "--listen", "--admin-listen", "--database-url", "--config", "--policy", "--region", "--node-name"]
    {
        assert!(out.contains(flag), "serve takes {flag}");
    }
}

#[test]
fn policy_check_accepts_the_builtin_and_refuses_a_broken_file_naming_key_and_line() {
    let (code, out, err) = run(&["policy", "check"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("policy OK"));

    let dir = tempfile::tempdir().expect("tmp");
    let file = edited_policy(
        dir.path(),
        r#"fields = ["order.amount", "order.currency", "order.description", "order.reference", "customer.name", "customer.email"]"#,
        r#"fields = ["order.amount", "customer.phone"]"#,
    );
    let (code, _, err) = run(&["policy", "check", "--policy", file.to_str().expect("utf8")]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("providers.paypal.fields"), "names the key: {err}");
    assert!(err.contains("customer.phone"), "names the value: {err}");
    assert!(err.contains("line "), "names the line: {err}");

    let (code, _, err) = run(&["policy", "check", "--policy", "/no/such/policy.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn serve_refuses_a_broken_policy_before_starting() {
    let dir = tempfile::tempdir().expect("tmp");
    let file = edited_policy(dir.path(), r#"max_age = "12 months""#, r#"max_age = "2 years""#);
    let data = dir.path().join("data");
    let (code, _, err) = run(&[
        "serve",
        "--policy",
        file.to_str().expect("utf8"),
        "--data",
        data.to_str().expect("utf8"),
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("backups.max_age"), "{err}");
}

#[test]
fn policy_render_prints_the_same_text_as_the_page() {
    let (code, out, _) = run(&["policy", "render"]);
    assert_eq!(code, 0);
    let policy = Policy::builtin().expect("policy");
    let today = time::OffsetDateTime::now_utc().date();
    assert_eq!(out, policy.text_of(policy.current_version(today)));
    let (code, html, _) = run(&["policy", "render", "--format", "html"]);
    assert_eq!(code, 0);
    assert!(html.contains("<table>"));
    let (code, _, err) = run(&["policy", "render", "--effective", "1999-01-01"]);
    assert_eq!(code, 2);
    assert!(err.contains("no policy version took effect on 1999-01-01"), "{err}");
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let (code, _, err) = run(&["serve", "--listen", "not-an-address"]);
    assert_eq!(code, 2);
    assert!(err.contains("listen"), "{err}");

    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("seldesk.toml");
    std::fs::write(&file, "[jobs]\npoll_ms = 0\n").expect("write");
    let (code, _, err) = run(&["migrate", "--config", file.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(err.contains("jobs.poll_ms"), "{err}");

    let out = Command::new(bin())
        .args(["migrate", "--data", dir.path().to_str().expect("utf8")])
        .env("SELDESK_LOG_FORMAT", "xml")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log_format"));
}

#[test]
fn unreachable_postgres_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let (code, _, err) = run(&[
        "serve",
        "--data",
        dir.path().to_str().expect("utf8"),
        "--database-url",
        "postgres://seldesk:secret-pw@127.0.0.1:1/seldesk",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("cannot connect to the control-plane database"), "{err}");
    assert!(!err.contains("secret-pw"), "the password is not printed: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[tokio::test]
async fn serve_answers_healthcheck_and_stops_gracefully_on_sigterm() {
    let mut server = crate::helpers::ServerProcess::start(&[]).await;
    let addr = server.addr().to_string();

    let check = tokio::task::spawn_blocking({
        let addr = addr.clone();
        move || run(&["healthcheck", "--url", &format!("http://{addr}/healthz")])
    })
    .await
    .expect("join");
    assert_eq!(check.0, 0, "{check:?}");
    assert!(check.1.contains("healthy"));

    let body = reqwest::get(format!("http://{addr}/privacy")).await.expect("get").text().await.expect("text");
    assert!(body.contains("Last updated"));

    let status = server.terminate();
    assert!(status.success(), "exit 0 after SIGTERM: {status:?}");
    server.read_log(Duration::from_millis(500));
    let log = &server.log;
    assert!(log.iter().any(|l| l.contains("seldesk stopped")), "{log:?}");
    let (code, _, err) = run(&["healthcheck", "--url", &format!("http://{addr}/healthz")]);
    assert_ne!(code, 0, "nothing answers after the stop: {err}");
}

#[test]
fn migrate_and_jobs_status_work_on_a_fresh_folder() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let (code, out, err) = run(&["migrate", "--data", data.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("up to date"));
    assert!(data.join("control.db").is_file());
    let (code, out, err) = run(&["jobs", "status", "--data", data.to_str().expect("utf8")]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("queued 0"), "{out}");
    assert!(out.contains("schedule jobs-purge"), "{out}");
}

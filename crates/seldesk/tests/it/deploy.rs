//! The deployment files (deploy/Containerfile, deploy/seldesk.service) are
//! checked against the binary they run: images cannot be built here, but a
//! renamed flag or subcommand fails this test instead of a deployment.

use std::path::PathBuf;

use crate::helpers::cli_run;

fn deploy(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every `--flag` of `args` is one `seldesk <subcommand> --help` lists.
fn flags_exist(args: &[String]) {
    let sub: Vec<&str> = args.iter().take_while(|a| !a.starts_with('-')).map(String::as_str).collect();
    assert!(!sub.is_empty(), "a subcommand in {args:?}");
    let mut help_args = sub.clone();
    help_args.push("--help");
    let (code, help, err) = cli_run(&help_args);
    assert_eq!(code, 0, "`seldesk {}` exists: {err}", sub.join(" "));
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        let name = flag.split('=').next().unwrap_or(flag);
        assert!(help.contains(name), "`seldesk {}` takes {name}", sub.join(" "));
    }
}

/// A Containerfile instruction's JSON-array form, e.g. `CMD ["serve", ...]`.
fn json_args(line: &str, instruction: &str) -> Vec<String> {
    let rest = line.trim_start_matches(instruction).trim();
    serde_json::from_str(rest).unwrap_or_else(|e| panic!("{instruction} in exec form: {line}: {e}"))
}

#[test]
fn the_container_image_runs_seldesk_serve_with_flags_that_exist() {
    let file = deploy("Containerfile");
    // Continuation lines joined, comments left out.
    let joined = file.replace("\\\n", " ");
    let lines: Vec<&str> = joined.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let from: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(from.len() >= 2, "a build stage and a slim runtime stage");
    assert!(lines.iter().any(|l| l.starts_with("RUN ") && l.contains("cargo build --release")), "built from source");
    let user = lines.iter().rev().find(|l| l.starts_with("USER ")).expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "not root: {user}");
    let entry = json_args(lines.iter().find(|l| l.starts_with("ENTRYPOINT ")).expect("ENTRYPOINT"), "ENTRYPOINT");
    assert_eq!(entry, vec!["seldesk".to_string()]);
    let cmd = json_args(lines.iter().find(|l| l.starts_with("CMD ")).expect("CMD"), "CMD");
    assert_eq!(cmd[0], "serve");
    flags_exist(&cmd);
    let health = lines.iter().find(|l| l.starts_with("HEALTHCHECK ")).expect("a HEALTHCHECK");
    let health = json_args(&health[health.find("CMD").expect("CMD")..], "CMD");
    assert_eq!(health[0], "seldesk");
    flags_exist(&health[1..]);
    // What it listens on is what it exposes, and the data is a volume.
    let exposed: Vec<&str> =
        lines.iter().filter_map(|l| l.strip_prefix("EXPOSE ")).flat_map(|l| l.split(' ')).collect();
    for flag in ["--listen", "--admin-listen"] {
        let at = cmd.iter().position(|a| a == flag).unwrap_or_else(|| panic!("CMD sets {flag}"));
        let port = cmd[at + 1].rsplit(':').next().expect("port");
        assert!(exposed.contains(&port), "port {port} of {flag} is exposed");
    }
    let data = &cmd[cmd.iter().position(|a| a == "--data").expect("--data") + 1];
    assert!(lines.iter().any(|l| l.starts_with("VOLUME ") && l.contains(data.as_str())), "{data} is a volume");
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"), "stops gracefully");
}

#[test]
fn the_systemd_unit_runs_seldesk_serve_with_flags_that_exist_and_little_privilege() {
    let file = deploy("seldesk.service");
    let mut section = String::new();
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for line in file.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (k, v) = line.split_once('=').unwrap_or_else(|| panic!("key=value: {line}"));
        assert!(!section.is_empty(), "{line} is in a section");
        keys.push((section.clone(), k.to_string(), v.to_string()));
    }
    let get = |s: &str, k: &str| {
        keys.iter().find(|(a, b, _)| a == s && b == k).map(|(_, _, v)| v.clone()).unwrap_or_else(|| panic!("[{s}] {k}"))
    };
    for s in ["Unit", "Service", "Install"] {
        assert!(keys.iter().any(|(a, _, _)| a == s), "a [{s}] section");
    }
    let exec: Vec<String> = get("Service", "ExecStart").split_whitespace().map(str::to_string).collect();
    assert!(exec[0].ends_with("/seldesk"), "{exec:?}");
    assert_eq!(exec[1], "serve");
    flags_exist(&exec[1..]);
    let pre: Vec<String> = get("Service", "ExecStartPre").split_whitespace().skip(1).map(str::to_string).collect();
    flags_exist(&pre);
    let data = &exec[exec.iter().position(|a| a == "--data").expect("--data") + 1];
    assert!(get("Service", "ReadWritePaths").split_whitespace().any(|p| p == data), "it may write {data} only");
    assert_eq!(get("Service", "KillSignal"), "SIGTERM");
    assert_eq!(get("Service", "Restart"), "on-failure");
    assert_eq!(get("Service", "NoNewPrivileges"), "true");
    assert_eq!(get("Service", "ProtectSystem"), "strict");
    assert_ne!(get("Service", "User"), "root");
    assert_eq!(get("Install", "WantedBy"), "multi-user.target");
}

//! Webhook receivers of the tests' own: a Python process that verifies
//! every delivery with the Standard Webhooks reference library (PyPI
//! `standardwebhooks`), or a Node one with Svix's (npm `svix`), recording
//! each, as a product would.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde_json::Value;

use super::{cluster::free_port, process::OwnedProcess, repo_root};

fn python() -> PathBuf {
    let venv = std::env::var_os("IDSYNC_PY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache/idsync/venv")
        });
    venv.join("bin/python")
}

/// A receiver on a free port; answers its URL and the file it records to.
/// `secret` is a `whsec_` secret, or `@path`: a file of secrets, one per
/// line, read at each request (a product switching secrets mid-burst).
pub fn receiver(dir: &Path, secret: &str, mode: &str) -> (OwnedProcess, String, PathBuf) {
    receiver_on(dir, free_port(), secret, mode)
}

/// The same on `port`: a receiver started again after it was stopped gets
/// the same URL and records to the same file.
pub fn receiver_on(
    dir: &Path,
    port: u16,
    secret: &str,
    mode: &str,
) -> (OwnedProcess, String, PathBuf) {
    let script = repo_root().join("tests/clients/webhook_receiver.py");
    spawn(dir, &python(), &script, port, &[secret, mode])
}

/// The same, verifying with Svix's library (npm `svix`) instead.
pub fn svix_receiver(dir: &Path, secret: &str) -> (OwnedProcess, String, PathBuf) {
    let script = repo_root().join("tests/clients/webhook_receiver_svix.mjs");
    spawn(dir, Path::new("node"), &script, free_port(), &[secret])
}

fn spawn(
    dir: &Path,
    program: &Path,
    script: &Path,
    port: u16,
    rest: &[&str],
) -> (OwnedProcess, String, PathBuf) {
    let out = dir.join(format!("received-{port}.jsonl"));
    let mut args = vec![script.display().to_string(), port.to_string()];
    args.push(rest[0].to_string());
    args.push(out.display().to_string());
    args.extend(rest[1..].iter().map(|a| a.to_string()));
    let log = dir.join(format!(
        "receiver-{port}-{}.log",
        idsync::token::random_id().unwrap_or_default()
    ));
    let process = OwnedProcess::spawn("webhook receiver", program, args, &[], &log);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the receiver did not start: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (process, format!("http://127.0.0.1:{port}/hook"), out)
}

/// What the receiver recorded, once it holds `n` lines (or after 30 s).
pub async fn received(out: &Path, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let lines: Vec<Value> = std::fs::read_to_string(out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        if lines.len() >= n || Instant::now() > deadline {
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

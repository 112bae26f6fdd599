//! Resident memory of an idle `mft run`: starts the Telegram fake in-process, spawns the real
//! (release, under `cargo bench`) binary against it with default settings and a SQLite database
//! in a temp dir, lets it idle (polling) for 10 s, then prints VmRSS and VmHWM from
//! /proc/<pid>/status and stops it with SIGTERM. Target: <= 50 MB. Linux only.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::Stdio;
use std::time::Duration;

use support::telegram_fake::TelegramFake;

const TOKEN: &str = "123456:RSS-token";
const OPERATOR: i64 = 4242;
const IDLE: Duration = Duration::from_secs(10);

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let fake = TelegramFake::start(TOKEN).await;
        let dir = tempfile::tempdir().expect("temp dir");
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .to_string();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mft"))
            .arg("run")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .env(
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("data/mft.db").display()),
            )
            .env("TELEGRAM_BOT_TOKEN", TOKEN)
            .env("TELEGRAM_CHAT_ID", OPERATOR.to_string())
            .env("TELEGRAM_API_URL", fake.url())
            .env("STATUS_ADDR", &addr)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn mft run");
        let pid = child.id().expect("pid");
        let started = fake
            .wait_for(
                |c| {
                    c.iter().any(|c| {
                        c.method == "sendMessage"
                            && c.str("text").is_some_and(|t| t.contains("MFT-1 started"))
                    })
                },
                Duration::from_secs(30),
            )
            .await;
        assert!(started, "mft run did not start");
        // One status page hit, so its code paths are resident too.
        let _ = reqwest::get(format!("http://{addr}/healthz")).await;
        let _ = reqwest::get(format!("http://{addr}/")).await;
        tokio::time::sleep(IDLE).await;
        let rss = status_kb(pid, "VmRSS:");
        let hwm = status_kb(pid, "VmHWM:");
        let polls = fake.calls("getUpdates").len();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
        let exit = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
        match (rss, hwm) {
            (Some(rss), Some(hwm)) => println!(
                "idle mft run after {} s ({polls} getUpdates): VmRSS {:.1} MB, VmHWM {:.1} MB (target <= 50 MB); exit {:?}",
                IDLE.as_secs(),
                rss as f64 / 1024.0,
                hwm as f64 / 1024.0,
                exit.ok().and_then(|e| e.ok()).and_then(|s| s.code())
            ),
            _ => println!("idle mft run: /proc/{pid}/status unreadable (Linux only)"),
        }
    });
}

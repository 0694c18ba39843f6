//! The real `switchboard` binary: start-up errors, and the embedded database's whole life
//! (created, reused, stopped with the server, never left behind).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::free_port;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// A temporary directory that the `postgres` user can traverse (the embedded cluster runs as that
/// user when the tests run as root), with a stand-in for the built site.
fn workspace() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let site = dir.path().join("site");
    fs::create_dir_all(site.join("pkg")).unwrap();
    fs::write(site.join("pkg/switchboard.css"), "").unwrap();
    (dir, site)
}

fn switchboard(site: &Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SWITCHBOARD_SITE_ROOT", site)
        .env("RUST_LOG", "info")
        .current_dir(site.parent().unwrap());
    command
}

fn output_text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn run_to_end(mut command: Command) -> Output {
    command.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn a_malformed_database_url_stops_start_up_naming_the_setting() {
    let (_dir, site) = workspace();
    let mut command = switchboard(&site);
    command.env("DATABASE_URL", "mysql://root@localhost/nope");
    let output = run_to_end(command);
    let text = output_text(&output);
    assert!(!output.status.success());
    assert!(
        text.contains("DATABASE_URL is not a valid PostgreSQL URL"),
        "{text}"
    );
}

#[test]
fn an_unreachable_database_stops_start_up_naming_the_setting_and_the_cause() {
    let (_dir, site) = workspace();
    let port = free_port();
    let mut command = switchboard(&site);
    command.env(
        "DATABASE_URL",
        format!("postgres://switchboard@127.0.0.1:{port}/switchboard"),
    );
    let output = run_to_end(command);
    let text = output_text(&output);
    assert!(!output.status.success());
    assert!(text.contains("DATABASE_URL"), "{text}");
    assert!(
        text.contains(&format!("127.0.0.1:{port}/switchboard")),
        "{text}"
    );
    assert!(
        text.to_lowercase().contains("connection refused"),
        "the cause is given: {text}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let (_dir, site) = workspace();
    let mut command = switchboard(&site);
    command
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .env("DATABASE_URL", "mysql://nope");
    let output = run_to_end(command);
    assert!(!output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().expect("the error is logged");
    let record: serde_json::Value = serde_json::from_str(line).expect("a JSON object");
    assert_eq!(record["level"], "ERROR");
    assert!(
        record["message"].as_str().unwrap().contains("DATABASE_URL"),
        "{record}"
    );
}

#[test]
fn a_missing_site_stops_start_up_with_the_fix() {
    let (_dir, site) = workspace();
    let mut command = switchboard(&site);
    command.env("SWITCHBOARD_SITE_ROOT", site.join("absent"));
    let output = run_to_end(command);
    let text = output_text(&output);
    assert!(!output.status.success());
    assert!(text.contains("SWITCHBOARD_SITE_ROOT"), "{text}");
}

#[test]
fn local_mode_on_a_public_address_stops_start_up_with_the_fix() {
    let (_dir, site) = workspace();
    let mut command = switchboard(&site);
    command.env("SWITCHBOARD_LISTEN", "0.0.0.0:0");
    let output = run_to_end(command);
    let text = output_text(&output);
    assert!(!output.status.success());
    assert!(text.contains("no sign-in provider is configured"), "{text}");
    assert!(
        text.contains("SWITCHBOARD_AUTH_PROVIDERS"),
        "the fix is named: {text}"
    );
}

struct Running {
    child: Child,
    port: u16,
}

impl Running {
    fn start(site: &Path, data: &Path) -> Self {
        let port = free_port();
        let child = switchboard(site)
            .env("SWITCHBOARD_DATA_DIR", data)
            .env("SWITCHBOARD_LISTEN", format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Self { child, port }
    }

    /// Polls `/readyz` until it answers 200 and returns its JSON.
    fn wait_ready(&mut self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        let url = format!("http://127.0.0.1:{}/readyz", self.port);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("switchboard exited early with {status}");
            }
            if let Ok(response) = reqwest::blocking::get(&url)
                && response.status() == 200
            {
                return response.json().unwrap();
            }
            assert!(Instant::now() < deadline, "not ready within 90 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: a plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
    }

    fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "switchboard did not exit within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn postmaster_pid(data: &Path) -> Option<libc::pid_t> {
    let text = fs::read_to_string(data.join("postgres/postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

fn process_alive(pid: libc::pid_t) -> bool {
    // Not a zombie of ours: PostgreSQL is reaped by the server, or by init once the server is gone.
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    !stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .trim_start()
        .starts_with('Z')
}

fn wait_gone(pid: libc::pid_t) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "PostgreSQL (pid {pid}) still running 30 s after the server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_nothing_configured_the_embedded_database_is_created_reused_and_stopped() {
    let (dir, site) = workspace();
    let data = dir.path().join("data");

    // First run: creates the cluster, migrates, serves.
    let mut first = Running::start(&site, &data);
    let ready = first.wait_ready();
    assert_eq!(ready["status"], "ready");
    let instance = ready["instance_id"].clone();
    assert!(instance.is_string());
    let pid = postmaster_pid(&data).expect("the cluster is running");
    assert!(process_alive(pid));

    // SIGTERM: the server shuts down cleanly and takes PostgreSQL with it.
    first.signal(libc::SIGTERM);
    assert!(first.wait_exit().success());
    wait_gone(pid);

    // Second run: the same cluster (same instance id), not a new one.
    let mut second = Running::start(&site, &data);
    assert_eq!(second.wait_ready()["instance_id"], instance);
    let pid = postmaster_pid(&data).unwrap();

    // Even a server killed outright leaves no PostgreSQL behind.
    second.signal(libc::SIGKILL);
    second.wait_exit();
    wait_gone(pid);

    // And the cluster starts again after that crash.
    let mut third = Running::start(&site, &data);
    assert_eq!(third.wait_ready()["instance_id"], instance);
    third.signal(libc::SIGTERM);
    assert!(third.wait_exit().success());
}

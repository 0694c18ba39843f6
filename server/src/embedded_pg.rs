//! The embedded database: with no `DATABASE_URL`, Switchboard runs its own PostgreSQL cluster from
//! the system's PostgreSQL binaries, in a data directory of its own. It is created on first run,
//! reused after, and started and stopped with the server.
//!
//! The cluster listens on a Unix socket inside its data directory (no TCP port at all) unless that
//! path is too long for a socket, in which case it listens on a free loopback port. Either way a
//! generated password is required (kept in `<data>/postgres.password`, mode 0600).
//!
//! PostgreSQL refuses to run as root. When Switchboard runs as root it runs the cluster as the
//! `postgres` system user (created by Debian's package) and says so clearly when there is none.

use std::ffi::CString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::ConnectOptions;
use sqlx::postgres::PgConnectOptions;

/// The superuser and database that Switchboard creates in its own cluster.
const USER: &str = "switchboard";
const DATABASE: &str = "switchboard";
/// Longest socket directory that still fits `/.s.PGSQL.NNNNN` into `sun_path` (108 bytes).
const MAX_SOCKET_DIR_LEN: usize = 90;
const START_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum EmbeddedPgError {
    #[error(
        "PostgreSQL's server programs (initdb, postgres) were not found. Install them (`apt-get install postgresql`, which scripts/setup does), set SWITCHBOARD_POSTGRES_BIN_DIR to their directory, or set DATABASE_URL to use an existing PostgreSQL server."
    )]
    BinariesNotFound,
    #[error(
        "Switchboard runs as root, and PostgreSQL refuses to run as root; there is no `postgres` system user to run the embedded database as. Run Switchboard as an ordinary user, create the user (`apt-get install postgresql` does), or set DATABASE_URL."
    )]
    RootWithoutPostgresUser,
    #[error(
        "the embedded database's directory {path} cannot be reached by the `postgres` user, which runs it because Switchboard runs as root ({ancestor} is closed to other users). Set SWITCHBOARD_DATA_DIR to a directory outside it (for example /var/lib/switchboard), or set DATABASE_URL."
    )]
    Inaccessible { path: String, ancestor: String },
    #[error("embedded database: cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(
        "embedded database: {program} failed ({status}). Its output is in {log}; the last lines:\n{tail}"
    )]
    ProgramFailed {
        program: &'static str,
        status: String,
        log: String,
        tail: String,
    },
    #[error(
        "embedded database did not accept connections within {0:?}. See {1} (is another Switchboard using the same SWITCHBOARD_DATA_DIR?)"
    )]
    Timeout(Duration, String),
    #[error("embedded database: {0}")]
    Sql(#[from] sqlx::Error),
}

/// A running embedded cluster. Call [`EmbeddedPostgres::stop`] to shut it down cleanly; dropping it
/// stops it too, and if the whole server dies the kernel tells PostgreSQL to shut down
/// (`PR_SET_PDEATHSIG`), so no cluster is left running behind a crashed server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    child: Option<Child>,
    options: PgConnectOptions,
    data_dir: PathBuf,
}

impl EmbeddedPostgres {
    /// Starts the cluster in `dir`, creating it on first use.
    pub async fn start(dir: &Path, bin_dir: Option<&Path>) -> Result<Self, EmbeddedPgError> {
        let bin = find_binaries(bin_dir)?;
        let run_as = RunAs::current()?;

        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        mkdir(parent)?;
        let parent = fs::canonicalize(parent).map_err(io_err("resolve", parent))?;
        let name = dir.file_name().unwrap_or("postgres".as_ref());
        let data_dir = parent.join(name);
        let password_file = parent.join(format!("{}.password", name.to_string_lossy()));
        let log_file = parent.join(format!("{}.log", name.to_string_lossy()));
        run_as.check_reachable(&parent)?;

        let password = read_or_create_password(&password_file, &run_as)?;
        if !data_dir.join("PG_VERSION").is_file() {
            init_cluster(&bin, &data_dir, &password_file, &log_file, &run_as).await?;
        }

        let socket_dir = data_dir.clone();
        let (listen, port) = if socket_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
            (None, 5432)
        } else {
            (Some("127.0.0.1"), free_port()?)
        };
        let log = open_log(&log_file)?;
        let mut command = Command::new(bin.join("postgres"));
        command
            .arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(format!("listen_addresses={}", listen.unwrap_or("")))
            .arg("-c")
            .arg("unix_socket_permissions=0700")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io_err("open", &log_file))?)
            .stderr(log)
            .current_dir("/");
        run_as.apply(&mut command);
        // SAFETY: prctl is async-signal-safe, and the closure touches nothing but its arguments.
        // It runs after the uid change (which would otherwise clear the setting).
        unsafe {
            command.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(io_err("start", &bin.join("postgres")))?;
        tracing::info!(data_dir = %data_dir.display(), socket = listen.is_none(), port, "started embedded PostgreSQL");

        let socket_dir_str = socket_dir.to_string_lossy();
        let base = PgConnectOptions::new()
            .username(USER)
            .password(&password)
            .port(port)
            .host(match listen {
                Some(addr) => addr,
                None => &socket_dir_str,
            });
        let mut this = Self {
            child: Some(child),
            options: base.clone().database("postgres"),
            data_dir,
        };
        this.wait_until_ready(&log_file).await?;
        this.ensure_database().await?;
        this.options = base.database(DATABASE);
        Ok(this)
    }

    /// How to connect to the cluster's `switchboard` database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The process id of the PostgreSQL server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Shuts the cluster down (PostgreSQL's "fast" shutdown) and waits for it to exit.
    pub async fn stop(mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGINT);
            let deadline = Instant::now() + STOP_TIMEOUT;
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        tracing::warn!("embedded PostgreSQL did not stop in time; killing it");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            tracing::info!("stopped embedded PostgreSQL");
        }
    }

    async fn wait_until_ready(&mut self, log_file: &Path) -> Result<(), EmbeddedPgError> {
        let started = Instant::now();
        loop {
            match self.options.connect().await {
                Ok(conn) => {
                    let _ = sqlx::Connection::close(conn).await;
                    return Ok(());
                }
                Err(err) => {
                    if let Some(child) = self.child.as_mut()
                        && let Ok(Some(status)) = child.try_wait()
                    {
                        self.child = None;
                        return Err(program_failed("postgres", status.to_string(), log_file));
                    }
                    if started.elapsed() > START_TIMEOUT {
                        return Err(EmbeddedPgError::Timeout(
                            START_TIMEOUT,
                            log_file.display().to_string(),
                        ));
                    }
                    tracing::debug!(%err, "waiting for embedded PostgreSQL");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn ensure_database(&self) -> Result<(), EmbeddedPgError> {
        let mut conn = self.options.connect().await?;
        // Catalogue queries on the maintenance database: not part of the app's schema, so not
        // compile-checked.
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            sqlx::query(&format!("CREATE DATABASE {DATABASE} ENCODING 'UTF8'"))
                .execute(&mut conn)
                .await?;
        }
        sqlx::Connection::close(conn).await?;
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGINT);
            let _ = child.wait();
        }
    }
}

fn signal(child: &Child, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: plain syscall on our own child's pid, which we have not yet reaped.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Who runs PostgreSQL: ourselves, or the `postgres` user when we are root.
#[derive(Debug)]
struct RunAs {
    /// `Some((uid, gid))` when we must switch user.
    switch_to: Option<(u32, u32)>,
}

impl RunAs {
    fn current() -> Result<Self, EmbeddedPgError> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Ok(Self { switch_to: None });
        }
        let name = CString::new("postgres").expect("no NUL in a literal");
        // SAFETY: getpwnam returns null or a pointer to static storage that we read at once.
        let entry = unsafe { libc::getpwnam(name.as_ptr()) };
        if entry.is_null() {
            return Err(EmbeddedPgError::RootWithoutPostgresUser);
        }
        // SAFETY: checked non-null above.
        let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
        Ok(Self {
            switch_to: Some((uid, gid)),
        })
    }

    fn apply(&self, command: &mut Command) {
        if let Some((uid, gid)) = self.switch_to {
            command.uid(uid).gid(gid).env("HOME", "/");
        }
    }

    fn chown(&self, path: &Path) -> Result<(), EmbeddedPgError> {
        if let Some((uid, gid)) = self.switch_to {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .map_err(io_err("change the owner of", path))?;
        }
        Ok(())
    }

    /// When switching user, every directory above the data directory must let that user through.
    fn check_reachable(&self, dir: &Path) -> Result<(), EmbeddedPgError> {
        let Some((uid, gid)) = self.switch_to else {
            return Ok(());
        };
        for ancestor in dir.ancestors() {
            let meta = fs::metadata(ancestor).map_err(io_err("inspect", ancestor))?;
            let mode = meta.permissions().mode();
            let passable = if meta.uid() == uid {
                mode & 0o100 != 0
            } else if meta.gid() == gid {
                mode & 0o010 != 0
            } else {
                mode & 0o001 != 0
            };
            if !passable {
                return Err(EmbeddedPgError::Inaccessible {
                    path: dir.display().to_string(),
                    ancestor: ancestor.display().to_string(),
                });
            }
        }
        Ok(())
    }
}

fn find_binaries(explicit: Option<&Path>) -> Result<PathBuf, EmbeddedPgError> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = explicit {
        return if has_both(dir) {
            Ok(dir.to_owned())
        } else {
            Err(EmbeddedPgError::BinariesNotFound)
        };
    }
    // Debian and Ubuntu keep the server programs out of PATH, one directory per major version.
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, bin)| has_both(bin))
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .find(|dir| has_both(dir))
        .ok_or(EmbeddedPgError::BinariesNotFound)
}

async fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    password_file: &Path,
    log_file: &Path,
    run_as: &RunAs,
) -> Result<(), EmbeddedPgError> {
    tracing::info!(data_dir = %data_dir.display(), "creating the embedded PostgreSQL cluster (first run)");
    mkdir(data_dir)?;
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700))
        .map_err(io_err("protect", data_dir))?;
    run_as.chown(data_dir)?;
    let log = open_log(log_file)?;
    let mut command = Command::new(bin.join("initdb"));
    command
        .arg("-D")
        .arg(data_dir)
        .args([
            "--username",
            USER,
            "--auth",
            "scram-sha-256",
            "--encoding",
            "UTF8",
            "--locale",
            "C",
        ])
        .arg(format!("--pwfile={}", password_file.display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io_err("open", log_file))?)
        .stderr(log)
        .current_dir("/");
    run_as.apply(&mut command);
    let status = tokio::task::spawn_blocking(move || command.status())
        .await
        .map_err(|e| io_err("run", &bin.join("initdb"))(io::Error::other(e)))?
        .map_err(io_err("run", &bin.join("initdb")))?;
    if !status.success() {
        return Err(program_failed("initdb", status.to_string(), log_file));
    }
    Ok(())
}

fn read_or_create_password(path: &Path, run_as: &RunAs) -> Result<String, EmbeddedPgError> {
    match fs::read_to_string(path) {
        Ok(password) if !password.trim().is_empty() => return Ok(password.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err("read", path)(e)),
    }
    let password = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err("create", path))?;
    file.write_all(password.as_bytes())
        .map_err(io_err("write", path))?;
    // initdb, running as the cluster's user, reads it once; we (root or that same user) read it after.
    run_as.chown(path)?;
    Ok(password)
}

fn open_log(path: &Path) -> Result<fs::File, EmbeddedPgError> {
    fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err("open", path))
}

fn mkdir(path: &Path) -> Result<(), EmbeddedPgError> {
    fs::create_dir_all(path).map_err(io_err("create", path))
}

fn free_port() -> Result<u16, EmbeddedPgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(io_err("find a free port on", Path::new("127.0.0.1")))?;
    let port = listener
        .local_addr()
        .map_err(io_err("find a free port on", Path::new("127.0.0.1")))?
        .port();
    Ok(port)
}

fn program_failed(program: &'static str, status: String, log_file: &Path) -> EmbeddedPgError {
    let text = fs::read_to_string(log_file).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(12)..].join("\n");
    EmbeddedPgError::ProgramFailed {
        program,
        status,
        log: log_file.display().to_string(),
        tail,
    }
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EmbeddedPgError {
    let path = path.display().to_string();
    move |source| EmbeddedPgError::Io {
        action,
        path,
        source,
    }
}

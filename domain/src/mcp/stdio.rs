//! Starting a stdio tool server: it gets only what it is given (PATH, LANG, a HOME of its own and
//! its configured variables; never Switchboard's secrets), runs in a private working directory of
//! its own (never Switchboard's, next to its data and key), in a process group killed with the
//! connection, and a line it writes longer than the message cap ends the connection.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use rmcp::RoleClient;
use rmcp::service::{RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::transport::Transport;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::process::{ChildStdin, ChildStdout};
use uuid::Uuid;

/// Where stdio servers' working directories go unless configured: the system's temporary
/// directory's `switchboard-mcp/`.
pub fn default_work_dir() -> PathBuf {
    std::env::temp_dir().join("switchboard-mcp")
}

/// The working directory (and home) of one person's process of one server, `<base>/<server>/<user>`:
/// two people's processes do not share files. Created private (0700); `base` must be Switchboard's
/// own, not a link (in a shared temporary directory another user could have made it first).
pub fn work_dir(base: &Path, server_id: &str, user_id: Uuid) -> Result<PathBuf, String> {
    let failed = |e: std::io::Error| {
        format!(
            "Cannot make a working directory for the server under {} ({e}). Set SWITCHBOARD_MCP_WORK_DIR to a directory Switchboard may write.",
            base.display()
        )
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(base)
        .map_err(failed)?;
    let meta = std::fs::symlink_metadata(base).map_err(failed)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != me {
        return Err(format!(
            "The tool servers' work directory {} is not a directory of Switchboard's own (another user's, or a link). Set SWITCHBOARD_MCP_WORK_DIR to a private directory.",
            base.display()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(format!(
            "The tool servers' work directory {} is open to other users (mode {:o}): make it private (chmod 700) or set SWITCHBOARD_MCP_WORK_DIR to another directory.",
            base.display(),
            meta.mode() & 0o777
        ));
    }
    let dir = base.join(server_id).join(user_id.to_string());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(failed)?;
    Ok(dir)
}

/// A stdio server to start.
pub struct Launch<'a> {
    pub command: &'a str,
    pub args: &'a [String],
    pub env: &'a BTreeMap<String, String>,
    pub secret_env: &'a BTreeMap<String, String>,
    pub dir: &'a Path,
}

/// The variables a server starts with before its own: Switchboard's PATH (to find programs),
/// its LANG (or C.UTF-8), and its own directory as HOME.
fn base_env(dir: &Path) -> Vec<(OsString, OsString)> {
    vec![
        (
            "PATH".into(),
            std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
        ),
        (
            "LANG".into(),
            std::env::var_os("LANG").unwrap_or_else(|| "C.UTF-8".into()),
        ),
        ("HOME".into(), dir.into()),
    ]
}

/// Starts the server; a line on its stdout longer than `max_message` bytes ends the connection,
/// after `oversized` is told why.
pub fn spawn(
    launch: Launch<'_>,
    max_message: usize,
    oversized: impl Fn(String) + Send + Sync + 'static,
) -> Result<StdioTransport, String> {
    let mut command = CommandWrap::with_new(launch.command, |c| {
        c.env_clear()
            .envs(base_env(launch.dir))
            .envs(launch.env)
            .envs(launch.secret_env)
            .args(launch.args)
            .current_dir(launch.dir)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
    });
    command.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let mut child = command
        .spawn()
        .map_err(|e| format!("Cannot start '{}': {e}.", launch.command))?;
    let (Some(stdout), Some(stdin)) = (child.stdout().take(), child.stdin().take()) else {
        return Err(format!("Cannot talk to '{}': no pipes.", launch.command));
    };
    let stdout = CappedLines {
        inner: stdout,
        max: max_message,
        line: 0,
        oversized: Arc::new(oversized),
    };
    Ok(StdioTransport {
        child: Some(child),
        // rmcp's own cap drops a longer line and goes on; ours ends the connection first.
        io: AsyncRwTransport::new(stdout, stdin)
            .with_max_line_length(max_message.saturating_add(2)),
    })
}

/// A server's stdout that fails once a line grows past `max` bytes (rather than buffering it).
struct CappedLines {
    inner: ChildStdout,
    max: usize,
    /// Bytes of the current line so far.
    line: usize,
    oversized: Arc<dyn Fn(String) + Send + Sync>,
}

impl AsyncRead for CappedLines {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            let new = &buf.filled()[before..];
            self.line = match new.iter().rposition(|b| *b == b'\n') {
                Some(at) => new.len() - at - 1,
                None => self.line + new.len(),
            };
            if self.line > self.max {
                let why = format!(
                    "The server sent a message larger than {}, more than Switchboard takes; the connection was closed.",
                    super::limits::size(self.max)
                );
                (self.oversized)(why.clone());
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    why,
                )));
            }
        }
        polled
    }
}

/// rmcp's line transport over a server's pipes, which owns the process: closing shuts it down
/// as MCP says (stdin closed, then SIGTERM, then SIGKILL), dropping kills its process group.
pub struct StdioTransport {
    child: Option<Box<dyn ChildWrapper>>,
    io: AsyncRwTransport<RoleClient, CappedLines, ChildStdin>,
}

/// How long a server gets after its stdin closes, and again after SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(3);

impl Transport<RoleClient> for StdioTransport {
    type Error = std::io::Error;

    fn send(
        &mut self,
        item: TxJsonRpcMessage<RoleClient>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        self.io.send(item)
    }

    fn receive(&mut self) -> impl Future<Output = Option<RxJsonRpcMessage<RoleClient>>> + Send {
        self.io.receive()
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        self.io.close().await?;
        if tokio::time::timeout(EXIT_WITHIN, child.wait())
            .await
            .is_err()
        {
            let _ = child.signal(libc::SIGTERM);
            if tokio::time::timeout(EXIT_WITHIN, child.wait())
                .await
                .is_err()
            {
                Box::into_pin(child.kill()).await?;
            }
        }
        self.child = None;
        Ok(())
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        // Killed and waited for, so no zombie is left.
        if let Some(mut child) = self.child.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                let _ = Box::into_pin(child.kill()).await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn each_server_and_person_gets_a_private_directory_in_a_private_base() {
        let root = std::env::temp_dir().join(format!("switchboard-test-{}", Uuid::new_v4()));
        let base = root.join("mcp");
        let user = Uuid::new_v4();
        let dir = work_dir(&base, "files", user).unwrap();
        assert_eq!(dir, base.join("files").join(user.to_string()));
        for made in [&base, &dir] {
            let mode = std::fs::metadata(made).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", made.display());
        }

        // A base others can enter, or a link (someone else's, in a shared /tmp), is refused.
        let open = root.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
        let error = work_dir(&open, "files", user).unwrap_err();
        assert!(error.contains("open to other users"), "{error}");
        let link = root.join("link");
        std::os::unix::fs::symlink(&base, &link).unwrap();
        let error = work_dir(&link, "files", user).unwrap_err();
        assert!(error.contains("SWITCHBOARD_MCP_WORK_DIR"), "{error}");
        std::fs::remove_dir_all(root).unwrap();
    }
}

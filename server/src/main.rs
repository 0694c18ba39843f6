use std::process::ExitCode;

use server::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    // Not dumpable: a tool server started by this process, running as the same user, can neither
    // read its memory or environment (/proc/<pid>/environ: DATABASE_URL, the secret key, API
    // keys) nor attach a debugger to it. Children are dumpable again after their exec.
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(PR_SET_DUMPABLE) only changes a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    let config = Config::load();
    if let Err(error) = server::telemetry::init(config.log_format, &config.log_filter) {
        eprintln!("switchboard: {error}");
        return ExitCode::FAILURE;
    }
    match server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("Switchboard could not start: {error}");
            ExitCode::FAILURE
        }
    }
}

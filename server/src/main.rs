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
    let telemetry = match server::telemetry::init(
        config.log_format,
        &config.log_filter,
        config.otlp_endpoint.as_deref(),
    ) {
        Ok(telemetry) => telemetry,
        Err(error) => {
            eprintln!("switchboard: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = match server::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("Switchboard could not start: {error}");
            ExitCode::FAILURE
        }
    };
    // The last traces go out before the process ends (the exporter's own thread, so off the
    // runtime's).
    tokio::task::spawn_blocking(move || telemetry.shutdown())
        .await
        .ok();
    code
}

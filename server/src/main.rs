use std::process::ExitCode;

use server::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
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

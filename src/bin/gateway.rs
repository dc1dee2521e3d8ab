//! `herald-gateway`: the HTTP service.

use std::process::ExitCode;

use herald::config::GatewayConfig;
use herald::startup::{Application, shutdown_signal};

/// mimalloc: measured side by side with the system allocator by `bench/run.py`
/// (see the README's Performance section); the gateway allocates per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    let config = match herald::secrets::load_config(GatewayConfig::from_lookup).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = herald::telemetry::init(&config.log, false) {
        eprintln!("herald-gateway: {}", herald::telemetry::chain(&e));
        return ExitCode::FAILURE;
    }
    let result = async {
        Application::build(&config)
            .await?
            .run_until_stopped(shutdown_signal())
            .await
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let e = herald::telemetry::chain(&e);
            tracing::error!(error.message = %e, "herald-gateway stopped");
            eprintln!("herald-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

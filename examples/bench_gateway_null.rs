//! Bench-only: the real gateway (router, auth, validation, envelope, access log)
//! over a publisher that accepts everything at once. Measures the gateway's own
//! cost without SNS, to split the total between Herald's code and the SDK call.
//! `cargo run --release --example bench_gateway_null` (same environment as the gateway).

use std::sync::Arc;

use herald::config::GatewayConfig;
use herald::contract::Envelope;
use herald::publisher::{BoxFuture, HealthCheck, PublishError, PublishReceipt, Publisher};
use herald::startup::{Application, shutdown_signal};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct NullPublisher;

impl Publisher for NullPublisher {
    fn publish<'a>(
        &'a self,
        envelope: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        // Serialise as the real publishers do, so that cost stays in the measurement.
        let json = envelope.to_json();
        Box::pin(async move {
            std::hint::black_box(json);
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async {
            HealthCheck {
                name: "null",
                healthy: true,
                detail: serde_json::Value::Null,
            }
        })
    }
}

#[tokio::main]
async fn main() {
    let config = GatewayConfig::from_env().expect("configuration");
    herald::telemetry::init(&config.log, false).expect("telemetry");
    let app = Application::with_publisher(&config, Arc::new(NullPublisher))
        .await
        .expect("bind");
    app.run_until_stopped(shutdown_signal())
        .await
        .expect("serve");
}

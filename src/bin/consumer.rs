//! `herald-consumer`: delivers envelopes to WhatsApp. Under AWS Lambda when
//! `AWS_LAMBDA_RUNTIME_API` is set; otherwise an SQS long-poller on `SQS_QUEUE_URL`.

use std::process::ExitCode;
use std::sync::Arc;

use herald::config::ConsumerConfig;
use herald::consumer::lambda::{self, LambdaConsumer};
use herald::consumer::sqs_poller::SqsPoller;
use herald::delivery::Pipeline;
use herald::publisher::Publisher;
use herald::status::dynamodb::DynamoStatusStore;
use lambda_runtime::{LambdaEvent, service_fn};
use serde_json::Value;

/// mimalloc: measured side by side with the system allocator by `bench/run.py`
/// (see the README's Performance section); the gateway allocates per request.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    dotenvy::dotenv().ok();
    let config = match herald::secrets::load_config(ConsumerConfig::from_lookup).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("herald-consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let under_lambda = std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some();
    if let Err(e) = herald::telemetry::init(&config.log, under_lambda) {
        eprintln!("herald-consumer: {}", herald::telemetry::chain(&e));
        return ExitCode::FAILURE;
    }
    let mut pipeline = match Pipeline::from_config(&config.delivery) {
        Ok(p) => p.with_tenants(config.tenants.clone()),
        Err(e) => {
            tracing::error!(error.message = %e, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Some(bucket) = &config.media_bucket {
        // Sends by mediaId read their files here; nothing is spooled.
        let store = herald::media::s3::S3MediaStore::from_env(
            bucket,
            config.aws_timeouts,
            &std::env::temp_dir(),
        )
        .await;
        pipeline = pipeline.with_media(Arc::new(store));
    }
    // Statuses (`submitted` with the provider's id, `failed`) and their
    // events, when a table is configured.
    let statuses = match status_store(&config).await {
        Ok(statuses) => statuses,
        Err(e) => {
            eprintln!("herald-consumer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fleet = statuses.as_ref().map(|(store, _)| store.fleet_table());
    let pipeline = Arc::new(match statuses {
        Some((store, Some(topic))) => pipeline
            .with_statuses(Arc::new(store.with_failover(topic.clone())))
            .with_status_outbox(topic),
        Some((store, None)) => pipeline.with_statuses(Arc::new(store)),
        None => {
            tracing::info!("no STATUS_TABLE: delivery statuses are not recorded");
            pipeline
        }
    });
    match fleet {
        Some(table) => {
            herald::fleet::share_limits(&pipeline, &table);
            tracing::info!(
                "rate, pair rate and circuits are shared with the other consumers through STATUS_TABLE"
            );
        }
        None => tracing::warn!(
            "no STATUS_TABLE: WHATSAPP_MAX_MPS, SMS_MAX_MPS, WHATSAPP_PAIR_RATE and the circuits hold per consumer process, not for the fleet"
        ),
    }
    if config.delivery.console_by_default {
        tracing::warn!(
            "no WhatsApp credentials: delivering to the console (stdout); set WHATSAPP_ACCESS_TOKEN and WHATSAPP_PHONE_NUMBER_ID to send"
        );
    }

    if under_lambda {
        herald::metrics::enable_emf();
        tracing::info!(
            mode = "lambda",
            delivery = %pipeline.describe(),
            "herald-consumer starting"
        );
        let consumer = Arc::new(LambdaConsumer::new(pipeline));
        let handler = service_fn(move |event: LambdaEvent<Value>| {
            let consumer = consumer.clone();
            async move { lambda::handle_event(event, &consumer).await }
        });
        return match lambda_runtime::run(handler).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error.message = %e, "Lambda runtime stopped");
                ExitCode::FAILURE
            }
        };
    }

    let Some(queue_url) = config.sqs_queue_url.clone() else {
        eprintln!(
            "herald-consumer: SQS_QUEUE_URL is not set: set it to poll a queue (or run under AWS Lambda)"
        );
        return ExitCode::FAILURE;
    };
    tracing::info!(
        mode = "sqs-poller",
        delivery = %pipeline.describe(),
        "herald-consumer starting"
    );
    if let Some(port) = config.metrics_port {
        let host = config.metrics_host;
        tokio::spawn(async move {
            if let Err(e) = herald::consumer::metrics_server::serve(host, port).await {
                tracing::error!(port, error.message = %e, "cannot serve /metrics on METRICS_PORT");
            }
        });
    }
    let aws = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    let sqs = aws_sdk_sqs::Client::new(&aws);
    if let Err(e) = herald::preflight::check_queue(&sqs, &queue_url).await {
        eprintln!("herald-consumer: {e}");
        return ExitCode::FAILURE;
    }
    let poller = SqsPoller::new(sqs, &queue_url, pipeline).await;
    poller
        .run_until_stopped(herald::startup::shutdown_signal())
        .await;
    ExitCode::SUCCESS
}

/// The DynamoDB status store, when `STATUS_TABLE` is set, and the gateway's
/// topic (`SNS_TOPIC_ARN`) when that is set too: a provider's "cannot reach"
/// report merged by the consumer's write sends the SMS leg there, and a
/// status the store would not take travels through it again.
async fn status_store(
    config: &ConsumerConfig,
) -> Result<Option<(DynamoStatusStore, Option<Arc<dyn Publisher>>)>, String> {
    let store = DynamoStatusStore::from_config(&config.status, config.aws_timeouts)
        .await
        .map_err(|e| e.to_string())?;
    let Some(store) = store else {
        return Ok(None);
    };
    let Some(arn) = &config.sns_topic_arn else {
        tracing::warn!(
            "STATUS_TABLE without SNS_TOPIC_ARN: a cannot-reach report that comes before the send is recorded cannot send the message's fallback from here, and a status the table does not take after its retries is lost"
        );
        return Ok(Some((store, None)));
    };
    let topic = herald::publisher::sns::SnsPublisher::from_env(
        arn,
        std::time::Duration::from_millis(1),
        false,
        config.aws_timeouts,
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(Some((store, Some(Arc::new(topic)))))
}

//! How envelopes reach the delivery pipeline in `herald-consumer`: as AWS Lambda
//! events (SNS or SQS), or by long-polling an SQS queue. Each way maps the
//! pipeline's [`Decision`](crate::delivery::Decision) to its own acknowledgement.

pub mod dead_letter;
pub mod lambda;
pub mod metrics_server;
pub mod sqs;
pub mod sqs_deletes;
pub mod sqs_poller;

//! How envelopes reach the delivery pipeline in `herald-consumer`: as AWS Lambda
//! events (SNS or SQS), or by long-polling an SQS queue. Each way maps the
//! X

pub mod dead_letter;
pub mod lambda;
pub mod sqs_deletes;
pub mod sqs_poller;

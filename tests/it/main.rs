//! Black-box and router tests. One test binary, one module per behaviour.

mod helpers;

mod consent_order;
mod consumer_binary;
mod consumer_lambda;
mod consumer_sqs_e2e;
mod consumer_sqs_visibility;
mod embedded_gateway;
mod embedded_queue;
mod failover;
mod gateway_auth;
mod gateway_batch;
mod gateway_connections;
mod gateway_health;
mod gateway_hostile_input;
mod gateway_idempotency;
mod gateway_send;
mod metrics;
mod openapi;
mod opt_outs;
mod preflight;
mod sms;
mod sms_aws;
mod sms_batch;
mod sns_batching;
mod sns_publish;
mod sns_signature;
mod sqs_acknowledgements;
mod statuses_aws;
mod statuses_embedded;
mod webhook_bodies;
mod whatsapp_delivery;

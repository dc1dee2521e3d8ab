//! Herald: a messaging gateway. Clients POST a message to one authenticated
//! endpoint; Herald validates it, publishes a versioned envelope to a queue
//! (AWS SNS, or an embedded durable queue on one machine), and a consumer
//! delivers each envelope to the WhatsApp Cloud API or, for SMS, to Infobip.
//!
//! # Layout
//!
//! - [`clock`]: Herald's clock (Unix milliseconds).
//! - [`config`]: typed configuration read from the environment.
//! - [`aws`]: the AWS SDK configuration the request-path clients share.
//! - [`preflight`]: start-up checks of the AWS resources the configuration names.
//! - [`secret`]: a value that is never printed.
//! - [`tenants`]: who owns which keys, numbers, senders and consent (`TENANTS_FILE`).
//! - [`secrets`]: provider secrets read from AWS Secrets Manager at start-up.
//! - [`telemetry`]: the `tracing` subscriber.
//! - [`domain`]: phone numbers and messages, validated.
//! - [`contract`]: the envelope that travels between gateway and consumer.
//! - [`gateway`]: the HTTP API (router, auth, errors, routes).
//! - [`publisher`]: where accepted envelopes go (SNS, embedded queue, in-memory).
//! - [`channels`]: provider clients (WhatsApp Cloud API, Infobip SMS, console) and their webhooks.
//! - [`delivery`]: the pipeline from envelope to provider call, with pacing and retries.
//! - [`consumer`]: the ways envelopes arrive: Lambda (SNS, SQS events) and the SQS poller.
//! - [`embedded`]: the embedded default's durable queue (SQLite) and in-process worker.
//! - [`status`]: what became of each message (the status model and its stores).
//! - [`events`]: status, inbound and opt-out events out (SNS topic, signed webhooks).
//! - [`metrics`]: Prometheus metrics (`GET /metrics`).
//! - [`optout`]: recipients who opted out, and the keywords that opt them out.
//! - [`window`]: the 24-hour customer-service window, learnt and checked.
//! - [`search`]: search and statistics over a tenant's messages.
//! - [`startup`]: builds the gateway from its configuration and runs it.

pub mod aws;
pub mod channels;
pub mod clock;
pub mod config;
pub mod consumer;
pub mod contract;
pub mod delivery;
pub mod domain;
pub mod embedded;
pub mod events;
pub mod fleet;
pub mod gateway;
pub mod media;
pub mod metrics;
pub mod optout;
pub mod preflight;
pub mod publisher;
pub mod schedule;
pub mod search;
pub mod secret;
pub mod secrets;
pub mod startup;
pub mod status;
pub mod telemetry;
pub mod templates;
pub mod tenants;
pub mod window;

//! What a fleet of gateways and consumers shares through DynamoDB, so that it
//! keeps the promises of one process: each `Idempotency-Key` claimed once
//! ([`keys`]), one send rate per sending number or account ([`pace`]), one pair
//! rate per recipient ([`pairs`]) and one circuit per provider account
//! ([`circuit`]).
//!
//! Everything lives in the status table (`STATUS_TABLE`: `pk`/`sk` strings,
//! TTL on `expiresAt`) beside the statuses, under its own key prefixes, so a
//! deployment has one table to create, grant and watch. Every item expires.
//! Item layout and write cost per message: the README's "Guarantees in a
//! fleet". Without `STATUS_TABLE` nothing here runs: the embedded default owns
//! its queue in one process and keeps its limits in memory.

pub mod circuit;
pub mod keys;
pub mod pace;
pub mod pairs;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::types::AttributeValue;

/// A DynamoDB item.
pub type Item = HashMap<String, AttributeValue>;

/// The status table, as the fleet's shared state.
#[derive(Clone)]
pub struct FleetTable {
    client: Client,
    table: String,
}

impl std::fmt::Debug for FleetTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetTable")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl FleetTable {
    /// The fleet's items in `table`, through `client`.
    pub fn new(client: Client, table: &str) -> Self {
        Self {
            client,
            table: table.to_owned(),
        }
    }

    /// The table's name.
    pub fn name(&self) -> &str {
        &self.table
    }

    fn client(&self) -> &Client {
        &self.client
    }

    /// An `UpdateItem` of item (`pk`, `sk`).
    fn update(
        &self,
        pk: impl Into<String>,
        sk: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
    }

    /// A strongly consistent read of item (`pk`, `sk`).
    async fn get(
        &self,
        pk: impl Into<String>,
        sk: &str,
        context: &'static str,
    ) -> Result<Option<Item>, FleetError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| FleetError::sdk(context, e))?;
        Ok(out.item)
    }
}

/// Shares the limits of every provider of `pipeline` with the fleet through
/// `table`: each pacer books from the fleet's schedule, each pair-rate
/// limiter keeps its windows there, and each circuit opens for all.
pub fn share_limits(pipeline: &crate::delivery::Pipeline, table: &FleetTable) {
    for (provider, breaker) in pipeline.providers() {
        let (name, account) = (provider.name(), provider.account());
        if let Some(pacer) = provider.pacer() {
            pacer.share(std::sync::Arc::new(pace::FleetPace::new(
                table.clone(),
                name,
                account,
            )));
        }
        if let Some(pairs) = provider.recipient_limiter() {
            pairs.share(std::sync::Arc::new(pairs::FleetPairs::new(
                table.clone(),
                name,
                account,
            )));
        }
        circuit::FleetCircuit::new(table.clone(), name, account).sync(breaker.clone());
    }
}

/// Why shared state could not be read or written: what was being done, with
/// the SDK's error as the source.
#[derive(Debug, thiserror::Error)]
#[error("fleet state in DynamoDB: {context}")]
pub struct FleetError {
    context: &'static str,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl FleetError {
    fn sdk<E, R>(context: &'static str, e: SdkError<E, R>) -> Self
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        Self {
            context,
            source: Some(Box::new(e)),
        }
    }

    fn bare(context: &'static str) -> Self {
        Self {
            context,
            source: None,
        }
    }
}

/// Counts a write's `result` in `herald_fleet_writes_total` for `item`,
/// and passes it on.
fn counted<T, E, R>(
    item: &'static str,
    result: Result<T, SdkError<E, R>>,
) -> Result<T, SdkError<E, R>>
where
    E: aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    let outcome = match &result {
        Ok(_) => "ok",
        Err(e)
            if e.as_service_error().and_then(|e| e.code())
                == Some("ConditionalCheckFailedException") =>
        {
            "conflict"
        }
        Err(_) => "error",
    };
    crate::metrics::fleet_write(item, outcome);
    result
}

/// The item a failed conditional write found (returned with
/// `ReturnValuesOnConditionCheckFailure: ALL_OLD`, at no read cost), or
/// `None` when the call failed for another reason.
fn condition_failed_item<R>(
    e: &SdkError<aws_sdk_dynamodb::operation::update_item::UpdateItemError, R>,
) -> Option<Item> {
    match e.as_service_error() {
        Some(aws_sdk_dynamodb::operation::update_item::UpdateItemError::ConditionalCheckFailedException(c)) => {
            Some(c.item().cloned().unwrap_or_default())
        }
        _ => None,
    }
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

fn get_n(item: &Item, name: &str) -> Option<i64> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
}

/// Unix seconds `after_ms` from now, for `expiresAt`.
fn expires_at(now_ms: i64, after_ms: i64) -> AttributeValue {
    n((now_ms + after_ms) / 1000 + 1)
}

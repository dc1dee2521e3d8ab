//! Start-up checks of the AWS resources the configuration names, so that a
//! wrong name or a table of another shape stops the process at once with one
//! line naming the variable, instead of a gateway that accepts every send
//! while the consumer retries every message for ever.
//!
//! Checked: `SNS_TOPIC_ARN` and `EVENTS_TOPIC_ARN` exist (`GetTopicAttributes`);
//! `STATUS_TABLE` exists with Herald's key schema, partition key `pk` and sort
//! key `sk`, both strings (`DescribeTable`); `SQS_QUEUE_URL` exists
//! (`GetQueueAttributes`). Each check is one call at start-up.

use aws_sdk_dynamodb::types::{KeyType, ScalarAttributeType};

use crate::config::ConfigError;

fn invalid(var: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        var: var.to_owned(),
        reason,
    }
}

/// Checks that the topic in `var` exists and can be read.
pub async fn check_topic(
    client: &aws_sdk_sns::Client,
    var: &str,
    arn: &str,
) -> Result<(), ConfigError> {
    client
        .get_topic_attributes()
        .topic_arn(arn)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            invalid(
                var,
                format!("the topic cannot be used: {}", crate::aws::describe(&e)),
            )
        })
}

/// Checks that the queue in `SQS_QUEUE_URL` exists and can be read.
pub async fn check_queue(client: &aws_sdk_sqs::Client, url: &str) -> Result<(), ConfigError> {
    client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::VisibilityTimeout)
        .send()
        .await
        .map(|_| ())
        .map_err(|e| {
            invalid(
                "SQS_QUEUE_URL",
                format!("the queue cannot be used: {}", crate::aws::describe(&e)),
            )
        })
}

/// The global secondary index of `STATUS_TABLE` that search reads
/// (`deploy/template.yaml` declares it).
pub const STATUS_SEARCH_INDEX: &str = "byTenantTime";

/// Checks that `STATUS_TABLE` exists with Herald's keys: `pk` (String) as
/// partition key and `sk` (String) as sort key; warns when its search index
/// is missing or not active yet.
pub async fn check_status_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), ConfigError> {
    let described = client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            invalid(
                "STATUS_TABLE",
                format!("the table cannot be used: {}", crate::aws::describe(&e)),
            )
        })?;
    let table = described
        .table
        .ok_or_else(|| invalid("STATUS_TABLE", "DescribeTable named no table".into()))?;
    let key = |kind: KeyType| {
        table
            .key_schema()
            .iter()
            .find(|k| k.key_type() == &kind)
            .map(|k| k.attribute_name().to_owned())
    };
    let string_attribute = |name: &str| {
        table
            .attribute_definitions()
            .iter()
            .any(|a| a.attribute_name() == name && a.attribute_type() == &ScalarAttributeType::S)
    };
    let found = format!(
        "partition key {}, sort key {}",
        key(KeyType::Hash).unwrap_or_else(|| "none".into()),
        key(KeyType::Range).unwrap_or_else(|| "none".into())
    );
    if key(KeyType::Hash).as_deref() != Some("pk")
        || key(KeyType::Range).as_deref() != Some("sk")
        || !string_attribute("pk")
        || !string_attribute("sk")
    {
        return Err(invalid(
            "STATUS_TABLE",
            format!(
                "the table's keys must be partition key pk (String) and sort key sk (String); found {found}"
            ),
        ));
    }
    // Search reads an index the template declares; without it (a table made
    // before it, or the index still building) only search fails, so the
    // gateway starts and says so.
    let index = STATUS_SEARCH_INDEX;
    let ready = table
        .global_secondary_indexes()
        .iter()
        .find(|i| i.index_name() == Some(index))
        .map(|i| i.index_status().map(|s| s.as_str().to_owned()));
    match ready {
        Some(Some(status)) if status == "ACTIVE" => {}
        Some(status) => tracing::warn!(
            index,
            status = status.as_deref().unwrap_or("unknown"),
            "STATUS_TABLE's search index is not active yet: GET /api/v1/messages answers 503 until it is"
        ),
        None => tracing::warn!(
            index,
            "STATUS_TABLE has no search index (deploy/template.yaml declares it): GET /api/v1/messages answers 503 until it is added"
        ),
    }
    Ok(())
}

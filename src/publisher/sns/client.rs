//! The two ways to send a `PublishBatch`: aws-sdk-sns (the default), and a lean
//! client of our own (`SNS_CLIENT=lean`) that skips the SDK's per-call
//! orchestration. Both report the same [`BatchOutcome`], so the batcher does not
//! care which one it drives.
//!
//! The lean client keeps what the SDK gives that matters here: SigV4 signing by
//! AWS's own `aws-sigv4` crate, credentials from the same provider chain
//! (`aws-config`), the standard endpoint or `AWS_ENDPOINT_URL`, retries of
//! throttling, 5xx and connection failures with backoff, and SNS error codes
//! parsed from the response. It is measured side by side in `bench/run.py`.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use tokio::sync::Mutex;
use tracing::Instrument;

use super::{classify_call_code, classify_sdk_error};
use crate::publisher::{PublishError, PublishErrorKind};

/// What SNS said about each entry of a batch, by position.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Entries published, with SNS's message id.
    pub successful: Vec<(usize, Option<String>)>,
    /// Entries not published: position, error code, and whether it is the sender's fault.
    pub failed: Vec<(usize, String, bool)>,
}

/// Sends `PublishBatch` calls.
#[derive(Clone)]
pub enum BatchClient {
    /// aws-sdk-sns.
    Sdk(aws_sdk_sns::Client),
    /// Our own signed HTTP call.
    Lean(LeanClient),
}

/// Attempts per `PublishBatch` call before its error is returned.
const CALL_ATTEMPTS: u32 = 3;

impl BatchClient {
    /// Publishes `entries` (at most 10) to `topic_arn`, retrying a failed call
    /// (but not a misconfiguration) up to [`CALL_ATTEMPTS`] times with jittered
    /// backoff. Both clients retry here, so the result can say whether *any*
    /// attempt's outcome was unknown: then the error is
    /// [`PublishErrorKind::OutcomeUnknown`] even if the last attempt was a
    /// definite refusal (a timeout, then a throttle: the first may have
    /// published). The SDK's own retries are turned off for this call.
    pub async fn publish_batch<M: BatchMessage>(
        &self,
        topic_arn: &str,
        entries: &[M],
    ) -> Result<BatchOutcome, PublishError> {
        let mut maybe_published = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut error = match self.publish_batch_once(topic_arn, entries).await {
                Ok(outcome) => return Ok(outcome),
                Err(e) => e,
            };
            maybe_published |= error.kind.may_have_published();
            let retry = !matches!(
                error.kind,
                PublishErrorKind::Misconfigured | PublishErrorKind::TooLarge
            );
            if !retry || attempt >= CALL_ATTEMPTS {
                if maybe_published {
                    error.kind = PublishErrorKind::OutcomeUnknown;
                }
                return Err(error);
            }
            let backoff = Duration::from_millis(25 << attempt);
            tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
        }
    }

    async fn publish_batch_once<M: BatchMessage>(
        &self,
        topic_arn: &str,
        entries: &[M],
    ) -> Result<BatchOutcome, PublishError> {
        let span = tracing::debug_span!("sns.publish_batch", entries = entries.len());
        match self {
            Self::Sdk(client) => {
                sdk_publish_batch(client, topic_arn, entries)
                    .instrument(span)
                    .await
            }
            Self::Lean(client) => {
                client
                    .call(&LeanClient::body(topic_arn, entries), topic_arn)
                    .instrument(span)
                    .await
            }
        }
    }
}

/// What a `PublishBatch` call needs of one message (the batcher's entries
/// provide it; this file knows nothing else of them).
pub trait BatchMessage {
    /// The message body (the envelope JSON).
    fn body(&self) -> &str;
    /// The `channel` attribute.
    fn channel(&self) -> &str;
    /// The `type` attribute.
    fn message_type(&self) -> &str;
    /// `MessageGroupId`: a FIFO topic's recipient, a standard topic's tenant.
    fn group_id(&self) -> Option<&str>;
    /// A FIFO topic's `MessageDeduplicationId`.
    fn deduplication_id(&self) -> Option<&str>;
}

fn sdk_attribute(value: &str) -> MessageAttributeValue {
    MessageAttributeValue::builder()
        .data_type("String")
        .string_value(value)
        .build()
        .expect("data_type is set, the only required field")
}

async fn sdk_publish_batch<M: BatchMessage>(
    client: &aws_sdk_sns::Client,
    topic_arn: &str,
    entries: &[M],
) -> Result<BatchOutcome, PublishError> {
    let request_entries: Vec<PublishBatchRequestEntry> = entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            PublishBatchRequestEntry::builder()
                .id(i.to_string())
                .message(e.body())
                .message_attributes("channel", sdk_attribute(e.channel()))
                .message_attributes("type", sdk_attribute(e.message_type()))
                .set_message_group_id(e.group_id().map(str::to_owned))
                .set_message_deduplication_id(e.deduplication_id().map(str::to_owned))
                .build()
                .expect("id and message are set")
        })
        .collect();
    let output = client
        .publish_batch()
        .topic_arn(topic_arn)
        .set_publish_batch_request_entries(Some(request_entries))
        .send()
        .await
        .map_err(|e| classify_sdk_error(&e, topic_arn))?;
    Ok(BatchOutcome {
        successful: output
            .successful()
            .iter()
            .filter_map(|ok| Some((ok.id()?.parse().ok()?, ok.message_id().map(str::to_owned))))
            .collect(),
        failed: output
            .failed()
            .iter()
            .filter_map(|f| Some((f.id().parse().ok()?, f.code().to_owned(), f.sender_fault())))
            .collect(),
    })
}

/// A minimal SNS query-protocol client for `PublishBatch`.
#[derive(Clone)]
pub struct LeanClient {
    http: reqwest::Client,
    endpoint: String,
    region: String,
    credentials: SharedCredentialsProvider,
    cached: std::sync::Arc<Mutex<Option<Credentials>>>,
}

impl LeanClient {
    /// Builds the client from the shared AWS configuration (region, endpoint,
    /// credentials chain). `None` when no region is configured.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Option<Self> {
        let region = config.region()?.to_string();
        let endpoint = config.endpoint_url().map_or_else(
            || {
                let suffix = if region.starts_with("cn-") {
                    "amazonaws.com.cn"
                } else {
                    "amazonaws.com"
                };
                format!("https://sns.{region}.{suffix}/")
            },
            |url| format!("{}/", url.trim_end_matches('/')),
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(50))
            .build()
            .ok()?;
        Some(Self {
            http,
            endpoint,
            region,
            credentials: config.credentials_provider()?,
            cached: Default::default(),
        })
    }

    /// Credentials, refreshed five minutes before they expire.
    async fn credentials(&self) -> Result<Credentials, PublishError> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|at| at > SystemTime::now() + Duration::from_secs(300))
        };
        if let Some(c) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(c.clone());
        }
        let c = self.credentials.provide_credentials().await.map_err(|e| {
            PublishError::new(
                PublishErrorKind::Misconfigured,
                "no AWS credentials: check the credentials chain",
            )
            .with_source(e)
        })?;
        *cached = Some(c.clone());
        Ok(c)
    }

    /// The form body of a `PublishBatch` call, in the query protocol's shape.
    fn body<M: BatchMessage>(topic_arn: &str, entries: &[M]) -> String {
        let mut form = form_urlencoded::Serializer::new(String::with_capacity(
            256 + entries
                .iter()
                .map(|e| e.body().len() * 3 / 2 + 256)
                .sum::<usize>(),
        ));
        form.append_pair("Action", "PublishBatch")
            .append_pair("Version", "2010-03-31")
            .append_pair("TopicArn", topic_arn);
        for (i, e) in entries.iter().enumerate() {
            let p = format!("PublishBatchRequestEntries.member.{}", i + 1);
            form.append_pair(&format!("{p}.Id"), &i.to_string())
                .append_pair(&format!("{p}.Message"), e.body());
            for (n, (name, value)) in [("channel", e.channel()), ("type", e.message_type())]
                .into_iter()
                .enumerate()
            {
                let a = format!("{p}.MessageAttributes.entry.{}", n + 1);
                form.append_pair(&format!("{a}.Name"), name)
                    .append_pair(&format!("{a}.Value.DataType"), "String")
                    .append_pair(&format!("{a}.Value.StringValue"), value);
            }
            if let Some(group) = e.group_id() {
                form.append_pair(&format!("{p}.MessageGroupId"), group);
            }
            if let Some(dedup) = e.deduplication_id() {
                form.append_pair(&format!("{p}.MessageDeduplicationId"), dedup);
            }
        }
        form.finish()
    }

    /// The `Publish`/`PublishBatch` request for `body`, signed (SigV4).
    async fn signed_request(&self, body: &str) -> Result<reqwest::Request, PublishError> {
        let credentials = self.credentials().await?;
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("sns")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .expect("identity, region, name, time and settings are set")
            .into();
        let content_type = "application/x-www-form-urlencoded";
        let host = self
            .endpoint
            .split("://")
            .nth(1)
            .and_then(|r| r.split('/').next())
            .unwrap_or_default();
        let mut request = http::Request::post(self.endpoint.as_str())
            .header("content-type", content_type)
            .header("host", host)
            .body(body.to_owned())
            .expect("the endpoint is a valid URI");
        let signable = SignableRequest::new(
            "POST",
            self.endpoint.as_str(),
            [("content-type", content_type), ("host", host)].into_iter(),
            SignableBody::Bytes(body.as_bytes()),
        )
        .map_err(unsignable)?;
        let (instructions, _signature) = sign(signable, &params).map_err(unsignable)?.into_parts();
        instructions.apply_to_request_http1x(&mut request);
        Ok(reqwest::Request::try_from(request)
            .expect("an http::Request with a string body converts"))
    }

    async fn call(&self, body: &str, topic_arn: &str) -> Result<BatchOutcome, PublishError> {
        let request = self.signed_request(body).await?;
        let response = self.http.execute(request).await.map_err(|e| {
            // A connection that was never made sent nothing; anything later
            // may have reached SNS.
            let (kind, what) = if e.is_connect() {
                (PublishErrorKind::Transient, "could not connect to SNS")
            } else if e.is_timeout() {
                (
                    PublishErrorKind::OutcomeUnknown,
                    "SNS did not answer in time",
                )
            } else {
                (
                    PublishErrorKind::OutcomeUnknown,
                    "the connection to SNS failed after the request was sent",
                )
            };
            PublishError::new(kind, what).with_source(e)
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            PublishError::new(PublishErrorKind::OutcomeUnknown, "SNS's answer was cut off")
                .with_source(e)
        })?;
        if !status.is_success() {
            let code = tag(&text, "Code").unwrap_or(if status.is_server_error() {
                "InternalError"
            } else {
                "Unknown"
            });
            let kind = classify_call_code(code);
            let message = match kind {
                PublishErrorKind::Misconfigured => super::errors::remedy(code, topic_arn),
                _ => format!("SNS answered {code}"),
            };
            return Err(PublishError::new(kind, message));
        }
        Ok(parse_batch_response(&text))
    }
}

/// A request that could not be signed.
fn unsignable(e: impl std::error::Error + Send + Sync + 'static) -> PublishError {
    PublishError::new(
        PublishErrorKind::Misconfigured,
        "cannot sign the SNS request",
    )
    .with_source(e)
}

/// The text of the first `<name>…</name>` in `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(&xml[start..end])
}

/// The `<member>` elements inside `<section>…</section>`.
fn members<'a>(xml: &'a str, section: &str) -> Vec<&'a str> {
    let Some(inner) = tag(xml, section) else {
        return Vec::new();
    };
    inner
        .split("<member>")
        .skip(1)
        .filter_map(|m| m.split("</member>").next())
        .collect()
}

fn parse_batch_response(xml: &str) -> BatchOutcome {
    BatchOutcome {
        successful: members(xml, "Successful")
            .into_iter()
            .filter_map(|m| {
                Some((
                    tag(m, "Id")?.parse().ok()?,
                    tag(m, "MessageId").map(str::to_owned),
                ))
            })
            .collect(),
        failed: members(xml, "Failed")
            .into_iter()
            .filter_map(|m| {
                let id = tag(m, "Id")?.parse().ok()?;
                Some((
                    id,
                    tag(m, "Code").unwrap_or("Unknown").to_owned(),
                    tag(m, "SenderFault") == Some("true"),
                ))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_response_is_read_by_position() {
        let xml = r#"<PublishBatchResponse xmlns="http://sns.amazonaws.com/doc/2010-03-31/"><PublishBatchResult>
            <Successful><member><Id>0</Id><MessageId>m-0</MessageId></member><member><MessageId>m-2</MessageId><Id>2</Id></member></Successful>
            <Failed><member><Id>1</Id><Code>InternalError</Code><Message>x</Message><SenderFault>false</SenderFault></member></Failed>
            </PublishBatchResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></PublishBatchResponse>"#;
        let outcome = parse_batch_response(xml);
        assert_eq!(
            outcome.successful,
            vec![(0, Some("m-0".into())), (2, Some("m-2".into()))]
        );
        assert_eq!(outcome.failed, vec![(1, "InternalError".into(), false)]);
    }

    #[test]
    fn empty_sections_are_empty() {
        let outcome =
            parse_batch_response("<PublishBatchResult><Successful/><Failed/></PublishBatchResult>");
        assert!(outcome.successful.is_empty() && outcome.failed.is_empty());
    }
}

//! `Idempotency-Key`s claimed across gateways: a retry that lands on another
//! gateway (or after a restart) gets the first attempt's message id and
//! answer, never a second publish.
//!
//! One item per key: `pk = "idem#<api key id>#<key>"`, `sk = "key"`, with
//! `digest` (SHA-256 of the body, hex), `messageId`, `state` (`inflight`,
//! `published`, `unsettled`), `owner` (a token per claim: only its holder
//! settles it), `leaseUntil` (Unix ms: an `inflight` claim whose
//! gateway died is taken over after it), `response` (a batch's answer, binary;
//! past [`PART_BYTES`] its first part, with `parts` saying how many there
//! are: the others are items of the same `pk` with `sk = "part#<n>"`, since
//! a DynamoDB item holds at most 400 KB and a 10 000-entry answer about 900 KB)
//! and `expiresAt` (`IDEMPOTENCY_TTL_SECS` after the claim; checked here too,
//! since DynamoDB's TTL deletes late).
//!
//! A claim is one conditional `PutItem` (`attribute_not_exists(pk) OR
//! expiresAt < now`); when it fails, DynamoDB returns the item it found at no
//! read cost, which says what to do: another body is `422`, a published key
//! is replayed, an unsettled or abandoned one is taken over under its id, and
//! one in flight elsewhere is waited for, polled, until the caller's deadline.
//! Publishing marks the item with one `UpdateItem`: two writes per keyed
//! request.

use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValuesOnConditionCheckFailure};
use uuid::Uuid;

use super::{FleetError, FleetTable, Item, expires_at, get_n, get_s, n, s};
use crate::clock::now_ms;

const SK: &str = "key";
const IN_FLIGHT: &str = "inflight";
const PUBLISHED: &str = "published";
const UNSETTLED: &str = "unsettled";

/// Bytes of a batch's answer per item.
const PART_BYTES: usize = 300_000;

/// First and longest pause between looks at a key in flight elsewhere.
const POLL_FIRST: Duration = Duration::from_millis(50);
const POLL_MAX: Duration = Duration::from_millis(500);

/// The fleet's idempotency keys.
#[derive(Debug, Clone)]
pub struct FleetKeys {
    table: FleetTable,
    /// How long a key is remembered.
    ttl: Duration,
    /// How long a claim holds while its request publishes: the request
    /// timeout with a margin, after which a dead gateway's claim is taken over.
    lease: Duration,
}

/// What the fleet says about a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SharedClaim {
    /// This request publishes, under `id` (the proposed one, or the id of an
    /// earlier attempt that did not settle: `retry` is then true).
    Mine {
        /// The message id to publish under.
        id: Uuid,
        /// An earlier attempt may have published it already.
        retry: bool,
        /// This claim's owner token: only its holder marks the key
        /// published or unsettled (a claim taken over keeps its id).
        owner: Uuid,
    },
    /// Published by an earlier attempt: answer with its id (and, for a
    /// batch, its answer).
    Published {
        /// The message id (a batch's base id).
        id: Uuid,
        /// A batch's answer, as it was sent.
        response: Option<Vec<u8>>,
    },
    /// The key was used with another body.
    Mismatch,
    /// Another gateway is publishing it and did not finish before the
    /// deadline: ask again after `retry_after`.
    InFlight {
        /// When the other attempt's claim lapses at the latest.
        retry_after: Duration,
    },
}

/// One key, as the table holds it.
struct Found {
    digest: String,
    id: Uuid,
    state: String,
    lease_until: i64,
    response: Option<Vec<u8>>,
    parts: i64,
}

impl Found {
    fn read(item: &Item) -> Option<Self> {
        Some(Self {
            digest: get_s(item, "digest")?.to_owned(),
            id: get_s(item, "messageId")?.parse().ok()?,
            state: get_s(item, "state")?.to_owned(),
            lease_until: get_n(item, "leaseUntil").unwrap_or(0),
            response: item
                .get("response")
                .and_then(|v| v.as_b().ok())
                .map(|b| b.as_ref().to_vec()),
            parts: get_n(item, "parts").unwrap_or(1),
        })
    }
}

impl FleetKeys {
    /// Keys in `table`, remembered for `ttl`; a claim lapses after `lease`.
    pub fn new(table: FleetTable, ttl: Duration, lease: Duration) -> Self {
        Self { table, ttl, lease }
    }

    fn pk(key_id: &str, key: &str) -> String {
        format!("idem#{key_id}#{key}")
    }

    /// Claims `key` of `key_id` for a body with `digest`, proposing `id`;
    /// waits for an attempt in flight elsewhere until `deadline`.
    pub async fn claim(
        &self,
        key_id: &str,
        key: &str,
        digest: &[u8; 32],
        id: Uuid,
        deadline: tokio::time::Instant,
    ) -> Result<SharedClaim, FleetError> {
        let digest = crate::events::signing::to_hex(digest);
        let owner = Uuid::now_v7();
        let mut pause = POLL_FIRST;
        loop {
            let Some(found) = self.try_insert(key_id, key, &digest, id, owner).await? else {
                return Ok(SharedClaim::Mine {
                    id,
                    retry: false,
                    owner,
                });
            };
            if found.digest != digest {
                return Ok(SharedClaim::Mismatch);
            }
            let now = now_ms();
            match found.state.as_str() {
                PUBLISHED => {
                    let response = match found.response {
                        Some(first) if found.parts > 1 => {
                            Some(self.read_parts(key_id, key, first, found.parts).await?)
                        }
                        other => other,
                    };
                    return Ok(SharedClaim::Published {
                        id: found.id,
                        response,
                    });
                }
                IN_FLIGHT if found.lease_until > now => {
                    let lapses = Duration::from_millis((found.lease_until - now) as u64);
                    if tokio::time::Instant::now() + pause > deadline {
                        return Ok(SharedClaim::InFlight {
                            retry_after: lapses.max(Duration::from_secs(1)),
                        });
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(POLL_MAX);
                }
                _ => {
                    if self.take_over(key_id, key, &found, owner).await? {
                        return Ok(SharedClaim::Mine {
                            id: found.id,
                            retry: true,
                            owner,
                        });
                    }
                }
            }
        }
    }

    /// Writes a new claim; `None` when it is ours, else the item found.
    async fn try_insert(
        &self,
        key_id: &str,
        key: &str,
        digest: &str,
        id: Uuid,
        owner: Uuid,
    ) -> Result<Option<Found>, FleetError> {
        let now = now_ms();
        let result = super::counted(
            "keys",
            self.table
                .client()
                .put_item()
                .table_name(self.table.name())
                .item("pk", s(Self::pk(key_id, key)))
                .item("sk", s(SK))
                .item("digest", s(digest))
                .item("messageId", s(id.to_string()))
                .item("state", s(IN_FLIGHT))
                .item("owner", s(owner.to_string()))
                .item("leaseUntil", n(now + self.lease.as_millis() as i64))
                .item("expiresAt", expires_at(now, self.ttl.as_millis() as i64))
                .condition_expression("attribute_not_exists(pk) OR expiresAt < :now")
                .expression_attribute_values(":now", n(now / 1000))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .send()
                .await,
        );
        match result {
            Ok(_) => Ok(None),
            Err(e) => {
                use aws_sdk_dynamodb::operation::put_item::PutItemError;
                match e.as_service_error() {
                    Some(PutItemError::ConditionalCheckFailedException(c)) => {
                        c.item().and_then(Found::read).map(Some).ok_or_else(|| {
                            FleetError::bare("an idempotency key item is unreadable")
                        })
                    }
                    _ => Err(FleetError::sdk("claiming an idempotency key", e)),
                }
            }
        }
    }

    /// Takes over a claim that did not settle or whose lease lapsed, if no
    /// other gateway took it first.
    async fn take_over(
        &self,
        key_id: &str,
        key: &str,
        found: &Found,
        owner: Uuid,
    ) -> Result<bool, FleetError> {
        let now = now_ms();
        let result = super::counted(
            "keys",
            self.table
                .update(Self::pk(key_id, key), SK)
                .update_expression("SET #state = :inflight, leaseUntil = :lease, #owner = :owner")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":owner", s(owner.to_string()))
                .condition_expression("#state = :seen AND leaseUntil = :seen_lease")
                .expression_attribute_names("#state", "state")
                .expression_attribute_values(":inflight", s(IN_FLIGHT))
                .expression_attribute_values(":lease", n(now + self.lease.as_millis() as i64))
                .expression_attribute_values(":seen", s(found.state.clone()))
                .expression_attribute_values(":seen_lease", n(found.lease_until))
                .send()
                .await,
        );
        match result {
            Ok(_) => Ok(true),
            Err(e) if super::condition_failed_item(&e).is_some() => Ok(false),
            Err(e) => Err(FleetError::sdk("taking over an idempotency key", e)),
        }
    }

    /// Marks the key published by the claim of `owner`, with a batch's
    /// `response`.
    pub async fn published(
        &self,
        key_id: &str,
        key: &str,
        owner: Uuid,
        response: Option<&[u8]>,
    ) -> Result<(), FleetError> {
        let mut update = self
            .table
            .update(Self::pk(key_id, key), SK)
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":published", s(PUBLISHED))
            .expression_attribute_values(":owner", s(owner.to_string()));
        update = match response {
            Some(body) => {
                let mut parts = body.chunks(PART_BYTES);
                let first = parts.next().unwrap_or_default();
                let mut count = 1;
                for part in parts {
                    self.write_part(key_id, key, count, part).await?;
                    count += 1;
                }
                update
                    .update_expression(
                        "SET #state = :published, #response = :response, parts = :parts",
                    )
                    .expression_attribute_names("#response", "response")
                    .expression_attribute_values(":parts", n(count))
                    .expression_attribute_values(
                        ":response",
                        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(first)),
                    )
            }
            None => update.update_expression("SET #state = :published"),
        };
        super::counted("keys", update.send().await)
            .map(|_| ())
            .map_err(|e| FleetError::sdk("marking an idempotency key published", e))
    }

    /// Writes part `index` (from 1) of a batch's answer.
    async fn write_part(
        &self,
        key_id: &str,
        key: &str,
        index: i64,
        part: &[u8],
    ) -> Result<(), FleetError> {
        let result = self
            .table
            .client()
            .put_item()
            .table_name(self.table.name())
            .item("pk", s(Self::pk(key_id, key)))
            .item("sk", s(format!("part#{index}")))
            .item(
                "response",
                AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(part)),
            )
            .item(
                "expiresAt",
                expires_at(now_ms(), self.ttl.as_millis() as i64),
            )
            .send()
            .await;
        super::counted("keys", result)
            .map(|_| ())
            .map_err(|e| FleetError::sdk("writing part of a batch's answer", e))
    }

    /// A batch's answer from its `first` part and the `parts - 1` others.
    async fn read_parts(
        &self,
        key_id: &str,
        key: &str,
        mut answer: Vec<u8>,
        parts: i64,
    ) -> Result<Vec<u8>, FleetError> {
        for index in 1..parts {
            let item = self
                .table
                .get(
                    Self::pk(key_id, key),
                    &format!("part#{index}"),
                    "reading part of a batch's answer",
                )
                .await?
                .ok_or_else(|| FleetError::bare("a part of a batch's answer is missing"))?;
            let part = item
                .get("response")
                .and_then(|v| v.as_b().ok())
                .ok_or_else(|| FleetError::bare("a part of a batch's answer is unreadable"))?;
            answer.extend_from_slice(part.as_ref());
        }
        Ok(answer)
    }

    /// Marks the key unsettled: its attempt failed before publishing, or
    /// cannot say; the next attempt publishes again under `id`.
    pub async fn unsettled(&self, key_id: &str, key: &str, owner: Uuid) -> Result<(), FleetError> {
        let result = super::counted(
            "keys",
            self.table
                .update(Self::pk(key_id, key), SK)
                .update_expression("SET #state = :unsettled")
                .condition_expression("#owner = :owner AND #state = :inflight")
                .expression_attribute_names("#state", "state")
                .expression_attribute_names("#owner", "owner")
                .expression_attribute_values(":unsettled", s(UNSETTLED))
                .expression_attribute_values(":inflight", s(IN_FLIGHT))
                .expression_attribute_values(":owner", s(owner.to_string()))
                .send()
                .await,
        );
        match result {
            Ok(_) => Ok(()),
            Err(e) if super::condition_failed_item(&e).is_some() => Ok(()),
            Err(e) => Err(FleetError::sdk("releasing an idempotency key", e)),
        }
    }
}

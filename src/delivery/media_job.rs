//! A media job (SNS mode, see `status/dynamodb/media_jobs.rs`): the consumer
//! downloads the media a person sent with the receiving number's token,
//! keeps it in `MEDIA_BUCKET` for each of the message's tenants, and has the
//! status store publish the message's event with `media`. A failure is a
//! counted retry (SQS redelivers); past `DELIVERY_MAX_ATTEMPTS`, or for
//! media WhatsApp would not take, the event goes with `media.error`.

use serde_json::{Value, json};

use super::{Decision, FailureClass, Pipeline};
use crate::contract::Envelope;
use crate::media::inbound::{Failure, keep_for_tenants};
use crate::status::Inbound;

impl Pipeline {
    /// Carries out the media job `job` of `envelope`.
    pub(super) async fn media_job(
        &self,
        envelope: &Envelope,
        job: &Value,
        attempt: u32,
    ) -> Decision {
        let Ok(inbound) = serde_json::from_value::<Inbound>(job.clone()) else {
            return Decision::DeadLetter {
                reason: "unreadable media job".into(),
            };
        };
        let media = match self.keep_media(envelope, &inbound).await {
            Ok(media) => media,
            Err(Failure::Again(reason)) if attempt < self.max_attempts => {
                return Decision::Retry {
                    after: self.retry.delay(FailureClass::Retryable, attempt, None),
                    class: FailureClass::Retryable,
                    code: None,
                    reason: format!("inbound media not kept yet: {reason}"),
                    counted: true,
                };
            }
            Err(failure) => {
                tracing::error!(error.message = %failure.reason(), "inbound media given up: its event goes with media.error");
                json!({"error": failure.reason()})
            }
        };
        let Some(statuses) = &self.statuses else {
            return Decision::Delivered {
                provider_id: String::new(),
            };
        };
        match statuses.inbound_media_kept(&inbound, media).await {
            Ok(()) => Decision::Delivered {
                provider_id: String::new(),
            },
            Err(e) => Decision::Retry {
                after: self.retry.delay(FailureClass::Retryable, attempt, None),
                class: FailureClass::Retryable,
                code: None,
                reason: format!("inbound media kept, its event not published yet: {e}"),
                counted: false,
            },
        }
    }

    async fn keep_media(&self, envelope: &Envelope, inbound: &Inbound) -> Result<Value, Failure> {
        let store = self
            .media
            .as_ref()
            .ok_or_else(|| Failure::Final("MEDIA_BUCKET is not set for the consumer".into()))?;
        let media_id = inbound
            .media_id()
            .ok_or_else(|| Failure::Final("no media in the message".into()))?;
        let download = self
            .provider_for(envelope)
            .and_then(|p| p.channel.download(media_id))
            .ok_or_else(|| {
                Failure::Final("no WhatsApp credentials for the number that received it".into())
            })?;
        let (mime, body) = download.await.map_err(|e| Failure::Again(e.message))?;
        let filename = inbound
            .message
            .pointer("/document/filename")
            .and_then(Value::as_str)
            .map(str::to_owned);
        keep_for_tenants(store.as_ref(), &inbound.tenants, &mime, filename, body).await
    }
}

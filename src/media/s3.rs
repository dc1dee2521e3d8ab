//! Media with SNS: objects in `MEDIA_BUCKET`. `media/<id>` holds the bytes
//! with their type and, as object metadata, the tenant, digest, name and
//! time; `uploads/<id>/<account>.json` remembers the provider's id for it
//! per sending number. An upload is put from its spooled file (streamed
//! from disk) after a `HeadObject` finds it is not kept yet.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use aws_sdk_s3::Client;
use aws_sdk_s3::primitives::ByteStream;

use super::{BoxFuture, MediaBody, MediaError, MediaInfo, MediaStore, Uploaded};

/// Media in an S3 bucket.
#[derive(Debug, Clone)]
pub struct S3MediaStore {
    client: Client,
    bucket: String,
    spool: PathBuf,
}

fn s3_error<E, R>(context: &'static str, e: aws_sdk_s3::error::SdkError<E, R>) -> MediaError
where
    E: std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    MediaError::new(context, e)
}

fn data_key(id: &str) -> String {
    format!("media/{id}")
}

fn upload_key(id: &str, account: &str) -> String {
    let safe: String = account
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(64)
        .collect();
    format!("uploads/{id}/{safe}.json")
}

impl S3MediaStore {
    /// Media in `bucket`, through `client`; uploads spooled in `spool`.
    pub fn new(client: Client, bucket: &str, spool: &Path) -> Self {
        Self {
            client,
            bucket: bucket.to_owned(),
            spool: spool.to_owned(),
        }
    }

    /// The store `MEDIA_BUCKET` names, on the standard AWS environment.
    pub async fn from_env(
        bucket: &str,
        timeouts: crate::config::AwsTimeouts,
        spool: &Path,
    ) -> Self {
        let aws = crate::aws::sdk_config(timeouts).await;
        let config = aws_sdk_s3::config::Builder::from(&aws)
            // Path-style: the endpoint override (an emulator) has no
            // per-bucket host names.
            .force_path_style(aws.endpoint_url().is_some())
            .build();
        Self::new(Client::from_conf(config), bucket, spool)
    }

    /// Object `key`, or `None` when there is none.
    async fn get(
        &self,
        key: String,
        context: &'static str,
    ) -> Result<Option<aws_sdk_s3::operation::get_object::GetObjectOutput>, MediaError> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => Ok(Some(object)),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(e) => Err(s3_error(context, e)),
        }
    }

    async fn head(&self, id: &str) -> Result<Option<MediaInfo>, MediaError> {
        if !super::is_media_id(id) {
            return Ok(None);
        }
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(data_key(id))
            .send()
            .await
        {
            Ok(head) => Ok(Some(info_from(
                id,
                head.metadata(),
                head.content_type(),
                head.content_length(),
            ))),
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(e) => Err(s3_error("cannot read a media object's head", e)),
        }
    }
}

fn info_from(
    id: &str,
    metadata: Option<&HashMap<String, String>>,
    content_type: Option<&str>,
    length: Option<i64>,
) -> MediaInfo {
    let meta = |k: &str| metadata.and_then(|m| m.get(k)).cloned();
    MediaInfo {
        media_id: id.to_owned(),
        tenant: meta("tenant").unwrap_or_default(),
        sha256: meta("sha256").unwrap_or_default(),
        size: length
            .and_then(|l| u64::try_from(l).ok())
            .unwrap_or_default(),
        mime_type: content_type
            .unwrap_or("application/octet-stream")
            .to_owned(),
        filename: meta("filename"),
        created_at_ms: meta("created")
            .and_then(|c| c.parse().ok())
            .unwrap_or_default(),
    }
}

impl MediaStore for S3MediaStore {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    fn keep(&self, info: MediaInfo, file: PathBuf) -> BoxFuture<'_, Result<MediaInfo, MediaError>> {
        Box::pin(async move {
            let kept = self.head(&info.media_id).await;
            if let Ok(Some(kept)) = kept {
                let _ = tokio::fs::remove_file(&file).await;
                return Ok(kept);
            }
            let body = ByteStream::from_path(&file)
                .await
                .map_err(|e| MediaError::new("cannot read a spooled upload", e));
            let result = match body {
                Ok(body) => {
                    let mut put = self
                        .client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(data_key(&info.media_id))
                        .content_type(&info.mime_type)
                        .content_length(i64::try_from(info.size).unwrap_or(i64::MAX))
                        .metadata("tenant", &info.tenant)
                        .metadata("sha256", &info.sha256)
                        .metadata("created", info.created_at_ms.to_string())
                        .body(body);
                    if let Some(name) = &info.filename {
                        // Metadata travels as headers: keep it ASCII.
                        let ascii: String = name.chars().filter(char::is_ascii_graphic).collect();
                        put = put.metadata("filename", ascii);
                    }
                    put.send()
                        .await
                        .map(|_| info)
                        .map_err(|e| s3_error("cannot put a media object", e))
                }
                Err(e) => Err(e),
            };
            let _ = tokio::fs::remove_file(&file).await;
            result
        })
    }

    fn info<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<MediaInfo>, MediaError>> {
        Box::pin(self.head(id))
    }

    fn open<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(MediaInfo, MediaBody)>, MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(None);
            }
            let Some(object) = self.get(data_key(id), "cannot get a media object").await? else {
                return Ok(None);
            };
            let info = info_from(
                id,
                object.metadata(),
                object.content_type(),
                object.content_length(),
            );
            let body: MediaBody = Box::pin(futures_util::stream::try_unfold(
                object.body,
                |mut body| async move {
                    match body.try_next().await {
                        Ok(Some(chunk)) => Ok(Some((chunk, body))),
                        Ok(None) => Ok(None),
                        Err(e) => Err(std::io::Error::other(e)),
                    }
                },
            ));
            Ok(Some((info, body)))
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, MediaError>> {
        Box::pin(async move {
            if self.head(id).await?.is_none() {
                return Ok(false);
            }
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(data_key(id))
                .send()
                .await
                .map_err(|e| s3_error("cannot delete a media object", e))?;
            Ok(true)
        })
    }

    fn uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
    ) -> BoxFuture<'a, Result<Option<Uploaded>, MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(None);
            }
            let context = "cannot read a media upload record";
            let Some(object) = self.get(upload_key(id, account), context).await? else {
                return Ok(None);
            };
            let bytes = object
                .body
                .collect()
                .await
                .map_err(|e| MediaError::new("cannot read a media upload record", e))?;
            Ok(serde_json::from_slice(&bytes.into_bytes()).ok())
        })
    }

    fn set_uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
        upload: Option<Uploaded>,
    ) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(());
            }
            let key = upload_key(id, account);
            match upload {
                Some(upload) => {
                    let json = serde_json::to_vec(&upload).expect("an upload serialises");
                    self.client
                        .put_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .content_type("application/json")
                        .body(ByteStream::from(json))
                        .send()
                        .await
                        .map_err(|e| s3_error("cannot write a media upload record", e))?;
                }
                None => {
                    self.client
                        .delete_object()
                        .bucket(&self.bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| s3_error("cannot delete a media upload record", e))?;
                }
            }
            Ok(())
        })
    }
}

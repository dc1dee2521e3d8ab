//! The embedded default's media: files under `HERALD_DATA_DIR/media`, one
//! per id (`<id>`) with its info beside it (`<id>.json`). A file is moved
//! in by rename after its bytes are fsynced, its info written the same way
//! after it, and the directory fsynced: a crash leaves either nothing or
//! the whole file (an info without its file is never written; a file
//! without its info is taken again by the next upload of the same bytes).

use std::path::{Path, PathBuf};

use axum::body::Bytes;

use super::{BoxFuture, MediaBody, MediaError, MediaInfo, MediaStore};

/// Bytes read at a time when a file is served.
const CHUNK: usize = 64 * 1024;

/// Media in a directory.
#[derive(Debug, Clone)]
pub struct FileMediaStore {
    dir: PathBuf,
    spool: PathBuf,
}

impl FileMediaStore {
    /// Media under `data_dir/media` (created when needed).
    pub fn new(data_dir: &Path) -> Self {
        let dir = data_dir.join("media");
        Self {
            spool: dir.join("incoming"),
            dir,
        }
    }

    fn data(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    fn meta(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// `<id>.up-<account>.json`; an account is digits (a phone number id)
    /// or a URL, so it is kept to its safe characters.
    fn upload_file(&self, id: &str, account: &str) -> PathBuf {
        let safe: String = account
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(64)
            .collect();
        self.dir.join(format!("{id}.up-{safe}.json"))
    }

    async fn read_info(&self, id: &str) -> Result<Option<MediaInfo>, MediaError> {
        // Ids name files: anything else is not looked up.
        if !super::is_media_id(id) {
            return Ok(None);
        }
        match tokio::fs::read(self.meta(id)).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| MediaError::new("a media info file is unreadable", e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(MediaError::new("cannot read a media info file", e)),
        }
    }

    async fn write_durably(&self, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let temp = path.with_extension(format!("tmp-{}", uuid::Uuid::now_v7()));
        let written = self.write_temp(&temp, bytes).await;
        let renamed = match written {
            Ok(()) => tokio::fs::rename(&temp, path).await,
            Err(e) => Err(e),
        };
        if renamed.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        renamed
    }

    async fn write_temp(&self, temp: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let file = tokio::fs::File::create(temp).await?;
        let mut writer = tokio::io::BufWriter::new(file);
        tokio::io::AsyncWriteExt::write_all(&mut writer, bytes).await?;
        tokio::io::AsyncWriteExt::flush(&mut writer).await?;
        writer.into_inner().sync_all().await
    }

    /// Moves `file` in as `info`'s bytes (over any copy: the same bytes by
    /// construction, so a delete racing an earlier upload is repaired), and
    /// writes its info unless it is there.
    async fn keep_file(&self, info: MediaInfo, file: &Path) -> Result<MediaInfo, MediaError> {
        if !super::is_media_id(&info.media_id) {
            return Err(MediaError::new(
                "not a media id",
                std::io::Error::other("bad id"),
            ));
        }
        let kept = self.read_info(&info.media_id).await?;
        tokio::fs::rename(file, self.data(&info.media_id))
            .await
            .map_err(|e| MediaError::new("cannot keep an upload", e))?;
        let info = match kept {
            Some(kept) => kept,
            None => {
                let json = serde_json::to_vec(&info).expect("media info serialises");
                self.write_durably(&self.meta(&info.media_id), &json)
                    .await
                    .map_err(|e| MediaError::new("cannot write a media info file", e))?;
                info
            }
        };
        self.sync_dir()
            .await
            .map_err(|e| MediaError::new("cannot sync the media directory", e))?;
        Ok(info)
    }

    async fn sync_dir(&self) -> std::io::Result<()> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all())
            .await
            .map_err(std::io::Error::other)?
    }
}

impl MediaStore for FileMediaStore {
    fn spool_dir(&self) -> &Path {
        &self.spool
    }

    fn keep(&self, info: MediaInfo, file: PathBuf) -> BoxFuture<'_, Result<MediaInfo, MediaError>> {
        Box::pin(async move {
            let kept = self.keep_file(info, &file).await;
            // Taken by the rename, or not wanted: never left in the spool.
            let _ = tokio::fs::remove_file(&file).await;
            kept
        })
    }

    fn info<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<MediaInfo>, MediaError>> {
        Box::pin(self.read_info(id))
    }

    fn open<'a>(
        &'a self,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Option<(MediaInfo, MediaBody)>, MediaError>> {
        Box::pin(async move {
            let Some(info) = self.read_info(id).await? else {
                return Ok(None);
            };
            let file = match tokio::fs::File::open(self.data(id)).await {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(MediaError::new("cannot open a media file", e)),
            };
            Ok(Some((info, chunks(file))))
        })
    }

    fn uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
    ) -> BoxFuture<'a, Result<Option<super::Uploaded>, MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(None);
            }
            match tokio::fs::read(self.upload_file(id, account)).await {
                Ok(bytes) => Ok(serde_json::from_slice(&bytes).ok()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(MediaError::new("cannot read a media upload record", e)),
            }
        })
    }

    fn set_uploaded<'a>(
        &'a self,
        id: &'a str,
        account: &'a str,
        upload: Option<super::Uploaded>,
    ) -> BoxFuture<'a, Result<(), MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(());
            }
            let path = self.upload_file(id, account);
            let result = match upload {
                Some(upload) => {
                    let json = serde_json::to_vec(&upload).expect("an upload serialises");
                    self.write_durably(&path, &json).await
                }
                None => match tokio::fs::remove_file(&path).await {
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    other => other,
                },
            };
            result.map_err(|e| MediaError::new("cannot write a media upload record", e))
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, MediaError>> {
        Box::pin(async move {
            if !super::is_media_id(id) {
                return Ok(false);
            }
            // The bytes first: an info left alone is repaired by the next
            // upload of the same bytes.
            let data = match tokio::fs::remove_file(self.data(id)).await {
                Ok(()) => true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
                Err(e) => return Err(MediaError::new("cannot delete a media file", e)),
            };
            match tokio::fs::remove_file(self.meta(id)).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(data),
                Err(e) => Err(MediaError::new("cannot delete a media info file", e)),
            }
        })
    }
}

/// A file read `CHUNK` bytes at a time.
fn chunks(file: tokio::fs::File) -> MediaBody {
    Box::pin(futures_util::stream::try_unfold(
        file,
        |mut file| async move {
            let mut buffer = vec![0u8; CHUNK];
            let read = tokio::io::AsyncReadExt::read(&mut file, &mut buffer).await?;
            if read == 0 {
                return Ok(None);
            }
            buffer.truncate(read);
            Ok(Some((Bytes::from(buffer), file)))
        },
    ))
}

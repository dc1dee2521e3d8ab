//! Media on the embedded default: uploads checked against WhatsApp's types
//! and sizes, kept by content per tenant, served and forgotten; sends that
//! refer to them by `mediaId`, uploaded once to the sending number and
//! reused, uploaded again when Meta no longer knows the id.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wiremock::ResponseTemplate;
use wiremock::matchers::body_string_contains;

use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, OTHER_KEY, TO, TestApp, pairs};

/// A PNG's signature and some bytes: WhatsApp checks types, Herald checks
/// the declared type.
fn png(len: usize) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend((0..len).map(|i| (i % 251) as u8));
    bytes
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn upload(app: &TestApp, key: &str, content_type: &str, bytes: Vec<u8>) -> (u16, Value) {
    let response = app
        .client
        .post(format!("{}/api/v1/media?filename=photo.png", app.address))
        .header("x-api-key", key)
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .expect("gateway answers");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `GET /api/v1/media/{id}` with `key`.
async fn get_media(app: &TestApp, id: &str, key: &str) -> reqwest::Response {
    app.client
        .get(format!("{}/api/v1/media/{id}", app.address))
        .header("x-api-key", key)
        .send()
        .await
        .expect("gateway answers")
}

/// Two tenants: `ops` in `acme`, `billing` in `globex`, on the deployment's
/// WhatsApp number, which answers sends and uploads.
async fn two_tenants(dir: &std::path::Path, whatsapp: &FakeWhatsApp) -> TestApp {
    let file = dir.join("tenants.toml");
    std::fs::write(
        &file,
        "[[tenant]]\nid = \"acme\"\nkeys = [\"ops\"]\n\n[[tenant]]\nid = \"globex\"\nkeys = [\"billing\"]\n",
    )
    .unwrap();
    let mut vars = whatsapp.vars();
    vars.push(("TENANTS_FILE", file.to_str().unwrap().to_owned()));
    vars.push(("DELIVERY_RETRY_BASE_MS", "20".to_owned()));
    vars.push(("DELIVERY_RETRY_MAX_MS", "50".to_owned()));
    TestApp::spawn_embedded(&dir.join("data"), &pairs(&vars)).await
}

async fn whatsapp_taking_media() -> FakeWhatsApp {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.MEDIA"))
        .mount(&whatsapp.server)
        .await;
    wa::media_endpoint()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "WA-MEDIA-1"})))
        .mount(&whatsapp.server)
        .await;
    whatsapp
}

#[tokio::test]
async fn an_upload_is_kept_by_content_per_tenant_served_and_forgotten() {
    let whatsapp = whatsapp_taking_media().await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_tenants(dir.path(), &whatsapp).await;
    let bytes = png(300_000);
    let (status, kept) = upload(&app, KEY, "image/png", bytes.clone()).await;
    assert_eq!(status, 201, "{kept}");
    assert_eq!(kept["sha256"], hex_sha256(&bytes));
    assert_eq!(kept["size"], bytes.len());
    assert_eq!(kept["mimeType"], "image/png");
    assert_eq!(kept["filename"], "photo.png");
    let id = kept["mediaId"].as_str().unwrap().to_owned();
    let (_, again) = upload(&app, KEY, "image/png", bytes.clone()).await;
    assert_eq!(again["mediaId"], id, "the same bytes, the same id");
    let (_, theirs) = upload(&app, OTHER_KEY, "image/png", bytes.clone()).await;
    assert_ne!(theirs["mediaId"], id, "another tenant's copy is its own");

    let path = format!("/api/v1/media/{id}");
    let served = get_media(&app, &id, KEY).await;
    assert_eq!(served.status(), 200);
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    assert_eq!(served.headers()["content-disposition"], "attachment");
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());
    let foreign = get_media(&app, &id, OTHER_KEY).await;
    assert_eq!(foreign.status(), 404, "another tenant cannot read it");
    assert_eq!(app.delete(&path, OTHER_KEY).await.0, 404, "nor delete it");
    assert_eq!(app.delete(&path, KEY).await.0, 204);
    assert_eq!(app.delete(&path, KEY).await.0, 404);
    assert_eq!(
        app.delete("/api/v1/media/..%2F..%2Fqueue.sqlite3", KEY)
            .await
            .0,
        404
    );
}

#[tokio::test]
async fn uploads_are_checked_against_whatsapps_types_and_sizes() {
    let whatsapp = whatsapp_taking_media().await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_tenants(dir.path(), &whatsapp).await;
    let (status, problem) = upload(&app, KEY, "image/gif", png(10)).await;
    assert_eq!(status, 415, "{problem}");
    assert_eq!(problem["code"], "media-type-not-accepted");
    // Over 5 MB for an image: refused from its Content-Length.
    let (status, problem) = upload(&app, KEY, "image/jpeg", vec![0u8; (5 << 20) + 1]).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["code"], "media-too-large");
    assert!(
        problem["detail"].as_str().unwrap().contains("5242880"),
        "{problem}"
    );
    // The same without a length (chunked): refused as it passes the limit.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..6).map(|_| Ok(vec![0u8; 1 << 20])).collect();
    let response = app
        .client
        .post(format!("{}/api/v1/media", app.address))
        .header("x-api-key", KEY)
        .header("content-type", "image/jpeg")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // A static sticker over 100 KB.
    let mut webp = b"RIFF\0\0\0\0WEBPVP8 ".to_vec();
    webp.resize(150 * 1024, 0);
    let (status, problem) = upload(&app, KEY, "image/webp", webp).await;
    assert_eq!(status, 413, "{problem}");
    // Nothing half-written is left behind.
    let incoming = dir.path().join("data/media/incoming");
    let left = std::fs::read_dir(&incoming).map_or(0, |d| d.count());
    assert_eq!(left, 0, "spooled uploads removed");
}

#[tokio::test]
async fn a_multipart_upload_takes_its_file_part() {
    let whatsapp = whatsapp_taking_media().await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_tenants(dir.path(), &whatsapp).await;
    let bytes = b"%PDF-1.7 invoice".to_vec();
    let form = reqwest::multipart::Form::new()
        .text("note", "ignored")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("invoice.pdf")
                .mime_str("application/pdf")
                .unwrap(),
        );
    let response = app
        .client
        .post(format!("{}/api/v1/media", app.address))
        .header("x-api-key", KEY)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let kept: Value = response.json().await.unwrap();
    assert_eq!(kept["filename"], "invoice.pdf");
    assert_eq!(kept["mimeType"], "application/pdf");
    assert_eq!(kept["sha256"], hex_sha256(&bytes));
    let empty = reqwest::multipart::Form::new().text("note", "no file");
    let response = app
        .client
        .post(format!("{}/api/v1/media", app.address))
        .header("x-api-key", KEY)
        .multipart(empty)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_send_by_media_id_uploads_once_and_reuses_it() {
    let whatsapp = whatsapp_taking_media().await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_tenants(dir.path(), &whatsapp).await;
    let bytes = png(50_000);
    let (_, kept) = upload(&app, KEY, "image/png", bytes.clone()).await;
    let id = kept["mediaId"].as_str().unwrap();
    for n in 0..2 {
        let sent = app
            .send_accepted(&json!({"to": TO, "image": {"mediaId": id, "caption": "receipt"}}))
            .await;
        app.wait_for_status(&sent, "submitted").await;
        let body = &whatsapp.bodies().await[n];
        assert_eq!(body["image"]["id"], "WA-MEDIA-1", "{body}");
        assert_eq!(body["image"]["caption"], "receipt");
        assert!(body["image"].get("mediaId").is_none(), "{body}");
    }
    let uploads = whatsapp.uploads().await;
    assert_eq!(uploads.len(), 1, "uploaded once, reused after");
    let upload = &uploads[0];
    let contains = |needle: &[u8]| upload.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"name=\"messaging_product\"") && contains(b"whatsapp"));
    assert!(contains(b"name=\"type\"") && contains(b"image/png"));
    assert!(contains(&bytes[..2000]), "the file's bytes are the part's");

    // An id the tenant does not have, and one of the wrong kind.
    let (_, theirs) = upload_of(&app, OTHER_KEY, &bytes).await;
    let (status, problem) = app
        .send(&json!({"to": TO, "image": {"mediaId": theirs}}))
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "image.mediaId");
    let (status, problem) = app
        .send(&json!({"to": TO, "document": {"mediaId": id}}))
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("image")
    );
}

async fn upload_of(app: &TestApp, key: &str, bytes: &[u8]) -> (u16, String) {
    let (status, kept) = upload(app, key, "image/png", bytes.to_vec()).await;
    (
        status,
        kept["mediaId"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test]
async fn an_upload_meta_no_longer_knows_or_older_than_29_days_is_uploaded_again() {
    let whatsapp = FakeWhatsApp::start().await;
    // WA-OLD is refused as unknown (Graph's code 100); anything else is sent.
    wa::send_endpoint()
        .and(body_string_contains("WA-OLD"))
        .respond_with(wa::graph_error(
            400,
            100,
            "Invalid parameter",
            "unknown media id",
        ))
        .with_priority(1)
        .mount(&whatsapp.server)
        .await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.MEDIA"))
        .with_priority(2)
        .mount(&whatsapp.server)
        .await;
    wa::media_endpoint()
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "WA-NEW"})))
        .mount(&whatsapp.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = two_tenants(dir.path(), &whatsapp).await;
    let (_, id) = upload_of(&app, KEY, &png(1000)).await;
    // A reuse Meta no longer knows: as if WA-OLD had been uploaded an hour ago.
    let record = dir
        .path()
        .join(format!("data/media/{id}.up-{}.json", wa::PHONE_NUMBER_ID));
    let an_hour_ago = chrono::Utc::now().timestamp_millis() - 3_600_000;
    std::fs::write(
        &record,
        json!({"providerId": "WA-OLD", "atMs": an_hour_ago}).to_string(),
    )
    .unwrap();
    let sent = app
        .send_accepted(&json!({"to": TO, "image": {"mediaId": id}}))
        .await;
    let view = app.wait_for_status(&sent, "submitted").await;
    let bodies = whatsapp.bodies().await;
    assert_eq!(bodies.last().unwrap()["image"]["id"], "WA-NEW", "{view}");
    assert_eq!(whatsapp.uploads().await.len(), 1);

    // An upload 30 days old is not reused.
    let month_ago = chrono::Utc::now().timestamp_millis() - 30 * 86_400_000;
    std::fs::write(
        &record,
        json!({"providerId": "WA-NEW", "atMs": month_ago}).to_string(),
    )
    .unwrap();
    let sent = app
        .send_accepted(&json!({"to": TO, "image": {"mediaId": id}}))
        .await;
    app.wait_for_status(&sent, "submitted").await;
    assert_eq!(
        whatsapp.uploads().await.len(),
        2,
        "uploaded again after 29 days"
    );
}

/// A new bucket in the emulator.
async fn bucket(aws: &crate::helpers::aws::Emulator) -> String {
    let name = crate::helpers::aws::unique_name("media").to_lowercase();
    let config = aws_sdk_s3::config::Builder::new()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .endpoint_url(&aws.endpoint)
        .force_path_style(true)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "test", "test", None, None, "test",
        ))
        .build();
    aws_sdk_s3::Client::from_conf(config)
        .create_bucket()
        .bucket(&name)
        .send()
        .await
        .expect("the emulator creates a bucket");
    name
}

#[tokio::test]
async fn with_sns_media_lives_in_s3_and_the_consumer_uploads_it_from_there() {
    let stack = crate::helpers::aws::SnsWithStatuses::create().await;
    let bucket = bucket(&stack.aws).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap().to_owned();
    let mut vars = stack.vars();
    vars.push(("MEDIA_BUCKET", bucket.as_str()));
    vars.push(("HERALD_DATA_DIR", data.as_str()));
    let gateway = TestApp::spawn_from_config(&crate::helpers::config_with(&vars)).await;
    let whatsapp = whatsapp_taking_media().await;
    let bytes = png(200_000);
    let (status, kept) = upload(&gateway, KEY, "image/png", bytes.clone()).await;
    assert_eq!(status, 201, "{kept}");
    assert_eq!(kept["sha256"], hex_sha256(&bytes));
    let id = kept["mediaId"].as_str().unwrap().to_owned();
    let (_, again) = upload(&gateway, KEY, "image/png", bytes.clone()).await;
    assert_eq!(again["mediaId"], id);
    // The same checks as on the embedded default.
    let (status, _) = upload(&gateway, KEY, "image/gif", png(10)).await;
    assert_eq!(status, 415);
    let (status, _) = upload(&gateway, KEY, "image/jpeg", vec![0u8; (5 << 20) + 1]).await;
    assert_eq!(status, 413);
    let (status, problem) = gateway
        .send(&json!({"to": TO, "image": {"mediaId": "m0123456789abcdef0123456789abcdef"}}))
        .await;
    assert_eq!(
        (status, &problem["errors"][0]["field"]),
        (400, &json!("image.mediaId"))
    );
    let served = get_media(&gateway, &id, KEY).await;
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.bytes().await.unwrap().as_ref(), bytes.as_slice());

    let mut consumer_vars = whatsapp.vars();
    consumer_vars.push(("MEDIA_BUCKET", bucket.clone()));
    let log = tempfile::NamedTempFile::new().unwrap();
    let child =
        crate::helpers::process::consumer(&stack.tq.queue_url, &stack.table, &consumer_vars, &log);
    for _ in 0..2 {
        let sent = gateway
            .send_accepted(&json!({"to": TO, "image": {"mediaId": id}}))
            .await;
        gateway.wait_for_status(&sent, "submitted").await;
    }
    child.kill();
    let bodies = whatsapp.bodies().await;
    assert!(
        bodies.iter().all(|b| b["image"]["id"] == "WA-MEDIA-1"),
        "{bodies:?}"
    );
    let uploads = whatsapp.uploads().await;
    assert_eq!(uploads.len(), 1, "uploaded once, from S3");
    assert!(uploads[0].windows(2000).any(|w| w == &bytes[..2000]));
    assert_eq!(
        gateway.delete(&format!("/api/v1/media/{id}"), KEY).await.0,
        204
    );
    assert_eq!(
        gateway.delete(&format!("/api/v1/media/{id}"), KEY).await.0,
        404
    );
}

mod inbound {
    use std::time::Duration;

    use serde_json::{Value, json};
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, ResponseTemplate};

    use crate::helpers::event_receiver::{self, EventReceiver};
    use crate::helpers::meta::{self, MetaSender};
    use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
    use crate::helpers::{KEY, TestApp, pairs};

    /// Graph's media lookup for `media_id`, pointing at a download on the fake.
    pub(super) async fn serve_media(
        whatsapp: &FakeWhatsApp,
        media_id: &str,
        download: ResponseTemplate,
    ) {
        let url = format!("{}/download/{media_id}", whatsapp.server.uri());
        Mock::given(method("GET"))
            .and(path(format!("/{}/{media_id}", wa::VERSION)))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "messaging_product": "whatsapp", "url": url, "mime_type": "image/jpeg",
                "sha256": "x", "file_size": "11", "id": media_id})))
            .mount(&whatsapp.server)
            .await;
        Mock::given(method("GET"))
            .and(path(format!("/download/{media_id}")))
            .and(header(
                "authorization",
                format!("Bearer {}", wa::TOKEN).as_str(),
            ))
            .respond_with(download)
            .mount(&whatsapp.server)
            .await;
    }

    async fn gateway(
        whatsapp: &FakeWhatsApp,
        receiver: &EventReceiver,
        dir: &std::path::Path,
    ) -> TestApp {
        let mut vars = whatsapp.vars();
        vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
        vars.push(("EVENTS_WEBHOOK_URL", receiver.url.clone()));
        vars.push(("EVENTS_WEBHOOK_SECRET", event_receiver::SECRET.to_owned()));
        vars.push(("DELIVERY_MAX_ATTEMPTS", "3".to_owned()));
        vars.push(("DELIVERY_RETRY_BASE_MS", "20".to_owned()));
        vars.push(("DELIVERY_RETRY_MAX_MS", "50".to_owned()));
        TestApp::spawn_embedded(dir, &pairs(&vars)).await
    }

    fn inbound_event<'a>(events: &'a [Value], wamid: &str) -> Option<&'a Value> {
        events
            .iter()
            .find(|e| e["type"] == "message.inbound" && e["providerMessageId"] == wamid)
    }

    #[tokio::test]
    async fn inbound_media_is_kept_and_its_event_waits_for_it_not_the_webhook() {
        let whatsapp = FakeWhatsApp::start().await;
        let photo = b"\xff\xd8\xffJPEG-BYTES".to_vec();
        // A slow download: the webhook must not wait for it.
        let slow = ResponseTemplate::new(200)
            .set_body_bytes(photo.clone())
            .insert_header("content-type", "image/jpeg")
            .set_delay(Duration::from_millis(1500));
        serve_media(&whatsapp, "MEDIA-IN-1", slow).await;
        let receiver = EventReceiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let app = gateway(&whatsapp, &receiver, dir.path()).await;
        let image = meta::inbound(
            "wamid.in.photo",
            "image",
            json!({"id": "MEDIA-IN-1", "mime_type": "image/jpeg", "sha256": "x"}),
        );
        let started = std::time::Instant::now();
        let status = MetaSender::new(&app.address)
            .post(&meta::payload(vec![], vec![image]))
            .await;
        assert_eq!(status, 200);
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "the 200 did not wait"
        );
        assert!(
            inbound_event(&receiver.events(), "wamid.in.photo").is_none(),
            "not before its media"
        );
        let events = receiver
            .wait_for(Duration::from_secs(15), |e| {
                inbound_event(e, "wamid.in.photo").is_some()
            })
            .await;
        let event = inbound_event(&events, "wamid.in.photo").unwrap();
        let media = &event["media"];
        assert_eq!(media["mimeType"], "image/jpeg", "{event}");
        assert_eq!(media["size"], photo.len(), "{event}");
        let id = media["mediaId"].as_str().unwrap();
        let kept = super::get_media(&app, id, KEY).await;
        assert_eq!(kept.status(), 200);
        assert_eq!(kept.bytes().await.unwrap().as_ref(), photo.as_slice());
    }

    #[tokio::test]
    async fn a_download_that_keeps_failing_still_tells_the_application() {
        let whatsapp = FakeWhatsApp::start().await;
        serve_media(&whatsapp, "MEDIA-IN-2", ResponseTemplate::new(500)).await;
        let receiver = EventReceiver::start().await;
        let dir = tempfile::tempdir().unwrap();
        let app = gateway(&whatsapp, &receiver, dir.path()).await;
        let image = meta::inbound(
            "wamid.in.lost",
            "image",
            json!({"id": "MEDIA-IN-2", "mime_type": "image/jpeg"}),
        );
        assert_eq!(
            MetaSender::new(&app.address)
                .post(&meta::payload(vec![], vec![image]))
                .await,
            200
        );
        let events = receiver
            .wait_for(Duration::from_secs(15), |e| {
                inbound_event(e, "wamid.in.lost").is_some()
            })
            .await;
        let event = inbound_event(&events, "wamid.in.lost").unwrap();
        assert!(event["media"]["error"].is_string(), "{event}");
        let downloads = whatsapp
            .server
            .received_requests()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.url.path() == "/download/MEDIA-IN-2")
            .count();
        assert_eq!(downloads, 3, "DELIVERY_MAX_ATTEMPTS tries");
    }
}

/// SNS with statuses, events, `MEDIA_BUCKET` and the WhatsApp webhook: a
/// gateway, and a consumer with `consumer_extra`.
struct SnsInbound {
    stack: crate::helpers::aws::SnsWithStatuses,
    gateway: TestApp,
    events_queue: String,
    /// Killed when the test ends.
    _consumer: crate::helpers::process::KilledOnDrop,
    _log: tempfile::NamedTempFile,
    _dir: tempfile::TempDir,
}

impl SnsInbound {
    async fn start(whatsapp: &FakeWhatsApp, consumer_extra: &[(&'static str, &str)]) -> Self {
        let stack = crate::helpers::aws::SnsWithStatuses::create().await;
        let bucket = bucket(&stack.aws).await;
        let (events_topic, events_queue) = stack.aws.events_topic().await;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap().to_owned();
        let mut vars = stack.vars();
        vars.extend([
            ("MEDIA_BUCKET", bucket.as_str()),
            ("HERALD_DATA_DIR", data.as_str()),
            ("EVENTS_TOPIC_ARN", events_topic.as_str()),
        ]);
        vars.extend(crate::helpers::meta::webhook_vars());
        let whatsapp_vars = whatsapp.vars();
        vars.extend(whatsapp_vars.iter().map(|(k, v)| (*k, v.as_str())));
        let gateway = TestApp::spawn_from_config(&crate::helpers::config_with(&vars)).await;
        let mut consumer_vars = whatsapp.vars();
        consumer_vars.push(("MEDIA_BUCKET", bucket.clone()));
        consumer_vars.push(("EVENTS_TOPIC_ARN", events_topic.clone()));
        consumer_vars.extend(consumer_extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
        let log = tempfile::NamedTempFile::new().unwrap();
        let (queue, table) = (&stack.tq.queue_url, &stack.table);
        let consumer = crate::helpers::process::consumer(queue, table, &consumer_vars, &log);
        Self {
            stack,
            gateway,
            events_queue,
            _consumer: consumer,
            _log: log,
            _dir: dir,
        }
    }

    /// Posts an inbound image `wamid` with `media_id` to the webhook, and
    /// returns its `message.inbound` event from the events topic.
    async fn event_for(&self, wamid: &str, media_id: &str) -> Value {
        use crate::helpers::meta::{self, MetaSender};
        let image = meta::inbound(
            wamid,
            "image",
            json!({"id": media_id, "mime_type": "image/jpeg"}),
        );
        let post = MetaSender::new(&self.gateway.address);
        assert_eq!(post.post(&meta::payload(vec![], vec![image])).await, 200);
        let received = self
            .stack
            .aws
            .drain(&self.events_queue, 1, std::time::Duration::from_secs(30))
            .await;
        received
            .iter()
            .filter_map(|m| serde_json::from_str::<Value>(m.body().unwrap_or_default()).ok())
            .find(|e| e["providerMessageId"] == wamid)
            .unwrap_or_else(|| panic!("no inbound event for {wamid}"))
    }
}

#[tokio::test]
async fn with_sns_inbound_media_is_kept_by_the_consumer_before_its_event() {
    let whatsapp = FakeWhatsApp::start().await;
    let photo = b"\xff\xd8\xffSNS-JPEG".to_vec();
    let download = ResponseTemplate::new(200).set_body_bytes(photo.clone());
    inbound::serve_media(&whatsapp, "MEDIA-SNS-1", download).await;
    let sns = SnsInbound::start(&whatsapp, &[]).await;
    let event = sns.event_for("wamid.in.sns", "MEDIA-SNS-1").await;
    let id = event["media"]["mediaId"]
        .as_str()
        .unwrap_or_else(|| panic!("{event}"));
    assert_eq!(event["media"]["size"], photo.len());
    let kept = get_media(&sns.gateway, id, KEY).await;
    assert_eq!(kept.status(), 200);
    assert_eq!(kept.bytes().await.unwrap().as_ref(), photo.as_slice());
}

#[tokio::test]
async fn with_sns_a_download_that_keeps_failing_still_tells_the_application() {
    let whatsapp = FakeWhatsApp::start().await;
    inbound::serve_media(&whatsapp, "MEDIA-SNS-2", ResponseTemplate::new(500)).await;
    let fast_attempts = [
        ("DELIVERY_MAX_ATTEMPTS", "2"),
        ("DELIVERY_RETRY_BASE_MS", "20"),
        ("DELIVERY_RETRY_MAX_MS", "50"),
    ];
    let sns = SnsInbound::start(&whatsapp, &fast_attempts).await;
    let event = sns.event_for("wamid.in.sns.lost", "MEDIA-SNS-2").await;
    assert!(event["media"]["error"].is_string(), "{event}");
}

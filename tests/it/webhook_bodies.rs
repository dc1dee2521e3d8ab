//! Webhook bodies are read only after the route is known to be enabled and
//! the request carries its authentication header, and all the bodies being
//! read hold at most `WEBHOOK_BODIES_MAX_BYTES` together, a body that does
//! not arrive within 5 s of its reservation being refused. (Before: 200
//! unsigned 4 MiB POSTs to disabled routes raised the gateway's memory by
//! 840–1,020 MiB, each 404 sent only after the whole body.)

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::infobip;
use crate::helpers::meta;
use crate::helpers::{TestApp, eventually};

/// Opens a connection and sends only the head of a POST to `path` declaring
/// a `length`-byte body, with `headers`; the open connection is returned
/// with the status the gateway answered before any of the body was sent,
/// or `None` when it was still waiting for the body after `wait`.
async fn head_only(
    address: &str,
    path: &str,
    length: usize,
    headers: &[(&str, &str)],
    wait: Duration,
) -> (TcpStream, Option<u16>) {
    let host = address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(host).await.unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 64];
    let status = match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n >= 12 => std::str::from_utf8(&buf[9..12])
            .ok()
            .and_then(|s| s.parse().ok()),
        _ => None,
    };
    (stream, status)
}

async fn gateway(extra: &[(&str, &str)]) -> (tempfile::TempDir, TestApp) {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), extra).await;
    (dir, app)
}

#[tokio::test]
async fn disabled_routes_and_unauthenticated_requests_are_refused_before_the_body() {
    let big = 4 << 20;
    let (_dir, bare) = gateway(&[]).await;
    for path in [
        "/webhooks/whatsapp",
        "/webhooks/infobip",
        "/webhooks/infobip/inbound",
    ] {
        let (_open, status) =
            head_only(&bare.address, path, big, &[], Duration::from_secs(10)).await;
        assert_eq!(status, Some(404), "{path}: answered before the body");
    }
    let mut vars: Vec<(&str, &str)> = meta::webhook_vars().to_vec();
    vars.push(("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET));
    let (_dir, configured) = gateway(&vars).await;
    for path in [
        "/webhooks/whatsapp",
        "/webhooks/infobip",
        "/webhooks/infobip/inbound",
    ] {
        let (_open, status) =
            head_only(&configured.address, path, big, &[], Duration::from_secs(10)).await;
        assert_eq!(
            status,
            Some(401),
            "{path}: unsigned, answered before the body"
        );
    }
}

#[tokio::test]
async fn webhook_bodies_in_flight_share_a_bounded_budget() {
    let (_dir, app) = gateway(&[
        ("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET),
        ("WEBHOOK_MAX_BODY_BYTES", "4096"),
        ("WEBHOOK_BODIES_MAX_BYTES", "8192"),
    ])
    .await;
    let signed = [("x-infobip-signature", "00")];
    // Two slow senders hold the whole budget (their bodies never come).
    let mut held = Vec::new();
    for _ in 0..2 {
        let (stream, status) = head_only(
            &app.address,
            "/webhooks/infobip",
            4096,
            &signed,
            Duration::from_millis(500),
        )
        .await;
        assert_eq!(status, None, "a signed request is read");
        held.push(stream);
    }
    // A third waits for room, then is told to come back.
    let client = reqwest::Client::new();
    let refused = client
        .post(format!("{}/webhooks/infobip", app.address))
        .header("content-type", "application/json")
        .header("x-infobip-signature", "00")
        .body(vec![b' '; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let problem: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(problem["code"], "webhooks-busy");
    // A body that trickles (here: never comes) gets 408 after the read
    // deadline, and its room is given back.
    for mut stream in held {
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(15), stream.read(&mut buf))
            .await
            .expect("an answer before the body")
            .unwrap();
        assert_eq!(
            &buf[9..12.min(n)],
            b"408",
            "{}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    let sender = infobip::InfobipSender::new(&app.address);
    eventually(
        "the budget given back",
        Duration::from_secs(10),
        async || (sender.reports(vec![]).await == 200).then_some(()),
    )
    .await;
}

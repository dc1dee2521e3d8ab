//! `GET /metrics` of the real gateway binary (its own process, so its own
//! recorder) after a known sequence of sends, refusals, deliveries and
//! webhooks: the counts, and that no label carries a number, key or id.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::json;

use crate::helpers::infobip;
use crate::helpers::process::GatewayProcess;
use crate::helpers::{KEY, eventually};

/// Series name and labels → value.
type Series = BTreeMap<(String, BTreeMap<String, String>), f64>;

fn parse(text: &str) -> Series {
    let mut series = Series::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (head, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match head.split_once('{') {
            None => (head.to_owned(), BTreeMap::new()),
            Some((name, rest)) => {
                let labels = rest
                    .trim_end_matches('}')
                    .split("\",")
                    .filter(|p| !p.is_empty())
                    .map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap();
                        (k.to_owned(), v.trim_matches('"').to_owned())
                    })
                    .collect();
                (name.to_owned(), labels)
            }
        };
        series.insert((name, labels), value.parse().unwrap());
    }
    series
}

fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    series
        .get(&(name.to_owned(), labels.clone()))
        .copied()
        .unwrap_or_else(|| {
            panic!(
                "no {name}{labels:?} in {:#?}",
                series.keys().filter(|(n, _)| n == name).collect::<Vec<_>>()
            )
        })
}

#[tokio::test]
async fn metrics_count_what_happened_and_carry_no_personal_data() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().join("data");
    let gateway = GatewayProcess::start(
        &data_dir,
        &[("INFOBIP_WEBHOOK_SECRET", infobip::WEBHOOK_SECRET)],
    );
    let client = reqwest::Client::new();
    let send = |body: serde_json::Value, key: &'static str| {
        client
            .post(format!("{}/api/v1/send", gateway.address))
            .header("x-api-key", key)
            .json(&body)
            .send()
    };
    let mut ids = Vec::new();
    for i in 0..3 {
        let r = send(
            json!({"to": format!("+1415555012{i}"), "message": "hi"}),
            KEY,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
    }
    for i in 0..2 {
        let r = send(
            json!({"channel": "sms", "to": format!("+4179302672{i}"), "message": "hi"}),
            KEY,
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 202);
        ids.push(
            r.json::<serde_json::Value>().await.unwrap()["messageId"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        send(json!({"to": "+14155550123"}), KEY)
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(
        send(
            json!({"to": "+14155550123", "message": "x"}),
            "wrong-key-0123456789"
        )
        .await
        .unwrap()
        .status(),
        401
    );
    // Five console deliveries.
    for _ in 0..5 {
        gateway
            .next_stdout_line(Duration::from_secs(10))
            .expect("a console delivery");
    }
    let metrics = || client.get(format!("{}/metrics", gateway.address)).send();
    // The five deliveries recorded (their statuses written) and settled before the reports.
    eventually(
        "five deliveries recorded",
        Duration::from_secs(10),
        async || {
            let series = parse(&metrics().await.unwrap().text().await.unwrap());
            let count = |name: &str, labels: &[(&str, &str)]| {
                let labels = labels
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                series.get(&(name.to_owned(), labels)).copied()
            };
            let submitted = |channel| {
                count(
                    "herald_status_transitions_total",
                    &[("channel", channel), ("status", "submitted")],
                )
            };
            // Settled too: the queue is empty once each delivery's
            // settlement, written after its status, has committed.
            (submitted("whatsapp") == Some(3.0)
                && submitted("sms") == Some(2.0)
                && count("herald_queue_depth", &[]) == Some(0.0))
            .then_some(())
        },
    )
    .await;
    // Infobip reports: delivered for the first SMS, operator for the second; one unsigned.
    let sender = infobip::InfobipSender::new(&gateway.address);
    assert_eq!(
        sender
            .reports(vec![
                infobip::delivered(&ids[0]),
                infobip::on_operator(&ids[1])
            ])
            .await,
        200
    );
    assert_eq!(
        sender
            .post_to("/webhooks/infobip", vec![], Some("00"))
            .await,
        403
    );

    let text = metrics().await.unwrap().text().await.unwrap();
    let series = parse(&text);
    let requests = "herald_http_requests_total";
    assert_eq!(
        value(
            &series,
            requests,
            &[("route", "/api/v1/send"), ("status", "202")]
        ),
        5.0
    );
    assert_eq!(
        value(
            &series,
            requests,
            &[("route", "/api/v1/send"), ("status", "400")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            requests,
            &[("route", "/api/v1/send"), ("status", "401")]
        ),
        1.0
    );
    let deliveries = "herald_deliveries_total";
    assert_eq!(
        value(
            &series,
            deliveries,
            &[
                ("tenant", "default"),
                ("channel", "whatsapp"),
                ("outcome", "delivered"),
                ("code", "none")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            &series,
            deliveries,
            &[
                ("tenant", "default"),
                ("channel", "sms"),
                ("outcome", "delivered"),
                ("code", "none")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(&series, "herald_publishes_total", &[("outcome", "ok")]),
        5.0
    );
    let accepted = "herald_messages_accepted_total";
    assert_eq!(
        value(
            &series,
            accepted,
            &[("tenant", "default"), ("channel", "whatsapp")]
        ) + value(
            &series,
            accepted,
            &[("tenant", "default"), ("channel", "sms")]
        ),
        5.0
    );
    let webhooks = "herald_webhook_reports_total";
    assert_eq!(
        value(
            &series,
            webhooks,
            &[("source", "infobip"), ("outcome", "recorded")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &series,
            webhooks,
            &[("source", "infobip"), ("outcome", "signature-invalid")]
        ),
        1.0
    );
    let transitions = "herald_status_transitions_total";
    assert_eq!(
        value(
            &series,
            transitions,
            &[("channel", "sms"), ("status", "delivered")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            transitions,
            &[("channel", "sms"), ("status", "sent")]
        ),
        1.0
    );
    assert_eq!(
        value(
            &series,
            transitions,
            &[("channel", "whatsapp"), ("status", "submitted")]
        ),
        3.0
    );
    assert_eq!(value(&series, "herald_queue_depth", &[]), 0.0);
    assert!(
        series
            .keys()
            .any(|(n, _)| n == "herald_http_request_duration_seconds_bucket")
    );
    assert!(
        series
            .keys()
            .any(|(n, _)| n == "herald_delivery_duration_seconds_bucket")
    );

    // No label value is a phone number, a key or an id (`le` is a bucket bound).
    for (name, labels) in series.keys() {
        for (k, v) in labels.iter().filter(|(k, _)| *k != "le") {
            let digits = v.chars().filter(char::is_ascii_digit).count();
            assert!(
                !v.contains('+')
                    && digits < 6
                    && !v.contains(KEY)
                    && uuid::Uuid::try_parse(v).is_err(),
                "{name} has the label {k}={v:?}"
            );
        }
    }

    // METRICS=off: no route.
    let data = tempfile::tempdir().unwrap();
    let off = GatewayProcess::start(&data.path().join("data"), &[("METRICS", "off")]);
    let r = client
        .get(format!("{}/metrics", off.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

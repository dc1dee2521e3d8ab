//! A batch of SMS on the embedded default: opt-outs and channels are
//! applied entry by entry, and only the accepted entries reach Infobip.

use std::time::Duration;

use serde_json::json;

use crate::helpers::infobip::{self, FakeInfobip};
use crate::helpers::{KEY, TO};

#[tokio::test]
async fn a_batch_of_sms_applies_opt_outs_and_channels_per_entry() {
    let data = tempfile::tempdir().unwrap();
    let fake = FakeInfobip::accepting().await;
    let app = infobip::gateway(&data, &fake, None, None).await;
    let r = app
        .client
        .put(format!("{}/api/v1/opt-outs/%2B14155550123", app.address))
        .header("x-api-key", KEY)
        .json(&json!({"channels": ["sms"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let answer = app
        .post_batch(
            &json!({"defaults": {"channel": "sms", "message": "Spring sale: 20% off €"},
            "messages": [
                {"to": TO},
                {"to": "+14155550124"},
                {"to": "+14155550125", "sender": "!!"},
                {"to": "+14155550126", "channel": "whatsapp"},
                {"to": "+14155550127", "message": "😀 only for you"}]}),
        )
        .await;
    assert_eq!(
        (answer["accepted"].as_u64(), answer["rejected"].as_u64()),
        (Some(2), Some(3))
    );
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "rejected");
    assert_eq!(results[0]["code"], "recipient-opted-out");
    assert_eq!(results[1]["status"], "accepted");
    assert_eq!(
        results[1]["sms"],
        json!({"encoding": "GSM-7", "characters": 22, "segments": 1})
    );
    assert_eq!(results[2]["errors"][0]["field"], "sender");
    assert_eq!(results[3]["code"], "channel-not-configured");
    assert_eq!(results[4]["sms"]["encoding"], "UCS-2");
    let bodies = fake.wait_for_requests(2).await;
    // Not a wait for an outcome: time for a refused entry to be sent, if one were.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(fake.bodies().await.len(), 2);
    let mut to: Vec<&str> = bodies
        .iter()
        .map(|b| b["messages"][0]["destinations"][0]["to"].as_str().unwrap())
        .collect();
    to.sort_unstable();
    assert_eq!(to, ["14155550124", "14155550127"]);
}

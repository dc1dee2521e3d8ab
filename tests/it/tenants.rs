//! Tenants on the embedded default (`TENANTS_FILE`): each sends only from
//! its own numbers and senders, through its own token; consent, statuses and
//! dead letters are its own; delivery is shared fairly; old databases keep
//! their opt-outs under `default`.

use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, ResponseTemplate};

use crate::helpers::infobip::{self, FakeInfobip, InfobipSender};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, OTHER_KEY, TO, TestApp, config_with, eventually, pairs};

/// A second key of acme, and globex's admin key.
pub(crate) const ACME_KEY: &str = "acme-second-key-0123456789";
pub(crate) const ROOT_KEY: &str = "root-admin-key-0123456789";
pub(crate) const ACME_NUMBER: &str = "2222222222";
pub(crate) const ACME_TOKEN: &str = "acme-wa-token-not-real";

/// acme (keys `ops`, `acme-ops`) has its own WhatsApp number and SMS
/// sender; globex (keys `billing`, `root`) uses the deployment's.
pub(crate) const TWO_TENANTS: &str = r#"
[[tenant]]
id = "acme"
keys = ["ops", "acme-ops"]
whatsapp = [{ phone_number_id = "2222222222", token = "env:ACME_WA_TOKEN", max_mps = 50 }]
sms_senders = ["ACME"]

[[tenant]]
id = "globex"
keys = ["billing", "root"]
"#;

pub(crate) struct Tenants {
    pub(crate) app: TestApp,
    pub(crate) whatsapp: FakeWhatsApp,
    pub(crate) infobip: FakeInfobip,
    /// `TENANTS_FILE`.
    pub(crate) file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Tenants {
    /// A gateway on the embedded default with `file` as `TENANTS_FILE`, the
    /// fake Graph API answering the deployment's number and acme's, and the
    /// fake Infobip.
    pub(crate) async fn start(file: &str, extra: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tenants_file = dir.path().join("tenants.toml");
        std::fs::write(&tenants_file, file).unwrap();
        let whatsapp = FakeWhatsApp::start().await;
        wa::send_endpoint()
            .respond_with(wa::success("14155550123", "wamid.DEPLOYMENT"))
            .mount(&whatsapp.server)
            .await;
        Mock::given(method("POST"))
            .and(path(format!("/{}/{ACME_NUMBER}/messages", wa::VERSION)))
            .and(header(
                "authorization",
                format!("Bearer {ACME_TOKEN}").as_str(),
            ))
            .respond_with(wa::success("14155550123", "wamid.ACME"))
            .mount(&whatsapp.server)
            .await;
        let infobip = FakeInfobip::accepting().await;
        let data = dir.path().join("data");
        let keys = format!("ops:{KEY},billing:{OTHER_KEY},acme-ops:{ACME_KEY},root:{ROOT_KEY}");
        let mut vars: Vec<(&str, String)> = vec![
            ("HERALD_DATA_DIR", data.to_str().unwrap().to_owned()),
            ("TENANTS_FILE", tenants_file.to_str().unwrap().to_owned()),
            ("API_KEYS", keys),
            ("ADMIN_KEY_IDS", "root".into()),
            ("ACME_WA_TOKEN", ACME_TOKEN.into()),
            ("DELIVERY_RETRY_BASE_MS", "20".into()),
            ("DELIVERY_RETRY_MAX_MS", "50".into()),
        ];
        vars.extend(whatsapp.vars());
        vars.extend(infobip.vars(infobip::PUBLIC));
        vars.extend(meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
        let mut all = pairs(&vars);
        all.extend_from_slice(extra);
        let app = TestApp::spawn_from_config(&config_with(&all)).await;
        Self {
            app,
            whatsapp,
            infobip,
            file: tenants_file,
            _dir: dir,
        }
    }

    pub(crate) async fn call(
        &self,
        verb: reqwest::Method,
        path: &str,
        key: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut request = self
            .app
            .client
            .request(verb, format!("{}{path}", self.app.address))
            .header("x-api-key", key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("gateway answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub(crate) async fn send(&self, key: &str, body: &Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, "/api/v1/send", key, Some(body))
            .await
    }

    pub(crate) async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, key, None).await
    }

    /// The numbers the fake Graph API was asked to send from, in order.
    pub(crate) async fn graph_numbers(&self) -> Vec<String> {
        self.whatsapp
            .server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| {
                r.url
                    .path()
                    .split('/')
                    .nth(2)
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect()
    }

    /// Waits until the fake Graph API has `n` requests; their bodies.
    pub(crate) async fn wait_for_graph(&self, n: usize) -> Vec<Value> {
        eventually(
            &format!("{n} requests to the Graph API"),
            Duration::from_secs(15),
            async || Some(self.whatsapp.bodies().await).filter(|b| b.len() >= n),
        )
        .await
    }
}

pub(crate) fn refused_field(answer: &Value) -> &str {
    answer["errors"][0]["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn each_tenant_sends_only_from_its_own_numbers_and_senders() {
    let t = Tenants::start(TWO_TENANTS, &[]).await;
    // acme's first number with acme's token; globex's from the deployment's.
    let (code, _) = t.send(KEY, &json!({"to": TO, "message": "acme"})).await;
    assert_eq!(code, 202);
    t.wait_for_graph(1).await;
    let (code, _) = t
        .send(OTHER_KEY, &json!({"to": TO, "message": "globex"}))
        .await;
    assert_eq!(code, 202);
    t.wait_for_graph(2).await;
    assert_eq!(t.graph_numbers().await, [ACME_NUMBER, wa::PHONE_NUMBER_ID]);

    // Another tenant's number, or the deployment's for acme: 422 naming `from`.
    for (key, from) in [(KEY, wa::PHONE_NUMBER_ID), (OTHER_KEY, ACME_NUMBER)] {
        let (code, answer) = t
            .send(key, &json!({"to": TO, "message": "x", "from": from}))
            .await;
        assert_eq!(code, 422, "{answer}");
        assert_eq!(answer["code"], "sender-not-allowed");
        assert_eq!(refused_field(&answer), "from");
    }
    // Not a number's id, not a sender at all: 400 naming `from`.
    let (code, answer) = t
        .send(
            KEY,
            &json!({"to": TO, "message": "x", "from": "+1 (415) 555"}),
        )
        .await;
    assert_eq!(
        (code, answer["errors"][0]["field"].as_str()),
        (400, Some("from"))
    );
    // SMS: acme's sender by default; globex may not use it, by `sender` or `from`.
    let (code, _) = t
        .send(
            KEY,
            &json!({"channel": "sms", "to": TO, "message": "acme sms"}),
        )
        .await;
    assert_eq!(code, 202);
    let sent = t.infobip.wait_for_requests(1).await;
    assert_eq!(sent[0]["messages"][0]["sender"], "ACME");
    let (code, answer) = t
        .send(
            OTHER_KEY,
            &json!({"channel": "sms", "to": TO, "message": "x", "sender": "ACME"}),
        )
        .await;
    assert_eq!((code, refused_field(&answer)), (422, "sender"));
    let (code, answer) = t
        .send(
            KEY,
            &json!({"to": TO, "message": "x",
            "fallback": {"channel": "sms", "message": "x", "sender": "GLOBEX"}}),
        )
        .await;
    assert_eq!((code, refused_field(&answer)), (422, "fallback.sender"));
    // A batch entry is refused on its own; the others go.
    let (code, answer) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/send/batch",
            OTHER_KEY,
            Some(&json!({"messages": [
                {"to": TO, "message": "ok"},
                {"to": TO, "message": "not ours", "from": ACME_NUMBER},
            ]})),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["results"][0]["status"], "accepted");
    assert_eq!(answer["results"][1]["code"], "sender-not-allowed");
    assert_eq!(answer["results"][1]["errors"][0]["field"], "from");
}

#[tokio::test]
async fn consent_belongs_to_the_tenant_whose_number_was_written_to() {
    let t = Tenants::start(TWO_TENANTS, &[]).await;
    // STOP to acme's WhatsApp number: acme may no longer write; globex may.
    let mut payload = meta::payload(
        vec![],
        vec![meta::inbound("wamid.STOP", "text", json!({"body": "STOP"}))],
    );
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!(ACME_NUMBER);
    assert_eq!(MetaSender::new(&t.app.address).post(&payload).await, 200);
    let number = format!("+{}", meta::CUSTOMER);
    let msg = json!({"to": number, "message": "hi"});
    let (code, answer) = t.send(KEY, &msg).await;
    assert_eq!(
        (code, answer["code"].as_str()),
        (422, Some("recipient-opted-out"))
    );
    assert_eq!(t.send(OTHER_KEY, &msg).await.0, 202);

    // The opt-out API shows and changes the caller's tenant only.
    let path = format!("/api/v1/opt-outs/%2B{}", meta::CUSTOMER);
    let (code, acme) = t.get(ACME_KEY, &path).await;
    assert_eq!((code, acme["tenant"].as_str()), (200, Some("acme")));
    assert_eq!(t.get(OTHER_KEY, &path).await.0, 404);
    assert_eq!(
        t.get(OTHER_KEY, &format!("{path}?tenant=acme")).await.0,
        404
    );
    let (code, _) = t
        .call(reqwest::Method::DELETE, &path, OTHER_KEY, None)
        .await;
    assert_eq!(code, 204);
    assert_eq!(
        t.get(KEY, &path).await.0,
        200,
        "globex's DELETE left acme's STOP"
    );
    // An admin names the tenant.
    let (code, seen) = t.get(ROOT_KEY, &format!("{path}?tenant=acme")).await;
    assert_eq!((code, seen["tenant"].as_str()), (200, Some("acme")));
    assert_eq!(
        t.get(ROOT_KEY, &format!("{path}?tenant=nobody")).await.0,
        400
    );

    // An SMS STOP to a number no tenant names (the deployment's) belongs to
    // every tenant that uses the deployment's senders: globex, not acme.
    let sender = InfobipSender::new(&t.app.address);
    assert_eq!(
        sender
            .inbound(vec![infobip::inbound("mo-1", "14155550123", "STOP")])
            .await,
        200
    );
    let sms = json!({"channel": "sms", "to": TO, "message": "hi"});
    assert_eq!(
        t.send(OTHER_KEY, &sms).await.1["code"],
        "recipient-opted-out"
    );
    assert_eq!(t.send(KEY, &sms).await.0, 202);
}

#[tokio::test]
async fn a_tenants_keys_share_its_messages_and_see_no_others() {
    let t = Tenants::start(TWO_TENANTS, &[("DELIVERY_MAX_ATTEMPTS", "1")]).await;
    let (_, sent) = t.send(KEY, &json!({"to": TO, "message": "acme"})).await;
    let id = sent["messageId"].as_str().unwrap();
    let path = format!("/api/v1/messages/{id}");
    assert_eq!(t.get(ACME_KEY, &path).await.0, 200, "another key of acme");
    assert_eq!(t.get(OTHER_KEY, &path).await.0, 404, "globex");
    assert_eq!(t.get(ROOT_KEY, &path).await.0, 200, "an admin");

    // Dead letters: a WhatsApp number that only fails (acme's second
    // attempt is none: one attempt) is dead-lettered for acme's eyes only.
    t.whatsapp.server.reset().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&t.whatsapp.server)
        .await;
    let (_, failed) = t.send(KEY, &json!({"to": TO, "message": "doomed"})).await;
    let doomed = failed["messageId"].as_str().unwrap().to_owned();
    let listed = |key: &'static str| {
        let t = &t;
        async move {
            let (_, list) = t.get(key, "/api/v1/dead-letters").await;
            list["deadLetters"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|d| d["id"].as_str().map(str::to_owned))
                .collect::<Vec<_>>()
        }
    };
    eventually("the dead letter", Duration::from_secs(15), async || {
        listed(ACME_KEY).await.contains(&doomed).then_some(())
    })
    .await;
    assert!(!listed(OTHER_KEY).await.contains(&doomed));
    let redrive = format!("/api/v1/dead-letters/{doomed}/redrive");
    let (code, _) = t
        .call(reqwest::Method::POST, &redrive, OTHER_KEY, None)
        .await;
    assert_eq!(code, 404, "globex cannot redrive acme's");
    assert!(listed(ROOT_KEY).await.contains(&doomed));
}

/// Two tenants on the deployment's one number, one delivery at a time.
const SHARED_NUMBER: &str = r#"
[[tenant]]
id = "campaigns"
keys = ["ops"]

[[tenant]]
id = "otp"
keys = ["billing", "acme-ops", "root"]
"#;

#[tokio::test]
async fn one_tenants_batch_does_not_hold_another_tenants_send_back() {
    let t = Tenants::start(
        SHARED_NUMBER,
        &[("DELIVERY_CONCURRENCY", "2"), ("WHATSAPP_MAX_MPS", "200")],
    )
    .await;
    let batch: Vec<Value> = (0..300)
        .map(|i| json!({"to": format!("+1415555{i:04}"), "message": "campaign"}))
        .collect();
    let (code, _) = t
        .call(
            reqwest::Method::POST,
            "/api/v1/send/batch",
            KEY,
            Some(&json!({ "messages": batch })),
        )
        .await;
    assert_eq!(code, 200);
    // The other tenant's single send, and then the campaign's own single
    // (`normal`) send, each overtake what is left of the batch (`bulk`).
    let overtakes = |key: &'static str, text: &'static str| {
        let t = &t;
        async move {
            let before = t.whatsapp.bodies().await.len();
            assert_eq!(
                t.send(key, &json!({"to": TO, "message": text})).await.0,
                202
            );
            let bodies = eventually(text, Duration::from_secs(15), async || {
                let b = t.whatsapp.bodies().await;
                b.iter().any(|b| b["text"]["body"] == text).then_some(b)
            })
            .await;
            let at = bodies
                .iter()
                .position(|b| b["text"]["body"] == text)
                .unwrap();
            (before, at)
        }
    };
    let (before, at) = overtakes(OTHER_KEY, "otp").await;
    assert!(
        before < 250,
        "the batch was still being delivered ({before} sent)"
    );
    assert!(
        at <= before + 3,
        "the otp went {} after it was accepted",
        at - before
    );
    let (before, at) = overtakes(KEY, "normal").await;
    assert!(
        at <= before + 3,
        "the normal send went {} after",
        at - before
    );
}

#[tokio::test]
async fn an_older_database_keeps_its_opt_outs_and_envelopes_under_default() {
    let dir = tempfile::tempdir().unwrap();
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.OLD"))
        .mount(&whatsapp.server)
        .await;
    // The stage-two schema: opt-outs by number alone, envelopes without a
    // tenant or priority, the lease's index by due time.
    let envelope = crate::helpers::text_envelope("queued before the upgrade");
    {
        let conn = rusqlite::Connection::open(dir.path().join("queue.sqlite3")).unwrap();
        conn.execute_batch(
            "CREATE TABLE opt_outs (number TEXT PRIMARY KEY, channels TEXT NOT NULL,
                 source TEXT NOT NULL, updated_at INTEGER NOT NULL, ordering TEXT);
             INSERT INTO opt_outs VALUES ('+14155550199', '[\"sms\"]', 'api', 1, NULL);
             CREATE TABLE envelopes (id TEXT PRIMARY KEY, body TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0, due_at INTEGER NOT NULL,
                 leased_until INTEGER, created_at INTEGER NOT NULL, last_error TEXT,
                 api_key_id TEXT);
             CREATE INDEX envelopes_due ON envelopes (due_at);",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO envelopes (id, body, due_at, created_at, api_key_id) VALUES (?1, ?2, 0, 0, 'ops')",
            [envelope.queue_id(), envelope.to_json().replace(",\"tenant\":\"default\"", "")],
        )
        .unwrap();
    }
    let mut vars = whatsapp.vars();
    vars.push(("DELIVERY", "whatsapp".into()));
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&vars)).await;
    let opt_out = app.get_json("/api/v1/opt-outs/%2B14155550199", KEY).await;
    assert_eq!(opt_out["tenant"], "default");
    assert_eq!(opt_out["channels"], json!(["sms"]));
    eventually(
        "the old envelope delivered",
        Duration::from_secs(15),
        async || {
            let bodies = whatsapp.bodies().await;
            bodies
                .iter()
                .any(|b| b["text"]["body"] == "queued before the upgrade")
                .then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn opt_outs_from_before_the_tenants_file_hold_for_tenants_on_the_deployments_number() {
    // A stage-two database: a STOP to the deployment's number, on both
    // channels, recorded before there were tenants.
    let old = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(old.path().join("queue.sqlite3")).unwrap();
    conn.execute_batch(
        "CREATE TABLE opt_outs (number TEXT PRIMARY KEY, channels TEXT NOT NULL,
             source TEXT NOT NULL, updated_at INTEGER NOT NULL, ordering TEXT);
         INSERT INTO opt_outs VALUES ('+14155550199', '[\"sms\",\"whatsapp\"]', 'inbound', 1, NULL);",
    )
    .unwrap();
    drop(conn);
    let data = old.path().to_str().unwrap();
    let t = Tenants::start(TWO_TENANTS, &[("HERALD_DATA_DIR", data)]).await;
    let to = "+14155550199";
    for channel in ["whatsapp", "sms"] {
        // globex sends from the deployment's number and sender: the person
        // said STOP to them.
        let (status, answer) = t
            .send(
                OTHER_KEY,
                &json!({"to": to, "channel": channel, "message": "hi"}),
            )
            .await;
        assert_eq!(
            (status, answer["code"].as_str()),
            (422, Some("recipient-opted-out")),
            "{channel}: {answer}"
        );
        // acme sends from its own: never written to.
        let (status, answer) = t
            .send(KEY, &json!({"to": to, "channel": channel, "message": "hi"}))
            .await;
        assert_eq!(status, 202, "{channel}: {answer}");
    }
}

#[test]
fn a_tenants_file_that_lets_one_tenant_act_as_another_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenants.toml");
    let refuse = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let vars = [
            ("API_KEYS", format!("ops:{KEY},billing:{OTHER_KEY}")),
            ("TENANTS_FILE", file.to_str().unwrap().to_owned()),
            ("LITERAL", "EAAGliteral".to_owned()),
        ];
        let e = herald::config::GatewayConfig::from_lookup(&|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        })
        .expect_err("refused");
        e.to_string()
    };
    let literal = refuse(
        "[[tenant]]\nid = \"a\"\nkeys = [\"ops\", \"billing\"]\nwhatsapp = [{ phone_number_id = \"1\", token = \"EAAGliteral\" }]\n",
    );
    assert!(literal.starts_with("TENANTS_FILE is invalid"), "{literal}");
    assert!(literal.contains("whatsapp[0]: token must be a reference"));
    assert!(!literal.contains("EAAGliteral"));
    let twice = refuse(
        "[[tenant]]\nid = \"a\"\nkeys = [\"ops\"]\n[[tenant]]\nid = \"b\"\nkeys = [\"ops\", \"billing\"]\n",
    );
    assert!(twice.contains("key \"ops\" is in two tenants"), "{twice}");
}

#[tokio::test]
async fn a_tenant_marks_read_only_what_its_own_numbers_received() {
    let t = Tenants::start(TWO_TENANTS, &[]).await;
    Mock::given(method("POST"))
        .and(path(format!("/{}/{ACME_NUMBER}/messages", wa::VERSION)))
        .and(wiremock::matchers::body_partial_json(
            json!({"status": "read"}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"success": true})))
        .with_priority(1)
        .mount(&t.whatsapp.server)
        .await;
    let mut payload = meta::payload(
        vec![],
        vec![meta::inbound(
            "wamid.TO-ACME",
            "text",
            json!({"body": "hi"}),
        )],
    );
    payload["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = json!(ACME_NUMBER);
    assert_eq!(MetaSender::new(&t.app.address).post(&payload).await, 200);
    let read = "/api/v1/inbound/wamid.TO-ACME/read";
    assert_eq!(
        t.call(reqwest::Method::POST, read, OTHER_KEY, None).await.0,
        404
    );
    assert_eq!(
        t.call(reqwest::Method::POST, read, ACME_KEY, None).await.0,
        204
    );
    assert_eq!(
        t.graph_numbers().await,
        [ACME_NUMBER],
        "from acme's number, with its token"
    );
}

//! Templates checked before sending: synced from a fake Graph API that pages
//! like Meta's, kept in the store, changed by signed status webhooks, and
//! every refusal at the edge (`template-not-found`, `template-not-approved`,
//! parameters per component), on the embedded default and with DynamoDB.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::aws::SnsWithStatuses;
use crate::helpers::meta::MetaSender;
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, TO, TestApp, eventually, pairs};

pub(crate) const WABA: &str = "102290129340398";

/// Graph's example: a text header, two positional body parameters, a quick
/// reply and a dynamic URL button.
pub(crate) fn order_update() -> Value {
    json!({"id": "1192339204654487", "name": "order_update", "language": "en_US", "status": "APPROVED",
        "category": "UTILITY", "parameter_format": "POSITIONAL",
        "components": [
            {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}", "example": {"header_text": ["A-42"]}},
            {"type": "BODY", "text": "Hi {{1}}, code {{2}}", "example": {"body_text": [["Mark", "FALL25"]]}},
            {"type": "FOOTER", "text": "Reply STOP to opt out"},
            {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop promotions"},
                {"type": "URL", "text": "Track", "url": "https://x.example/t/{{1}}", "example": ["https://x.example/t/A-42"]}]}]})
}

fn welcome() -> Value {
    json!({"id": "2", "name": "welcome", "language": "en", "status": "APPROVED", "category": "MARKETING",
        "parameter_format": "NAMED",
        "components": [{"type": "BODY", "text": "Hi {{first_name}}!"}]})
}

fn paused() -> Value {
    json!({"id": "3", "name": "spring_sale", "language": "en", "status": "PAUSED", "category": "MARKETING",
        "components": [{"type": "BODY", "text": "Sale"}]})
}

/// Three pages, the middle one empty (Graph may send that and go on).
pub(crate) fn pages() -> Vec<Vec<Value>> {
    vec![vec![order_update(), welcome()], vec![], vec![paused()]]
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

/// A send of order_update that fits it.
pub(crate) fn good_order() -> Value {
    json!({"to": TO, "template": {"name": "order_update", "language": "en_US", "components": [
        {"type": "header", "parameters": [text("A-42")]},
        {"type": "body", "parameters": [text("Mark"), text("FALL25")]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]},
    ]}})
}

/// Waits until the gateway lists `count` templates.
pub(crate) async fn wait_for_templates(app: &TestApp, count: usize) -> Value {
    eventually(
        &format!("{count} templates listed"),
        Duration::from_secs(20),
        async || {
            let listed = app.get_json("/api/v1/templates", KEY).await;
            (listed["templates"].as_array().map(Vec::len) == Some(count)).then_some(listed)
        },
    )
    .await
}

async fn send(app: &TestApp, body: &Value) -> (u16, Value) {
    let response = app.post_message(body).await;
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// A signed `message_template_status_update` for `name` in `language`.
pub(crate) fn status_webhook(name: &str, language: &str, event: &str) -> Value {
    json!({"object": "whatsapp_business_account", "entry": [{"id": WABA, "time": 1_751_247_548, "changes": [{
        "field": "message_template_status_update",
        "value": {"event": event, "message_template_id": 1_192_339_204_654_487_u64,
            "message_template_name": name, "message_template_language": language,
            "reason": "NONE", "message_template_category": "UTILITY"}}]}]})
}

/// Every refusal at the edge of `app`, synced with [`pages`].
pub(crate) async fn every_refusal_holds(app: &TestApp) {
    let mut unknown = good_order();
    unknown["template"]["name"] = json!("no_such_template");
    let (status, answer) = send(app, &unknown).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("template-not-found")),
        "{answer}"
    );
    let mut language = good_order();
    language["template"]["language"] = json!("pt_BR");
    assert_eq!(send(app, &language).await.1["code"], "template-not-found");

    let sale = json!({"to": TO, "template": {"name": "spring_sale", "language": "en"}});
    let (status, answer) = send(app, &sale).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("template-not-approved")),
        "{answer}"
    );
    assert_eq!(answer["templateStatus"], "PAUSED");

    let mut short = good_order();
    short["template"]["components"][1]["parameters"] = json!([text("Mark")]);
    let (status, answer) = send(app, &short).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (400, Some("invalid-fields")),
        "{answer}"
    );
    assert_eq!(
        answer["errors"][0]["field"],
        "template.components[1].parameters"
    );

    let mut no_button = good_order();
    no_button["template"]["components"]
        .as_array_mut()
        .unwrap()
        .pop();
    let (status, answer) = send(app, &no_button).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["errors"][0]["field"], "template.components");

    let named = |name: &str| {
        json!({"to": TO, "template": {"name": "welcome", "language": "en", "components": [
        {"type": "body", "parameters": [{"type": "text", "parameter_name": name, "text": "Ana"}]}]}})
    };
    let (status, answer) = send(app, &named("name")).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(
        answer["errors"][0]["field"],
        "template.components[0].parameters"
    );
    assert_eq!(send(app, &named("first_name")).await.0, 202);
}

/// Every refusal, and a send that fits with the exact Graph body it becomes.
pub(crate) async fn every_rule_holds(app: &TestApp, whatsapp: &FakeWhatsApp) {
    every_refusal_holds(app).await;
    let (status, answer) = send(app, &good_order()).await;
    assert_eq!(status, 202, "{answer}");
    let sent = eventually("the template sent", Duration::from_secs(15), async || {
        whatsapp
            .bodies()
            .await
            .into_iter()
            .find(|b| b["template"]["name"] == "order_update")
    })
    .await;
    assert_eq!(
        sent,
        json!({"messaging_product": "whatsapp", "recipient_type": "individual", "to": TO.trim_start_matches('+'),
            "type": "template", "template": {"name": "order_update",
                "language": {"policy": "deterministic", "code": "en_US"}, "components": [
                {"type": "header", "parameters": [text("A-42")]},
                {"type": "body", "parameters": [text("Mark"), text("FALL25")]},
                {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]}]}})
    );
}

fn template_vars(
    whatsapp: &FakeWhatsApp,
    extra: &[(&'static str, &str)],
) -> Vec<(&'static str, String)> {
    let mut vars = whatsapp.vars();
    vars.push(("WHATSAPP_BUSINESS_ACCOUNT_ID", WABA.into()));
    vars.extend(crate::helpers::meta::webhook_vars().map(|(k, v)| (k, v.to_owned())));
    vars.extend(extra.iter().map(|(k, v)| (*k, (*v).to_owned())));
    vars
}

#[tokio::test]
async fn templates_are_synced_through_every_page_and_checked_on_the_embedded_default() {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.T"))
        .mount(&whatsapp.server)
        .await;
    whatsapp.serve_templates(WABA, &pages()).await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&template_vars(&whatsapp, &[]))).await;
    let listed = wait_for_templates(&app, 3).await;
    assert_eq!(
        whatsapp.template_requests().await,
        3,
        "one request per page"
    );
    let order = listed["templates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "order_update")
        .unwrap();
    assert_eq!(order["status"], "APPROVED");
    assert_eq!(order["parameters"]["body"], json!(["1", "2"]));
    assert!(order["syncedAt"].is_string());
    assert_eq!(listed["accounts"][0]["stale"], false);
    let health = app.get_json("/health", KEY).await;
    assert_eq!(health["checks"]["templates"]["status"], "ok", "{health}");

    every_rule_holds(&app, &whatsapp).await;

    // A batch: each entry checked, one look at the cache for all.
    let mut unknown = good_order();
    unknown["template"]["name"] = json!("nope");
    let mut short = good_order();
    short["template"]["components"][1]["parameters"] = json!([]);
    let batch = app
        .client
        .post(format!("{}/api/v1/send/batch", app.address))
        .header("x-api-key", KEY)
        .json(&json!({"messages": [good_order(), unknown, short]}))
        .send()
        .await
        .unwrap();
    let answer: Value = batch.json().await.unwrap();
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "accepted", "{answer}");
    assert_eq!(results[1]["code"], "template-not-found", "{answer}");
    assert_eq!(results[1]["errors"][0]["field"], "template.name");
    assert_eq!(
        results[2]["errors"][0]["field"],
        "template.components[1].parameters"
    );

    // A status webhook takes effect at once, without a sync.
    let meta = MetaSender::new(&app.address);
    assert_eq!(
        meta.post(&status_webhook("order_update", "en_US", "PAUSED"))
            .await,
        200
    );
    let (status, answer) = send(&app, &good_order()).await;
    assert_eq!(
        (status, answer["templateStatus"].as_str()),
        (422, Some("PAUSED")),
        "{answer}"
    );
    assert_eq!(
        meta.post(&status_webhook("order_update", "en_US", "APPROVED"))
            .await,
        200
    );
    assert_eq!(send(&app, &good_order()).await.0, 202);
    // Approved again (perhaps edited): its old parameters are not held
    // against a send until it is listed again.
    let mut three = good_order();
    three["template"]["components"][1]["parameters"] = json!([text("a"), text("b"), text("c")]);
    assert_eq!(send(&app, &three).await.0, 202);
    // Another account's webhook is not this deployment's business.
    let mut foreign = status_webhook("their_template", "en", "APPROVED");
    foreign["entry"][0]["id"] = json!("999");
    assert_eq!(meta.post(&foreign).await, 200);
    assert_eq!(
        app.get_json("/api/v1/templates", KEY).await["templates"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    assert_eq!(
        whatsapp.template_requests().await,
        3,
        "no listing but the first: asked-for listings wait RESYNC_EVERY (10 min) after the last"
    );
}

#[tokio::test]
async fn a_restarted_gateway_checks_from_the_store_before_its_first_sync() {
    let whatsapp = FakeWhatsApp::start().await;
    whatsapp.serve_templates(WABA, &pages()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // The binary syncs, then dies without a chance to flush anything.
    let vars = template_vars(&whatsapp, &[]);
    let first = crate::helpers::process::GatewayProcess::start(&data, &pairs(&vars));
    let client = reqwest::Client::new();
    eventually("the binary's sync", Duration::from_secs(20), async || {
        let listed: Value = client
            .get(format!("{}/api/v1/templates", first.address))
            .header("x-api-key", KEY)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        (listed["templates"].as_array()?.len() == 3).then_some(())
    })
    .await;
    first.kill_hard();
    // The same database, and a Graph API that no longer answers.
    let gone = FakeWhatsApp::start().await;
    let app = TestApp::spawn_embedded(&data, &pairs(&template_vars(&gone, &[]))).await;
    wait_for_templates(&app, 3).await;
    let sale = json!({"to": TO, "template": {"name": "spring_sale", "language": "en"}});
    assert_eq!(send(&app, &sale).await.1["code"], "template-not-approved");
}

#[tokio::test]
async fn without_a_sync_sends_go_unchecked_and_health_says_the_cache_is_stale() {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.T"))
        .mount(&whatsapp.server)
        .await;
    // The listing fails: Meta's rate limit (code 4).
    wiremock::Mock::given(wiremock::matchers::method("GET"))
        .respond_with(wiremock::ResponseTemplate::new(400).set_body_json(json!({"error": {
            "message": "(#4) Application request limit reached", "type": "OAuthException", "code": 4}})))
        .mount(&whatsapp.server)
        .await;
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &pairs(&template_vars(&whatsapp, &[]))).await;
    let health = eventually(
        "the failed sync shown",
        Duration::from_secs(10),
        async || {
            let health = app.get_json("/health", KEY).await;
            health["checks"]["templates"]["detail"]["accounts"][0]["lastError"]
                .is_string()
                .then_some(health)
        },
    )
    .await;
    assert_eq!(
        health["status"], "ok",
        "a stale cache does not make the gateway unready"
    );
    assert_eq!(health["checks"]["templates"]["status"], "stale");
    assert!(
        !health.to_string().contains(wa::TOKEN),
        "the token never reaches /health"
    );
    let mut unknown = good_order();
    unknown["template"]["name"] = json!("not_synced");
    assert_eq!(send(&app, &unknown).await.0, 202, "unchecked, not refused");
}

#[tokio::test]
async fn templates_are_synced_once_for_the_fleet_and_kept_in_dynamodb() {
    let stack = SnsWithStatuses::create().await;
    let whatsapp = FakeWhatsApp::start().await;
    whatsapp.serve_templates(WABA, &pages()).await;
    let fleet = |whatsapp: &FakeWhatsApp| template_vars(whatsapp, &stack.vars());
    let first =
        TestApp::spawn_from_config(&crate::helpers::config_with(&pairs(&fleet(&whatsapp)))).await;
    wait_for_templates(&first, 3).await;
    let second =
        TestApp::spawn_from_config(&crate::helpers::config_with(&pairs(&fleet(&whatsapp)))).await;
    wait_for_templates(&second, 3).await;
    // Its first turn has come: it found the first gateway holding the listing.
    eventually(
        "the second gateway's turn",
        Duration::from_secs(20),
        async || {
            let health = second.get_json("/health", KEY).await;
            health["checks"]["templates"]["detail"]["accounts"][0]["checkedAt"]
                .is_string()
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        whatsapp.template_requests().await,
        3,
        "one listing (three pages) for the fleet: the second gateway read the table"
    );
    // A third, whose Graph API would fail, checks from the table.
    let failing = FakeWhatsApp::start().await;
    let third =
        TestApp::spawn_from_config(&crate::helpers::config_with(&pairs(&fleet(&failing)))).await;
    wait_for_templates(&third, 3).await;
    every_refusal_holds(&third).await;
    assert_eq!(send(&third, &good_order()).await.0, 202);
    // A status webhook to one gateway is in the table at once, and the
    // gateway that took it refuses the template now.
    let meta = MetaSender::new(&first.address);
    assert_eq!(
        meta.post(&status_webhook("order_update", "en_US", "DISABLED"))
            .await,
        200
    );
    let (status, answer) = send(&first, &good_order()).await;
    assert_eq!(
        (status, answer["templateStatus"].as_str()),
        (422, Some("DISABLED")),
        "{answer}"
    );
}

#[tokio::test]
async fn each_tenant_is_checked_against_its_own_numbers_account_and_sees_only_it() {
    use crate::tenants::{ACME_TOKEN, ROOT_KEY, TWO_TENANTS, Tenants};
    let file = TWO_TENANTS.replace("max_mps = 50 }", "max_mps = 50, waba_id = \"4455\" }");
    let t = Tenants::start(&file, &[]).await;
    t.whatsapp
        .serve_templates_for("4455", ACME_TOKEN, &pages())
        .await;
    let listed = eventually(
        "acme's account listed",
        Duration::from_secs(20),
        async || {
            let (_, listed) = t.get(KEY, "/api/v1/templates").await;
            (listed["templates"].as_array()?.len() == 3).then_some(listed)
        },
    )
    .await;
    assert_eq!(
        listed["accounts"],
        json!([{"wabaId": "4455", "syncedAt": listed["accounts"][0]["syncedAt"], "stale": false}])
    );
    let mut unknown = good_order();
    unknown["template"]["name"] = json!("no_such_template");
    // acme (`ops`) sends from its own number: checked.
    let (status, answer) = t.send(KEY, &unknown).await;
    assert_eq!(
        (status, answer["code"].as_str()),
        (422, Some("template-not-found")),
        "{answer}"
    );
    // globex sends from the deployment's number, which names no account: unchecked.
    let (status, answer) = t.send(crate::helpers::OTHER_KEY, &unknown).await;
    assert_eq!(status, 202, "{answer}");
    // globex sees none of acme's templates; an admin sees them all.
    let (_, theirs) = t.get(crate::helpers::OTHER_KEY, "/api/v1/templates").await;
    assert_eq!(theirs, json!({"templates": [], "accounts": []}));
    let (_, all) = t.get(ROOT_KEY, "/api/v1/templates").await;
    assert_eq!(all["templates"].as_array().map(Vec::len), Some(3));
}

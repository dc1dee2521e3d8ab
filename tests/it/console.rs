//! The operator's console (`GET /console`) in headless Chromium: sign in,
//! follow a message sent through the API to `delivered` in the list and in
//! its timeline without reloading, redrive a dead letter from the page;
//! the key in neither a URL nor a cookie, no CSP violation, readable at
//! 375 px. A screenshot is kept in `target/test-artefacts/console.png`.

use serde_json::{Value, json};
use wiremock::matchers::body_string_contains;

use crate::helpers::browser::{Browser, artefact};
use crate::helpers::meta::{self, MetaSender};
use crate::helpers::whatsapp::{self as wa, FakeWhatsApp};
use crate::helpers::{KEY, TO, TestApp, pairs};

const WAMID: &str = "wamid.CONSOLE";

/// Collects CSP violations from the first script on: the test reads them at the end.
const WATCH_CSP: &str = "window.__violations = [];
    document.addEventListener('securitypolicyviolation',
        e => window.__violations.push(e.violatedDirective + ' ' + e.blockedURI));";

async fn whatsapp() -> FakeWhatsApp {
    let whatsapp = FakeWhatsApp::start().await;
    wa::send_endpoint()
        .and(body_string_contains("bounce"))
        .respond_with(wa::undeliverable())
        .with_priority(1)
        .mount(&whatsapp.server)
        .await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", WAMID))
        .with_priority(2)
        .mount(&whatsapp.server)
        .await;
    whatsapp
}

fn row(id: &str) -> String {
    format!("document.querySelector('#messages tr[data-id=\"{id}\"]')")
}

async fn sign_in(page: &mut Browser, app: &TestApp) {
    page.before_each_page(WATCH_CSP).await;
    page.goto(&format!("{}/console", app.address)).await;
    page.wait_for("document.getElementById('api-key')", "the sign-in form")
        .await;
    page.eval(&format!(
        "document.getElementById('api-key').value = {}; document.getElementById('sign-in').click()",
        json!(KEY)
    ))
    .await;
    page.wait_for(
        "!document.getElementById('view-messages').hidden",
        "the messages view after signing in",
    )
    .await;
    page.eval("window.__notReloaded = true").await;
}

/// The message reaches `delivered` in the list and in its open timeline,
/// by the page's live refresh alone.
async fn follow_to_delivered(page: &mut Browser, app: &TestApp) {
    let id = app
        .send_accepted(&json!({"to": TO, "message": "Your order has shipped"}))
        .await;
    app.wait_for_status(&id, "submitted").await;
    page.wait_for(&row(&id), "the new message's row").await;
    page.click(&format!("#messages tr[data-id=\"{id}\"] button.open"))
        .await;
    page.wait_for(
        "document.querySelector('#timeline-history li[data-status=\"submitted\"]')",
        "the timeline",
    )
    .await;
    let webhook = meta::payload(
        vec![meta::status(
            WAMID,
            "delivered",
            chrono::Utc::now().timestamp(),
        )],
        vec![],
    );
    assert_eq!(MetaSender::new(&app.address).post(&webhook).await, 200);
    page.wait_for(
        &format!(
            "{}?.querySelector('.status')?.textContent.trim() === 'delivered'",
            row(&id)
        ),
        "the row to say delivered",
    )
    .await;
    page.wait_for(
        "document.querySelector('#timeline-history li[data-status=\"delivered\"]')",
        "delivered in the timeline",
    )
    .await;
    assert_eq!(
        page.eval("window.__notReloaded === true").await,
        json!(true),
        "the page reloaded"
    );
}

/// A message the provider refuses is dead-lettered; the operator redrives it from the page.
async fn redrive_from_the_page(page: &mut Browser, app: &TestApp, whatsapp: &FakeWhatsApp) {
    let id = app
        .send_accepted(&json!({"to": TO, "message": "bounce"}))
        .await;
    app.wait_for_status(&id, "failed").await;
    whatsapp.server.reset().await;
    wa::send_endpoint()
        .respond_with(wa::success("14155550123", "wamid.REDRIVEN"))
        .mount(&whatsapp.server)
        .await;
    page.click("#nav-dead-letters").await;
    let dead = format!("#dead-letters tr[data-id=\"{id}\"]");
    page.click(&format!("{dead} button.redrive")).await;
    page.wait_for(
        &format!("!document.querySelector('{}')", dead.replace('\'', "\\'")),
        "the redriven dead letter to leave the list",
    )
    .await;
    let view = app.wait_for_status(&id, "submitted").await;
    let statuses: Vec<&str> = view["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap())
        .collect();
    assert!(statuses.contains(&"redriven"), "{view}");
}

/// The views are reached by keyboard alone: Tab to a view's button, Enter.
async fn keyboard_reaches_the_views(page: &mut Browser) {
    // From the top of the page: the skip link, the views' buttons.
    page.eval("document.activeElement.blur(); window.scrollTo(0, 0)")
        .await;
    let mut reached = false;
    for _ in 0..40 {
        page.press("Tab").await;
        if page.eval("document.activeElement.id").await == json!("nav-templates") {
            reached = true;
            break;
        }
    }
    assert!(reached, "Tab never reached the templates button");
    let visible = page
        .eval("getComputedStyle(document.activeElement).outlineStyle")
        .await;
    assert_ne!(
        visible,
        json!("none"),
        "the focused button shows no outline"
    );
    page.press("Enter").await;
    page.wait_for(
        "!document.getElementById('view-templates').hidden",
        "the templates view, opened by Enter",
    )
    .await;
    page.wait_for(
        "!document.getElementById('templates-empty').hidden",
        "the templates (none here) read from the API",
    )
    .await;
}

/// A number's window and opt-out, read and changed from the page: the
/// opt-out saved there is the API's, and removing it (two clicks) clears it.
async fn contacts_and_opt_outs(page: &mut Browser, app: &TestApp) {
    page.click("#nav-contacts").await;
    page.eval(&format!(
        "document.getElementById('contact-number').value = {}; document.getElementById('contact-lookup').click()",
        json!(TO)
    ))
    .await;
    let current = "document.getElementById('optout-current').textContent";
    page.wait_for(
        &format!(
            "!document.getElementById('contact-result').hidden && {current}.includes('nothing')"
        ),
        "the contact, opted out of nothing",
    )
    .await;
    page.eval("document.getElementById('optout-sms').checked = true")
        .await;
    page.click("#optout-save").await;
    page.wait_for(&format!("{current}.includes('sms')"), "the saved opt-out")
        .await;
    let path = format!("/api/v1/opt-outs/{}", TO.replace('+', "%2B"));
    let saved = app.get_json(&path, KEY).await;
    assert_eq!(saved["channels"], json!(["sms"]), "{saved}");
    page.click("#optout-remove").await;
    page.click("#optout-remove").await;
    page.wait_for(
        &format!("{current}.includes('nothing')"),
        "the opt-out removed",
    )
    .await;
}

/// The key is in session storage only: no URL, no cookie, no local storage.
async fn key_stays_in_the_tab(page: &mut Browser) {
    let href = page.eval("location.href").await;
    assert!(!href.as_str().unwrap().contains(KEY), "{href}");
    assert_eq!(page.cookies().await, json!([]), "cookies");
    assert_eq!(page.eval("document.cookie").await, json!(""));
    assert_eq!(page.eval("localStorage.length").await, json!(0));
    let stored = page
        .eval("JSON.stringify(Object.values(sessionStorage))")
        .await;
    assert!(stored.as_str().unwrap().contains(KEY), "{stored}");
    let history = page
        .eval("JSON.stringify(performance.getEntriesByType('resource').map(e => e.name))")
        .await;
    assert!(
        !history.as_str().unwrap().contains(KEY),
        "a request URL held the key: {history}"
    );
}

#[tokio::test]
async fn the_console_follows_a_message_to_delivered_and_redrives_a_dead_letter() {
    let whatsapp = whatsapp().await;
    let dir = tempfile::tempdir().unwrap();
    let whatsapp_vars = whatsapp.vars();
    let mut vars = pairs(&whatsapp_vars);
    vars.extend(meta::webhook_vars());
    vars.extend([
        ("DELIVERY_RETRY_BASE_MS", "20"),
        ("DELIVERY_RETRY_MAX_MS", "100"),
    ]);
    let app = TestApp::spawn_embedded(dir.path(), &vars).await;
    let mut page = Browser::launch(1280, 900).await;

    sign_in(&mut page, &app).await;
    follow_to_delivered(&mut page, &app).await;
    // Delivery health: the webhook that just reported, and when.
    let health: Value = app.get("/health").await.json().await.unwrap();
    assert!(
        health["checks"]["webhooks"]["detail"]["lastSeen"]["whatsapp"].is_string(),
        "{health}"
    );
    page.click("#nav-health").await;
    page.wait_for(
        "document.getElementById('health').textContent.includes('lastSeen') || document.getElementById('health').textContent.includes('Last seen')",
        "the webhooks' last-seen times",
    )
    .await;
    page.click("#nav-messages").await;
    page.wait_for("document.querySelector('#chart rect')", "the chart's bars")
        .await;
    page.set_width(1280, 1500, false).await;
    page.screenshot(&artefact("console.png")).await;
    redrive_from_the_page(&mut page, &app, &whatsapp).await;
    contacts_and_opt_outs(&mut page, &app).await;
    key_stays_in_the_tab(&mut page).await;
    keyboard_reaches_the_views(&mut page).await;

    // A phone's width: nothing wider than the screen.
    page.set_width(375, 800, true).await;
    page.click("#nav-messages").await;
    let width: Value = page.eval("document.documentElement.scrollWidth").await;
    assert!(
        width.as_i64().unwrap() <= 375,
        "the page is {width} px wide at 375"
    );
    page.screenshot(&artefact("console-375.png")).await;

    let violations = page.eval("JSON.stringify(window.__violations)").await;
    assert_eq!(violations, json!("[]"), "CSP violations");
}

/// The page and its modules come from the binary with a strict policy.
#[tokio::test]
async fn the_console_is_served_from_the_binary_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_embedded(dir.path(), &[]).await;
    let page = app.get("/console").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "an external reference"
    );
    assert!(
        !html.contains("<script>") && !html.contains(" onclick="),
        "inline script"
    );
    for asset in ["app.js", "api.js", "views.js", "chart.js", "console.css"] {
        let r = app.get(&format!("/console/{asset}")).await;
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    assert_eq!(app.get("/console/../Cargo.toml").await.status(), 404);
    assert_eq!(app.get("/console/nope.js").await.status(), 404);
}

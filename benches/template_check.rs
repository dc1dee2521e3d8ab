//! What checking a template send costs the gateway: the same `POST
//! /api/v1/send` of a template through the whole router (authentication,
//! validation, admission, envelope, a publisher that only counts), once with
//! no account configured (unchecked) and once against a synced account of
//! 250 templates (checked), then the check alone. Run with `cargo bench
//! --bench template_check`; the last line is the ratio of the two medians
//! (the bar: ≤ 1.10).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Body;
use criterion::Criterion;
use herald::config::GatewayConfig;
use herald::contract::Envelope;
use herald::gateway::{AppState, router};
use herald::publisher::{BoxFuture, HealthCheck, PublishError, PublishReceipt, Publisher};
use herald::templates::Template;
use herald::templates::store::TemplateStore;
use serde_json::{Value, json};
use tower::ServiceExt;

/// The allocator `herald-gateway` ships with: the request path costs here
/// what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "bench-key-0123456789abcdef";
const WABA: &str = "102290129340398";

/// Takes every envelope and keeps a count: the gateway's own work is what
/// is measured.
#[derive(Debug, Default)]
struct Counting(AtomicU64);

impl Publisher for Counting {
    fn publish<'a>(
        &'a self,
        _: &'a Envelope,
    ) -> BoxFuture<'a, Result<PublishReceipt, PublishError>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {
            Ok(PublishReceipt {
                queue_message_id: None,
            })
        })
    }

    fn check_health(&self) -> BoxFuture<'_, HealthCheck> {
        Box::pin(async {
            HealthCheck {
                name: "counting",
                healthy: true,
                detail: json!({}),
            }
        })
    }
}

fn config(waba: bool) -> GatewayConfig {
    let mut vars = vec![
        ("API_KEYS", format!("ops:{KEY}")),
        ("WHATSAPP_ACCESS_TOKEN", "bench".to_owned()),
        ("WHATSAPP_PHONE_NUMBER_ID", "106540352242922".to_owned()),
        ("WHATSAPP_API_BASE_URL", "http://127.0.0.1:9".to_owned()),
        ("METRICS", "off".to_owned()),
    ];
    if waba {
        vars.push(("WHATSAPP_BUSINESS_ACCOUNT_ID", WABA.to_owned()));
    }
    GatewayConfig::from_lookup(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("bench configuration is valid")
}

/// An account as large as Meta allows (250 names), `order_update` among them.
fn account() -> Vec<Template> {
    (0..250)
        .map(|i| {
            let name = if i == 125 { "order_update".to_owned() } else { format!("template_{i}") };
            let graph = json!({"name": name, "language": "en_US", "status": "APPROVED", "category": "UTILITY",
                "components": [
                    {"type": "HEADER", "format": "TEXT", "text": "Order {{1}}"},
                    {"type": "BODY", "text": "Hi {{1}}, code {{2}}"},
                    {"type": "BUTTONS", "buttons": [{"type": "QUICK_REPLY", "text": "Stop"},
                        {"type": "URL", "text": "Track", "url": "x.example/t/{{1}}"}]}]});
            Template::from_graph(WABA, &graph).expect("a template")
        })
        .collect()
}

fn send_body() -> Value {
    let text = |t: &str| json!({"type": "text", "text": t});
    json!({"to": "+14155550123", "template": {"name": "order_update", "language": "en_US", "components": [
        {"type": "header", "parameters": [text("A-42")]},
        {"type": "body", "parameters": [text("Mark"), text("FALL25")]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]}]}})
}

async fn state(checked: bool, dir: &std::path::Path) -> AppState {
    let config = config(checked);
    let state = AppState::new(&config, Arc::new(Counting::default()));
    if checked {
        let store = herald::embedded::EmbeddedQueue::open(dir, 0).expect("a database");
        store
            .replace_templates(
                WABA,
                herald::templates::Listing {
                    templates: account(),
                    started_ms: herald::clock::now_ms(),
                    synced_ms: herald::clock::now_ms(),
                },
            )
            .await
            .expect("stored");
        state.templates.set_store(Arc::new(store));
        state.templates.load_stored().await;
    }
    state
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let body = send_body().to_string();
    let mut criterion = Criterion::default().configure_from_args();
    let mut group = criterion.benchmark_group("template_send");
    for (name, checked) in [("unchecked", false), ("checked", true)] {
        let app = router(runtime.block_on(state(checked, dir.path())));
        let request = || {
            http::Request::post("/api/v1/send")
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(Body::from(body.clone()))
                .unwrap()
        };
        let answer = runtime.block_on(app.clone().oneshot(request())).unwrap();
        assert_eq!(answer.status(), 202, "{name}: the send is accepted");
        group.bench_function(name, |b| {
            b.iter(|| runtime.block_on(app.clone().oneshot(request())).unwrap());
        });
    }
    group.finish();
    // The check alone, on the message object the gateway builds.
    let alone = dir.path().join("alone");
    std::fs::create_dir_all(&alone).unwrap();
    let state = runtime.block_on(state(true, &alone));
    let message = herald::domain::OutboundMessage::try_from(send_body()).expect("valid");
    let template = message.content["template"].clone();
    criterion.bench_function("template_check_alone", |b| {
        b.iter(|| {
            let snapshot = state.templates.snapshot();
            state.templates.check(
                &snapshot,
                Some("106540352242922"),
                std::hint::black_box(&template),
            )
        });
    });
    criterion.final_summary();
    // Under `cargo test` each case runs once, unmeasured: no ratio.
    if std::env::args().any(|a| a == "--bench") {
        print_ratio();
    }
}

/// checked / unchecked, from criterion's estimates of this run.
fn print_ratio() {
    let median = |name: &str| -> Option<f64> {
        let path = format!("target/criterion/template_send/{name}/new/estimates.json");
        let text = std::fs::read_to_string(path).ok()?;
        serde_json::from_str::<Value>(&text).ok()?["median"]["point_estimate"].as_f64()
    };
    if let (Some(unchecked), Some(checked)) = (median("unchecked"), median("checked")) {
        println!(
            "template_send: unchecked {:.1} µs, checked {:.1} µs, checked/unchecked = {:.3}",
            unchecked / 1000.0,
            checked / 1000.0,
            checked / unchecked
        );
    }
}

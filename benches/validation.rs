//! Micro-benchmarks of the gateway's own work per request: validating a send
//! request and serialising its envelope. Run with `cargo bench`; compare runs
//! with criterion's saved baselines (`--save-baseline` / `--baseline`).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use herald::contract::Envelope;
use herald::domain::OutboundMessage;
use serde_json::{Value, json};

fn text() -> Value {
    json!({"to": "+14155550123", "message": "Your order #1234 has shipped and will arrive on Thursday."})
}

fn template() -> Value {
    json!({"to": "+14155550123", "callbackData": "order-1234", "metadata": {"tenant": "acme", "order": 1234},
        "template": {"name": "order_update", "language": "en_US", "components": [
            {"type": "header", "parameters": [{"type": "image", "image": {"link": "https://example.com/i.jpg"}}]},
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"},
                {"type": "currency", "currency": {"fallback_value": "$100.99", "code": "USD", "amount_1000": 100_990}},
                {"type": "date_time", "date_time": {"fallback_value": "February 25, 1977"}}]},
            {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "YES"}]}]}})
}

fn interactive_list() -> Value {
    json!({"to": "+14155550123", "interactive": {"type": "list", "header": {"type": "text", "text": "Menu"},
        "body": {"text": "What would you like?"}, "footer": {"text": "Kitchen closes at 10"},
        "action": {"button": "Choose", "sections": [
            {"title": "Mains", "rows": [{"id": "m1", "title": "Soup", "description": "Hot"}, {"id": "m2", "title": "Stew"}]},
            {"title": "Sides", "rows": [{"id": "s1", "title": "Bread"}, {"id": "s2", "title": "Salad"}]}]}}})
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    for (name, body) in [
        ("text", text()),
        ("template", template()),
        ("interactive_list", interactive_list()),
    ] {
        let raw = body.to_string();
        group.bench_function(format!("{name}/parse+validate"), |b| {
            b.iter(|| {
                let value: Value = serde_json::from_slice(black_box(raw.as_bytes())).unwrap();
                OutboundMessage::try_from(value).unwrap()
            })
        });
        group.bench_function(format!("{name}/validate"), |b| {
            b.iter_batched(
                || body.clone(),
                |v| OutboundMessage::try_from(black_box(v)).unwrap(),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("envelope");
    for (name, body) in [("text", text()), ("template", template())] {
        let envelope = Envelope::new(
            uuid::Uuid::now_v7(),
            OutboundMessage::try_from(body).unwrap(),
            "ops",
        );
        group.bench_function(format!("{name}/to_json"), |b| {
            b.iter(|| black_box(&envelope).to_json())
        });
        let json = envelope.to_json();
        group.bench_function(format!("{name}/from_json"), |b| {
            b.iter(|| Envelope::from_json(black_box(&json)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! SMS segment counting (issue 11's goal: at most 1 µs for a 160-character
//! text), and an SMS request's validation end to end. Run with
//! `cargo bench --bench sms_segments`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use herald::domain::OutboundMessage;
use herald::domain::sms::analyze;
use serde_json::json;

fn bench(c: &mut Criterion) {
    let gsm_160: String = "Your parcel 4521 is out for delivery today between 10:00 and 12:00. \
        Reply STOP to opt out. Track it: https://example.com/t/4521 [ref {A1}] €5 "
        .chars()
        .cycle()
        .take(160)
        .collect();
    let ucs2_70: String = "Ваш заказ отправлен 😀 ".chars().cycle().take(70).collect();
    let gsm_1530: String = gsm_160.chars().cycle().take(1530).collect();
    let mut group = c.benchmark_group("sms_segments");
    for (name, text) in [
        ("gsm7_160_chars", &gsm_160),
        ("ucs2_70_chars", &ucs2_70),
        ("gsm7_1530_chars", &gsm_1530),
    ] {
        group.bench_function(name, |b| b.iter(|| analyze(black_box(text))));
    }
    group.finish();

    let body =
        json!({"channel": "sms", "to": "+14155550123", "message": gsm_160, "sender": "Herald"});
    c.bench_function("validate/sms_160_chars", |b| {
        b.iter(|| OutboundMessage::try_from(black_box(body.clone())).unwrap())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);

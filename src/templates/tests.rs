use serde_json::{Value, json};

use super::check::parameters;
use super::*;

/// Graph's example template (`GET /{waba-id}/message_templates`).
fn order_update() -> Value {
    json!({"id":"1192339204654487","name":"order_update","language":"en_US","status":"APPROVED",
        "category":"UTILITY","parameter_format":"POSITIONAL",
        "components":[
            {"type":"HEADER","format":"TEXT","text":"Order {{1}}","example":{"header_text":["A-42"]}},
            {"type":"BODY","text":"Hi {{1}}, code {{2}}","example":{"body_text":[["Mark","FALL25"]]}},
            {"type":"FOOTER","text":"Reply STOP to opt out"},
            {"type":"BUTTONS","buttons":[{"type":"QUICK_REPLY","text":"Stop promotions"},
                {"type":"URL","text":"Track","url":"x.example/t/{{1}}","example":["x.example/t/A-42"]}]}]})
}

fn takes(graph: &Value) -> Parameters {
    Template::from_graph("102290129340398", graph)
        .unwrap()
        .parameters
        .unwrap()
}

fn fields(errors: &[crate::domain::validation::FieldError]) -> Vec<&str> {
    errors.iter().map(|e| e.field.as_str()).collect()
}

fn text(t: &str) -> Value {
    json!({"type": "text", "text": t})
}

#[test]
fn a_graph_template_is_read_with_what_each_component_takes() {
    let t = Template::from_graph("102290129340398", &order_update()).unwrap();
    assert_eq!(
        (t.name.as_str(), t.language.as_str(), t.status.as_str()),
        ("order_update", "en_US", "APPROVED")
    );
    assert_eq!(t.id.as_deref(), Some("1192339204654487"));
    let p = t.parameters.unwrap();
    assert_eq!(
        p.header,
        Some(HeaderParameter::Text {
            placeholder: "1".into()
        })
    );
    assert_eq!(p.body, ["1", "2"]);
    assert_eq!(p.buttons[0].takes, ButtonTakes::Optional);
    assert_eq!(p.buttons[1].takes, ButtonTakes::Required);
}

#[test]
fn placeholders_are_found_once_each_in_order() {
    assert_eq!(placeholders("{{2}} then {{1}} and {{2}}"), ["2", "1"]);
    assert_eq!(
        placeholders("Hi {{first_name}}, {{ order }}"),
        ["first_name", "order"]
    );
    assert!(placeholders("no {{}} {{bad-name}} \u{7b}\u{7b}open").is_empty());
}

#[test]
fn a_send_that_fits_passes() {
    let sent = json!({"name": "order_update", "language": "en_US", "components": [
        {"type": "header", "parameters": [text("A-42")]},
        {"type": "body", "parameters": [text("Mark"), text("FALL25")]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]},
    ]});
    assert!(parameters(&takes(&order_update()), &sent).is_empty());
}

#[test]
fn positional_counts_are_checked_per_component() {
    let sent = json!({"components": [
        {"type": "header", "parameters": [text("A-42"), text("extra")]},
        {"type": "body", "parameters": [text("Mark")]},
        {"type": "button", "sub_type": "url", "index": 1, "parameters": [text("A-42")]},
    ]});
    let errors = parameters(&takes(&order_update()), &sent);
    assert_eq!(
        fields(&errors),
        [
            "template.components[0].parameters",
            "template.components[1].parameters"
        ]
    );
    assert!(
        errors[1].message.contains("2 parameter(s); 1 given"),
        "{}",
        errors[1].message
    );
}

#[test]
fn missing_components_and_buttons_are_named() {
    let errors = parameters(&takes(&order_update()), &json!({"components": []}));
    assert_eq!(fields(&errors), ["template.components"; 3]);
    assert!(
        errors[2].message.contains("button 1 (URL)"),
        "{}",
        errors[2].message
    );
}

#[test]
fn buttons_take_what_their_kind_takes() {
    let sent = json!({"components": [
        {"type": "header", "parameters": [text("A")]},
        {"type": "body", "parameters": [text("a"), text("b")]},
        {"type": "button", "sub_type": "quick_reply", "index": "0", "parameters": [{"type": "payload", "payload": "x"}, {"type": "payload", "payload": "y"}]},
        {"type": "button", "sub_type": "url", "index": "1", "parameters": [text("A-42")]},
        {"type": "button", "sub_type": "url", "index": "5", "parameters": [text("A-42")]},
    ]});
    let errors = parameters(&takes(&order_update()), &sent);
    assert_eq!(
        fields(&errors),
        [
            "template.components[2].parameters",
            "template.components[4].parameters"
        ]
    );
    assert!(
        errors[1].message.contains("no button 5"),
        "{}",
        errors[1].message
    );
}

#[test]
fn named_templates_want_their_names() {
    let graph = json!({"name": "welcome", "language": "en", "status": "APPROVED", "category": "MARKETING",
        "parameter_format": "NAMED",
        "components": [{"type": "BODY", "text": "Hi {{first_name}}, your code is {{code}}"}]});
    let named =
        |name: &str, value: &str| json!({"type": "text", "parameter_name": name, "text": value});
    let good = json!({"components": [{"type": "body", "parameters": [named("code", "X"), named("first_name", "Ana")]}]});
    assert!(parameters(&takes(&graph), &good).is_empty());
    let wrong = json!({"components": [{"type": "body", "parameters": [named("code", "X"), named("name", "Ana")]}]});
    let errors = parameters(&takes(&graph), &wrong);
    assert_eq!(fields(&errors), ["template.components[0].parameters"]);
    assert!(
        errors[0]
            .message
            .contains("missing: first_name; unknown: name"),
        "{}",
        errors[0].message
    );
    let positional =
        json!({"components": [{"type": "body", "parameters": [text("X"), text("Ana")]}]});
    assert!(
        parameters(&takes(&graph), &positional)[0]
            .message
            .contains("parameter_name")
    );
}

#[test]
fn media_headers_take_one_parameter_of_their_type() {
    let graph = json!({"name": "receipt", "language": "en", "status": "APPROVED",
        "components": [{"type": "HEADER", "format": "DOCUMENT"}, {"type": "BODY", "text": "Your receipt"}]});
    let document = json!({"components": [{"type": "header", "parameters": [{"type": "document", "document": {"link": "x.example/r.pdf"}}]}]});
    assert!(parameters(&takes(&graph), &document).is_empty());
    let image = json!({"components": [{"type": "header", "parameters": [{"type": "image", "image": {"link": "x.example/r.png"}}]}]});
    assert!(
        parameters(&takes(&graph), &image)[0]
            .message
            .contains("document parameter, not image")
    );
    let body = json!({"components": [{"type": "header", "parameters": [{"type": "document", "document": {"id": "1"}}]},
        {"type": "body", "parameters": [text("extra")]}]});
    assert_eq!(
        fields(&parameters(&takes(&graph), &body)),
        ["template.components[1].parameters"]
    );
}

#[test]
fn templates_herald_cannot_read_are_checked_by_name_and_status_only() {
    let auth = json!({"name": "otp", "language": "en", "status": "APPROVED", "category": "AUTHENTICATION",
        "components": [{"type": "BODY", "add_security_recommendation": true}]});
    assert_eq!(Template::from_graph("1", &auth).unwrap().parameters, None);
    let carousel = json!({"name": "cards", "language": "en", "status": "APPROVED",
        "components": [{"type": "BODY", "text": "{{1}}"}, {"type": "CAROUSEL", "cards": []}]});
    assert_eq!(
        Template::from_graph("1", &carousel).unwrap().parameters,
        None
    );
    assert!(Template::from_graph("1", &json!({"language": "en"})).is_none());
}

fn change(name: &str, status: Option<&str>, at_ms: i64) -> StatusChange {
    StatusChange {
        waba_id: "1".into(),
        name: name.into(),
        language: "en_US".into(),
        status: status.map(str::to_owned),
        at_ms,
    }
}

#[test]
fn a_status_change_updates_the_template_or_adds_it() {
    let mut list = vec![Template::from_graph("1", &order_update()).unwrap()];
    store::apply_status(&mut list, &change("order_update", Some("PAUSED"), 10));
    assert_eq!(list[0].status, "PAUSED");
    assert!(list[0].parameters.is_some(), "a pause keeps what it takes");
    store::apply_status(&mut list, &change("new_one", Some("APPROVED"), 11));
    assert_eq!((list.len(), list[1].parameters.is_none()), (2, true));
}

#[test]
fn a_template_approved_again_or_edited_is_not_checked_on_old_parameters() {
    let mut list = vec![Template::from_graph("1", &order_update()).unwrap()];
    store::apply_status(&mut list, &change("order_update", Some("REINSTATED"), 10));
    assert!(sendable(&list[0].status));
    assert!(list[0].parameters.is_none());
    let mut list = vec![Template::from_graph("1", &order_update()).unwrap()];
    store::apply_status(&mut list, &change("order_update", None, 10));
    assert_eq!(
        (list[0].status.as_str(), list[0].parameters.is_none()),
        ("APPROVED", true)
    );
    assert!(
        !sendable("PAUSED") && !sendable("PENDING") && sendable("FLAGGED") && sendable("UNKNOWN")
    );
}

#[test]
fn a_listing_keeps_the_webhooks_that_came_after_it_began() {
    let listed = Template::from_graph("1", &order_update()).unwrap();
    let mut stored = vec![listed.clone()];
    store::apply_status(&mut stored, &change("order_update", Some("PAUSED"), 2_000));
    store::apply_status(&mut stored, &change("brand_new", Some("APPROVED"), 2_000));
    let listing = |started_ms| Listing {
        templates: vec![listed.clone()],
        started_ms,
        synced_ms: 3_000,
    };
    // Begun before the webhooks: their status and their new template stay.
    let merged = store::merge_listing(&listing(1_000), &stored);
    assert_eq!(merged.len(), 2);
    assert_eq!(merged[0].status, "PAUSED");
    // Begun after: the listing is newer.
    let merged = store::merge_listing(&listing(2_500), &stored);
    assert_eq!((merged.len(), merged[0].status.as_str()), (1, "APPROVED"));
}

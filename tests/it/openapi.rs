//! `GET /openapi.json` and `GET /docs`: the document is valid OpenAPI 3.1 and
//! names every route the router has (read from the router's source, so a new
//! route without its annotation fails here), and the docs page and its
//! assets are served by Herald with nothing fetched from elsewhere.

use serde_json::Value;

use crate::helpers::TestRouter;

/// Every path `src/gateway/mod.rs` registers with `.route("…"`.
fn routed_paths() -> Vec<String> {
    let source = include_str!("../../src/gateway/mod.rs");
    let mut paths = Vec::new();
    let mut rest = source;
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        let trimmed = rest.trim_start();
        if let Some(literal) = trimmed.strip_prefix('"') {
            let end = literal.find('"').unwrap();
            paths.push(literal[..end].to_owned());
        }
    }
    assert!(
        paths.len() >= 14,
        "the scan found too few routes: {paths:?}"
    );
    paths
}

#[tokio::test]
async fn the_document_is_openapi_3_1_and_covers_every_route() {
    let router = TestRouter::new();
    let r = router.get("/openapi.json").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let doc = r.json();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    for path in routed_paths() {
        assert!(
            paths.contains_key(&path),
            "{path} is routed but missing from /openapi.json"
        );
    }
    // Every documented operation names its responses; every error is a problem document.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}"));
            assert!(!responses.is_empty(), "{method} {path}");
            for (status, response) in responses {
                if status.starts_with('4') || status.starts_with('5') {
                    assert!(
                        response["content"]
                            .get("application/problem+json")
                            .is_some()
                            || path == "/health",
                        "{method} {path} {status} is not a problem document"
                    );
                }
            }
        }
    }
    // Client generators and validators refuse a document whose operations
    // share an id (before: `get` twice).
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "operationId {id} is used twice");
        }
    }
    let send = &paths["/api/v1/send"]["post"];
    assert!(send["requestBody"]["content"]["application/json"].is_object());
    assert!(doc["components"]["schemas"]["SendRequest"]["properties"]["fallback"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

/// Both ways, per method: every method the router answers on a routed path
/// (anything but `405`) is documented, and every documented one is routed.
#[tokio::test]
async fn every_routed_method_is_documented_and_every_documented_one_is_routed() {
    use axum::body::Body;
    use axum::http::Request;
    let router = TestRouter::new();
    let doc = router.get("/openapi.json").await.json();
    for path in routed_paths() {
        let concrete = path
            .replace("{id}", "0193a5b2-7c1e-7d4a-9f1e-2b3c4d5e6f70")
            .replace("{number}", "%2B14155550123");
        for method in ["get", "post", "put", "delete", "patch"] {
            let request = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&concrete)
                .header("x-api-key", crate::helpers::KEY)
                .header("content-type", "application/json")
                .body(Body::from("{}"))
                .unwrap();
            let routed = router.call(request).await.status != 405;
            let documented = doc["paths"][&path].get(method).is_some();
            assert_eq!(
                routed,
                documented,
                "{} {path}: routed {routed}, documented {documented}",
                method.to_uppercase()
            );
        }
    }
}

#[tokio::test]
async fn the_docs_page_and_its_assets_come_from_herald() {
    let router = TestRouter::new();
    let page = router.get("/docs").await;
    assert_eq!(page.status, 200);
    let html = String::from_utf8(page.bytes.clone()).unwrap();
    assert!(html.contains("/openapi.json"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "an external reference: {html}"
    );
    for asset in ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"] {
        let r = router.get(asset).await;
        assert_eq!(r.status, 200, "{asset}");
        assert!(r.bytes.len() > 10_000, "{asset}");
    }
    let _: Value = router.get("/openapi.json").await.json();
}

/// The docs page in headless Chromium (Debian's `chromium`, which
/// `scripts/test.sh` installs) with every host but the gateway's unresolvable:
/// Swagger UI renders the send operation from Herald's own assets.
#[tokio::test]
async fn the_docs_page_renders_the_send_operation_in_headless_chromium_with_no_network() {
    use crate::helpers::browser::{ISOLATED, chromium};
    let chromium = chromium();
    let data = tempfile::tempdir().unwrap();
    let gateway = crate::helpers::process::GatewayProcess::start(&data.path().join("data"), &[]);
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/docs", gateway.address);
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            // Nothing but the gateway can be reached.
            .args(ISOLATED)
            .args(["--virtual-time-budget=15000", "--dump-dom"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
            .expect("chromium runs")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(
        dom.contains("opblock") && dom.contains("/api/v1/send"),
        "the send operation was not rendered: {}\n{}",
        &dom[..dom.len().min(2000)],
        String::from_utf8_lossy(&output.stderr)
    );
}

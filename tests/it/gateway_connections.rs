//! Connection-level defences, against the real binary: clients that never
//! finish a request head, idle keep-alive connections, the connection cap,
//! the shutdown deadline, and requests hyper rejects before the router sees them.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::helpers::eventually;
use crate::helpers::process::GatewayProcess;

fn start(vars: &[(&str, &str)]) -> (tempfile::TempDir, GatewayProcess) {
    let dir = tempfile::tempdir().unwrap();
    let gateway = GatewayProcess::start(&dir.path().join("data"), vars);
    (dir, gateway)
}

fn connect(gateway: &GatewayProcess) -> TcpStream {
    let addr = gateway.address.trim_start_matches("http://");
    let stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// True when the server has closed the connection (EOF or reset).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Reads one whole response (the server closes after a parse error).
fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Slowloris: connections that never finish their request head are closed
/// after HEADER_READ_TIMEOUT_MS instead of holding descriptors for ever.
#[test]
fn clients_that_never_finish_a_request_head_are_disconnected() {
    let (_dir, gateway) = start(&[("HEADER_READ_TIMEOUT_MS", "500")]);
    let mut streams: Vec<TcpStream> = (0..20)
        .map(|_| {
            let mut s = connect(&gateway);
            s.write_all(b"POST /api/v1/send HTTP/1.1\r\nHost: herald\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    for s in &mut streams {
        assert!(closed_by_server(s), "a half-sent request head stayed open");
    }
    assert!(started.elapsed() < Duration::from_secs(4));
}

/// A connection that sends nothing at all is closed too (hyper's HTTP/2
/// detection used to wait for its first bytes with no timeout).
#[test]
fn silent_connections_are_disconnected() {
    let (_dir, gateway) = start(&[("HEADER_READ_TIMEOUT_MS", "500")]);
    let mut streams: Vec<TcpStream> = (0..5).map(|_| connect(&gateway)).collect();
    for s in &mut streams {
        assert!(closed_by_server(s), "a silent connection stayed open");
    }
}

/// A keep-alive connection left idle is closed after the same timeout.
#[test]
fn idle_keep_alive_connections_are_closed() {
    let (_dir, gateway) = start(&[("HEADER_READ_TIMEOUT_MS", "500")]);
    let mut s = connect(&gateway);
    s.write_all(b"GET /ping HTTP/1.1\r\nHost: herald\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert!(closed_by_server(&mut s), "the idle connection stayed open");
}

/// At MAX_CONNECTIONS, a new connection waits until one closes.
#[test]
fn connections_over_the_cap_wait_for_a_free_slot() {
    let (_dir, gateway) = start(&[("MAX_CONNECTIONS", "3")]);
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect(&gateway);
            s.write_all(b"GET /ping HTTP/1.1\r\nHost: herald\r\n\r\n")
                .unwrap();
            let mut buf = [0u8; 1024];
            assert!(s.read(&mut buf).unwrap() > 0);
            s
        })
        .collect();
    let mut fourth = connect(&gateway);
    fourth
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    fourth
        .write_all(b"GET /ping HTTP/1.1\r\nHost: herald\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(
        fourth.read(&mut buf).is_err(),
        "a fourth connection was served past the cap of 3"
    );
    drop(held.pop());
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = fourth.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
}

/// SIGTERM with connections stuck mid-request still ends the process, within
/// SHUTDOWN_TIMEOUT_MS (before: it never exited while two were open).
#[tokio::test]
async fn sigterm_exits_within_the_deadline_despite_stuck_connections() {
    let (_dir, mut gateway) = start(&[
        ("HEADER_READ_TIMEOUT_MS", "60000"),
        ("SHUTDOWN_TIMEOUT_MS", "1000"),
    ]);
    let _stuck: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = connect(&gateway);
            s.write_all(b"POST /api/v1/send HTTP/1.1\r\nHost: herald\r\n")
                .unwrap();
            s
        })
        .collect();
    // Not a wait for an outcome: the server takes the two connections in
    // (nothing outside shows when) before the SIGTERM.
    std::thread::sleep(Duration::from_millis(200));
    let pid = gateway.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = eventually("the exit after SIGTERM", Duration::from_secs(8), || {
        std::future::ready(gateway.child.try_wait().unwrap())
    })
    .await;
    assert!(status.success(), "{status:?}");
}

/// What hyper rejects before the router (a malformed request line, a head
/// that is too large) is a problem document like every other error.
#[test]
fn requests_hyper_rejects_get_problem_documents() {
    let (_dir, gateway) = start(&[]);
    let problem = |raw: Vec<u8>| -> (String, Value) {
        let mut s = connect(&gateway);
        // The server may answer and close before all is written.
        let _ = s.write_all(&raw);
        let response = read_to_close(&mut s);
        let (head, body) = response
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no response head: {response:?}"));
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/problem+json"),
            "{head}"
        );
        (head.to_owned(), serde_json::from_str(body).unwrap())
    };

    let (head, body) = problem(b"THIS IS NOT HTTP\r\n\r\n".to_vec());
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    assert_eq!(body["status"], 400);
    assert_eq!(body["code"], "malformed-request");

    let mut many = b"GET /ping HTTP/1.1\r\nHost: herald\r\n".to_vec();
    for i in 0..200 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");
    let (head, body) = problem(many);
    assert!(head.starts_with("HTTP/1.1 431"), "{head}");
    assert_eq!(body["code"], "header-too-large");
}

//! The HTTP plumbing every provider client shares: the pooled client, the
//! `Retry-After` header, and error bodies fit for logs.

use std::time::Duration;

/// The connection-pooled HTTP client every provider client is built on:
/// `timeout` per call, at most 3 s to connect, idle connections kept a
/// minute, Herald's user agent. Fails only if the TLS backend cannot start.
pub(crate) fn provider_http_client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(3).min(timeout))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A response's `Retry-After` in seconds (providers do not send the HTTP-date
/// form), capped at an hour.
pub(crate) fn response_retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(3600)))
}

/// A response body for an error message: cut to 1 KiB, with every run of
/// six or more digits masked, since providers echo the recipient's number
/// and these texts reach logs, dead letters and status errors.
pub(crate) fn truncate_body(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(1024)]);
    let mut out = String::with_capacity(text.len());
    let mut digits = String::new();
    let flush = |digits: &mut String, out: &mut String| {
        if digits.len() >= 6 {
            out.push_str("******");
        } else {
            out.push_str(digits);
        }
        digits.clear();
    };
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else {
            flush(&mut digits, &mut out);
            out.push(c);
        }
    }
    flush(&mut digits, &mut out);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_bodies_lose_their_phone_numbers() {
        let body = br#"{"destination":"41793026727","status":{"groupId":9,"id":26}}"#;
        assert_eq!(
            super::truncate_body(body),
            r#"{"destination":"******","status":{"groupId":9,"id":26}}"#
        );
    }
}

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

/// How a provider's error type names the three ways a call can get no answer.
pub(crate) struct Unanswered<E> {
    /// The connection could not be made: nothing was sent, safe to retry.
    pub(crate) connect: fn(reqwest::Error) -> E,
    /// No answer within the timeout: the provider may have the message.
    pub(crate) timeout: fn() -> E,
    /// The connection broke after sending: the provider may have the message.
    pub(crate) interrupted: fn(reqwest::Error) -> E,
}

impl<E> Unanswered<E> {
    /// Whether a transport error happened before anything was sent or after.
    pub(crate) fn sent_or_not(&self, e: reqwest::Error) -> E {
        if e.is_connect() {
            (self.connect)(e)
        } else if e.is_timeout() {
            (self.timeout)()
        } else {
            (self.interrupted)(e)
        }
    }
}

/// A provider's answer to one call.
pub(crate) struct Answer<B> {
    /// HTTP status.
    pub(crate) status: u16,
    /// The `Retry-After` header, when sent.
    pub(crate) retry_after: Option<Duration>,
    body: B,
}

impl<B: AsRef<[u8]>> Answer<B> {
    /// Whether the status is 2xx.
    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The whole body.
    pub(crate) fn body(&self) -> &[u8] {
        self.body.as_ref()
    }

    /// The body for an error message (see [`truncate_body`]).
    pub(crate) fn body_for_log(&self) -> String {
        truncate_body(self.body())
    }
}

/// Sends `request` and reads its whole answer; a call that gets no answer
/// fails as `unanswered` names it.
pub(crate) async fn call<E>(
    request: reqwest::RequestBuilder,
    unanswered: &Unanswered<E>,
) -> Result<Answer<impl AsRef<[u8]>>, E> {
    let response = request
        .send()
        .await
        .map_err(|e| unanswered.sent_or_not(e))?;
    let status = response.status().as_u16();
    let retry_after = response_retry_after(response.headers());
    let body = response
        .bytes()
        .await
        .map_err(|e| unanswered.sent_or_not(e))?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
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

//! HMAC-SHA256, the one primitive behind every signature Herald checks or
//! makes: Meta's `X-Hub-Signature-256`, Infobip's signature header, and the
//! Standard Webhooks signature on the events Herald POSTs.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `parts`, concatenated, keyed with `key`.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// True when `hex_signature` is the HMAC-SHA256 of `body` keyed with `key`,
/// compared in constant time. Anything that is not 64 hex digits is false.
pub fn verify_hex(key: &[u8], body: &[u8], hex_signature: &str) -> bool {
    let Some(expected) = decode_hex(hex_signature.trim()) else {
        return false;
    };
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Lower-case hex, as Meta and Infobip write signatures.
pub fn to_hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A Standard Webhooks signing secret: `whsec_<base64>`, the key being the
/// decoded bytes. A value without the prefix is taken as the key's raw bytes.
#[derive(Clone)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

/// Shortest key accepted: Standard Webhooks' own secrets are 24 to 64 bytes.
const MIN_KEY_BYTES: usize = 16;

/// Why a value is not a usable [`WebhookSecret`]. The secret itself is never
/// part of the error.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// `whsec_` followed by something that is not base64. The decoder's error
    /// is not kept: it quotes the offending byte of the secret.
    #[error("the part after whsec_ is not base64")]
    NotBase64,
    /// `whsec_` followed by a key shorter than [`MIN_KEY_BYTES`] (its length).
    #[error("the key after whsec_ is {0} bytes; use at least {MIN_KEY_BYTES} random bytes")]
    KeyTooShort(usize),
    /// A value without the prefix, too short to be a key by itself.
    #[error("use whsec_<base64 of at least {MIN_KEY_BYTES} bytes>")]
    RawTooShort,
}

impl WebhookSecret {
    /// Reads a secret as Standard Webhooks writes them. `Err` names the problem.
    pub fn parse(value: &str) -> Result<Self, SecretError> {
        match value.strip_prefix("whsec_") {
            Some(encoded) => match STANDARD.decode(encoded) {
                Ok(key) if key.len() >= MIN_KEY_BYTES => Ok(Self(key)),
                Ok(key) => Err(SecretError::KeyTooShort(key.len())),
                Err(_) => Err(SecretError::NotBase64),
            },
            None if value.len() >= MIN_KEY_BYTES => Ok(Self(value.as_bytes().to_vec())),
            None => Err(SecretError::RawTooShort),
        }
    }

    /// The `webhook-signature` header value for one delivery:
    /// `v1,<base64 of HMAC-SHA256("{id}.{timestamp}.{body}")>`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let ts = timestamp.to_string();
        let mac = hmac_sha256(&self.0, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
        format!("v1,{}", STANDARD.encode(mac))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_reference_vector() {
        // The Standard Webhooks specification's example secret, id, timestamp
        // and body, with the signature its reference libraries produce.
        let secret = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let signature = secret.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn hex_signatures_are_checked_exactly() {
        let mac = to_hex(&hmac_sha256(b"secret", &[b"body"]));
        assert!(verify_hex(b"secret", b"body", &mac));
        assert!(verify_hex(b"secret", b"body", &mac.to_uppercase()));
        assert!(!verify_hex(b"secret", b"body!", &mac));
        assert!(!verify_hex(b"other", b"body", &mac));
        assert!(!verify_hex(b"secret", b"body", &mac[..62]));
        assert!(!verify_hex(b"secret", b"body", "zz"));
        assert!(!verify_hex(b"secret", b"body", &"é".repeat(32)));
    }

    #[test]
    fn secrets_are_read_as_standard_webhooks_writes_them() {
        assert!(WebhookSecret::parse("whsec_!!").is_err());
        assert!(WebhookSecret::parse("short").is_err());
        assert!(WebhookSecret::parse("a-plain-secret-of-some-length").is_ok());
        assert_eq!(
            format!(
                "{:?}",
                WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap()
            ),
            "WebhookSecret([redacted])"
        );
    }
}

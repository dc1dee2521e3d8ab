//! What WhatsApp accepts, by MIME type: the media kind and its largest
//! size (MB = 2^20 bytes). A sticker's limit depends on whether it is
//! animated, which its WebP header says ([`sticker_limit`]).

/// The kind a type is sent as, and the largest size WhatsApp takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// `image`, `video`, `audio`, `document` or `sticker`.
    pub kind: &'static str,
    /// Bytes.
    pub max_bytes: u64,
}

const MB: u64 = 1 << 20;
const KB: u64 = 1 << 10;
/// A static sticker's limit; an animated one's is [`Accepted::max_bytes`].
pub const STATIC_STICKER_BYTES: u64 = 100 * KB;

const TABLE: &[(&str, &str, u64)] = &[
    ("image/jpeg", "image", 5 * MB),
    ("image/png", "image", 5 * MB),
    ("video/mp4", "video", 16 * MB),
    ("video/3gpp", "video", 16 * MB),
    ("audio/aac", "audio", 16 * MB),
    ("audio/mp4", "audio", 16 * MB),
    ("audio/mpeg", "audio", 16 * MB),
    ("audio/amr", "audio", 16 * MB),
    ("audio/ogg", "audio", 16 * MB),
    ("text/plain", "document", 100 * MB),
    ("application/pdf", "document", 100 * MB),
    ("application/msword", "document", 100 * MB),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "document",
        100 * MB,
    ),
    ("application/vnd.ms-excel", "document", 100 * MB),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "document",
        100 * MB,
    ),
    ("application/vnd.ms-powerpoint", "document", 100 * MB),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "document",
        100 * MB,
    ),
    ("image/webp", "sticker", 500 * KB),
];

/// What WhatsApp does with `content_type` (parameters such as `;
/// charset=utf-8` ignored, case-insensitive), or `None` when it refuses it.
pub fn accepted(content_type: &str) -> Option<(&'static str, Accepted)> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    TABLE
        .iter()
        .find(|(mime, _, _)| *mime == essence)
        .map(|(mime, kind, max)| {
            (
                *mime,
                Accepted {
                    kind,
                    max_bytes: *max,
                },
            )
        })
}

/// Every type WhatsApp takes, for the `415`'s message.
pub fn all_types() -> String {
    TABLE
        .iter()
        .map(|(mime, _, _)| *mime)
        .collect::<Vec<_>>()
        .join(", ")
}

/// A WebP sticker's limit from its first bytes: animated (a `VP8X` header
/// with the animation flag) 500 KB, else 100 KB.
pub fn sticker_limit(head: &[u8]) -> u64 {
    let animated = head.len() > 20 && &head[12..16] == b"VP8X" && head[20] & 0x02 != 0;
    if animated {
        500 * KB
    } else {
        STATIC_STICKER_BYTES
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_matched_without_their_parameters_or_case() {
        assert_eq!(accepted("image/JPEG").unwrap().1.max_bytes, 5 * MB);
        assert_eq!(
            accepted("text/plain; charset=utf-8").unwrap().1.kind,
            "document"
        );
        assert!(accepted("image/gif").is_none());
        assert!(accepted("").is_none());
    }

    #[test]
    fn a_sticker_is_animated_only_with_the_flag() {
        let mut head = b"RIFF\0\0\0\0WEBPVP8X\0\0\0\0\0\0\0\0\0\0".to_vec();
        assert_eq!(sticker_limit(&head), STATIC_STICKER_BYTES);
        head[20] = 0x02;
        assert_eq!(sticker_limit(&head), 500 * KB);
        assert_eq!(sticker_limit(b"RIFF"), STATIC_STICKER_BYTES);
    }
}

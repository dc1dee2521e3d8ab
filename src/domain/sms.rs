//! SMS text: which encoding a text needs and how many segments it takes,
//! and the sender-id rules.
//!
//! GSM-7 when every character is in the GSM 03.38 default alphabet or its
//! extension table (an extension character costs two septets: an escape and
//! the character), else UCS-2, counted in UTF-16 code units (a character
//! outside the Basic Multilingual Plane, such as most emoji, is a surrogate
//! pair: two units). One segment holds 160 septets or 70 units; a
//! concatenated message holds 153 or 67 per segment, because each segment
//! carries a 6-byte header. Segments are packed as handsets and SMSCs pack
//! them: an escape pair or a surrogate pair is never split across two
//! segments, so a text can need one segment more than its length divided by
//! 153 (or 67) suggests.

use serde::Serialize;

/// The ASCII characters of the GSM 03.38 default alphabet. (Of ASCII, the
/// backtick is not in GSM-7 at all, and `^ { } \ [ ~ ] |` are in its
/// extension table.)
const GSM_BASIC_ASCII: &[u8] = b"@$\n\r_ !\"#%&'()*+,-./0123456789:;<=>?\
ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Septets per ASCII character: 1 (basic), 2 (extension), 0 (not GSM-7).
/// Built at compile time: counting a text is one table lookup per character.
const ASCII_WIDTHS: [u8; 128] = {
    let mut table = [0u8; 128];
    let mut i = 0;
    while i < GSM_BASIC_ASCII.len() {
        table[GSM_BASIC_ASCII[i] as usize] = 1;
        i += 1;
    }
    let extension = b"^{}\\[~]|\x0c";
    let mut i = 0;
    while i < extension.len() {
        table[extension[i] as usize] = 2;
        i += 1;
    }
    table
};

/// Septets in a single-segment GSM-7 message, and per concatenated segment.
const GSM_SINGLE: usize = 160;
const GSM_PART: usize = 153;
/// UTF-16 units in a single-segment UCS-2 message, and per concatenated segment.
const UCS2_SINGLE: usize = 70;
const UCS2_PART: usize = 67;

/// The encoding an SMS is sent in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum Encoding {
    /// 7-bit GSM 03.38, with the extension table.
    #[serde(rename = "GSM-7")]
    Gsm7,
    /// UTF-16 (UCS-2 with surrogate pairs, as phones send it).
    #[serde(rename = "UCS-2")]
    Ucs2,
}

/// What a text costs as an SMS: the `sms` object of the `202`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SmsInfo {
    /// The encoding the whole text needs.
    pub encoding: Encoding,
    /// Unicode code points, as a person counts characters.
    pub characters: usize,
    /// Segments the text is sent in (each billed as one SMS).
    pub segments: usize,
}

/// The width of one GSM-7 character in septets, or `None` when the character
/// is not in GSM-7 at all. `Ç` is in the basic set, `ç` is not.
fn gsm_width(c: char) -> Option<usize> {
    if c.is_ascii() {
        return match ASCII_WIDTHS[c as usize] {
            0 => None,
            w => Some(usize::from(w)),
        };
    }
    match c {
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        '€' => Some(2),
        _ => None,
    }
}

/// Packs items of the given widths into segments, in one pass: one segment
/// when their sum fits `single`, else `part` at a time without splitting an
/// item. `None` as soon as `width` refuses an item.
fn pack(
    text: &str,
    width: impl Fn(char) -> Option<usize>,
    single: usize,
    part: usize,
) -> Option<(usize, usize)> {
    let (mut total, mut characters, mut segments, mut used) = (0, 0, 1, 0);
    for c in text.chars() {
        let w = width(c)?;
        characters += 1;
        total += w;
        if used + w > part {
            segments += 1;
            used = 0;
        }
        used += w;
    }
    Some((characters, if total <= single { 1 } else { segments }))
}

/// The encoding, characters and segments of `text` (an empty text is one segment).
pub fn analyze(text: &str) -> SmsInfo {
    if let Some((characters, segments)) = pack(text, gsm_width, GSM_SINGLE, GSM_PART) {
        return SmsInfo {
            encoding: Encoding::Gsm7,
            characters,
            segments,
        };
    }
    let (characters, segments) = pack(text, |c| Some(c.len_utf16()), UCS2_SINGLE, UCS2_PART)
        .expect("every character has a UTF-16 width");
    SmsInfo {
        encoding: Encoding::Ucs2,
        characters,
        segments,
    }
}

/// Why a sender id is not one operators accept, or `None` when it is: either
/// alphanumeric (3–11 of `A-Z a-z 0-9` and space, at least one letter) or
/// numeric (3–15 digits).
pub fn sender_problem(sender: &str) -> Option<&'static str> {
    let len = sender.chars().count();
    if !sender.is_empty() && sender.bytes().all(|b| b.is_ascii_digit()) {
        return (!(3..=15).contains(&len)).then_some("a numeric sender must have 3 to 15 digits");
    }
    if !sender
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b' ')
    {
        return Some(
            "must be alphanumeric (A-Z, a-z, 0-9 and spaces, 3 to 11) or numeric (3 to 15 digits)",
        );
    }
    if !sender.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some("an alphanumeric sender needs at least one letter");
    }
    (!(3..=11).contains(&len)).then_some("an alphanumeric sender must have 3 to 11 characters")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(text: &str) -> (Encoding, usize, usize) {
        let i = analyze(text);
        (i.encoding, i.characters, i.segments)
    }

    #[test]
    fn encodings_characters_and_segments_of_tricky_texts() {
        use Encoding::{Gsm7, Ucs2};
        let cases: Vec<(String, (Encoding, usize, usize))> = vec![
            ("Hello".into(), (Gsm7, 5, 1)),
            (String::new(), (Gsm7, 0, 1)),
            // Extension characters are GSM-7 but cost two septets each.
            ("€".into(), (Gsm7, 1, 1)),
            ("^{}[]~|\\".into(), (Gsm7, 8, 1)),
            ("€".repeat(80), (Gsm7, 80, 1)),
            ("€".repeat(81), (Gsm7, 81, 2)),
            // Ç is in the basic set, ç is not.
            ("Ça va".into(), (Gsm7, 5, 1)),
            ("ça va".into(), (Ucs2, 5, 1)),
            // Greek capitals of the basic set; small Greek letters are not.
            ("ΔΦΓΛΩΠΨΣΘΞ".into(), (Gsm7, 10, 1)),
            ("αβγ".into(), (Ucs2, 3, 1)),
            // The backtick is ASCII but not GSM-7.
            ("`".into(), (Ucs2, 1, 1)),
            // Emoji outside the BMP are two UTF-16 units.
            ("😀".into(), (Ucs2, 1, 1)),
            ("😀".repeat(35), (Ucs2, 35, 1)),
            ("😀".repeat(36), (Ucs2, 36, 2)),
            // Boundaries: 160 / 161, 306 / 307 septets; 70 / 71, 134 / 135 units.
            ("a".repeat(160), (Gsm7, 160, 1)),
            ("a".repeat(161), (Gsm7, 161, 2)),
            ("a".repeat(306), (Gsm7, 306, 2)),
            ("a".repeat(307), (Gsm7, 307, 3)),
            ("я".repeat(70), (Ucs2, 70, 1)),
            ("я".repeat(71), (Ucs2, 71, 2)),
            ("я".repeat(134), (Ucs2, 134, 2)),
            ("я".repeat(135), (Ucs2, 135, 3)),
            // An escape pair is not split: 152 septets then `€` needs a new segment.
            (
                format!("{}€{}", "a".repeat(152), "a".repeat(10)),
                (Gsm7, 163, 2),
            ),
            (
                format!("{}€{}", "a".repeat(152), "a".repeat(152)),
                (Gsm7, 305, 3),
            ),
            // A surrogate pair is not split either: 66 units, then an emoji.
            (
                format!("{}😀{}", "я".repeat(66), "я".repeat(10)),
                (Ucs2, 77, 2),
            ),
            (
                format!("{}😀{}", "я".repeat(66), "я".repeat(66)),
                (Ucs2, 133, 3),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(info(&text), expected, "{text:?}");
        }
    }

    #[test]
    fn segment_boundaries_at_153_and_154_and_67_and_68_per_part() {
        // 2 × 153 = 306 fits two parts, one more septet needs a third.
        assert_eq!(analyze(&"x".repeat(153 * 2)).segments, 2);
        assert_eq!(analyze(&"x".repeat(153 * 2 + 1)).segments, 3);
        assert_eq!(
            analyze(&format!("{}{}", "x".repeat(153), "y".repeat(154))).segments,
            3
        );
        assert_eq!(analyze(&"ж".repeat(67 * 2)).segments, 2);
        assert_eq!(analyze(&"ж".repeat(67 * 2 + 1)).segments, 3);
        assert_eq!(
            analyze(&format!("{}{}", "ж".repeat(67), "ж".repeat(68))).segments,
            3
        );
    }

    #[test]
    fn sender_rules() {
        for ok in ["Herald", "ACME 2", "abc", "12345", "441234567890123", "A1B"] {
            assert_eq!(sender_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            "ab",
            "12",
            "1234567890123456",
            "TwelveChars1",
            "Acme!",
            "Ünïcode",
            "   ",
            "+4412345",
        ] {
            assert!(sender_problem(bad).is_some(), "{bad:?}");
        }
    }
}

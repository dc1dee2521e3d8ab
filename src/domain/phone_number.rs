//! The recipient's phone number, in E.164 form.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A phone number known to be E.164: `+`, then 8 to 15 ASCII digits, the first 1–9.
///
/// Parsing never normalises: a number with spaces, dashes or brackets is an error,
/// because guessing what the caller meant is how messages reach the wrong person.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PhoneNumber(String);

/// Why a string is not an E.164 phone number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneNumberError {
    /// The string does not start with `+`.
    #[error("must start with '+' followed by the country code (E.164, e.g. +14155550123)")]
    MissingPlus,
    /// Something other than an ASCII digit follows the `+`.
    #[error("must contain only the digits 0-9 after '+' (no spaces, dashes or brackets)")]
    NotDigits,
    /// The first digit after `+` is `0`, which no country code starts with.
    #[error("the country code cannot start with 0")]
    LeadingZero,
    /// Fewer than 8 or more than 15 digits.
    #[error("must have between 8 and 15 digits after '+', found {0}")]
    Length(usize),
}

impl PhoneNumber {
    /// Smallest number of digits accepted after `+`.
    pub const MIN_DIGITS: usize = 8;
    /// Largest number of digits E.164 allows.
    pub const MAX_DIGITS: usize = 15;

    /// Checks that `value` is E.164 and wraps it.
    pub fn parse(value: impl Into<String>) -> Result<Self, PhoneNumberError> {
        let value = value.into();
        let digits = value
            .strip_prefix('+')
            .ok_or(PhoneNumberError::MissingPlus)?;
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(PhoneNumberError::NotDigits);
        }
        if digits.starts_with('0') {
            return Err(PhoneNumberError::LeadingZero);
        }
        if !(Self::MIN_DIGITS..=Self::MAX_DIGITS).contains(&digits.len()) {
            return Err(PhoneNumberError::Length(digits.len()));
        }
        Ok(Self(value))
    }

    /// The number with its leading `+`, as the caller sent it.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The digits without `+`: the form the WhatsApp Cloud API's `to` field uses.
    pub fn digits(&self) -> &str {
        &self.0[1..]
    }

    /// The E.164 country calling code, without `+` (`"34"`, `"1"`).
    pub fn country_code(&self) -> &str {
        let digits = self.digits();
        &digits[..country_code_len(digits).min(digits.len())]
    }

    /// A form safe for logs: the country code and the last two digits, the rest
    /// replaced by `*` (`+44*******23`). Phone numbers are personal data.
    pub fn masked(&self) -> String {
        mask_digits(self.digits())
    }
}

/// Masks a string of digits (no `+`) the way [`PhoneNumber::masked`] does.
///
/// Crate-private, and safe on any text: it counts characters, not bytes, and
/// keeps a country code only when the input is all ASCII digits, so a number
/// that arrives from outside unvalidated (`"ab€"`) is masked, never a panic.
pub(crate) fn mask_digits(digits: &str) -> String {
    let chars: Vec<char> = digits.chars().collect();
    let cc = if digits.bytes().all(|b| b.is_ascii_digit()) {
        country_code_len(digits).min(chars.len())
    } else {
        0
    };
    let keep_tail = 2.min(chars.len() - cc);
    let hidden = chars.len() - cc - keep_tail;
    let mut out = String::with_capacity(chars.len() + 1);
    out.push('+');
    out.extend(&chars[..cc]);
    out.extend(std::iter::repeat_n('*', hidden));
    out.extend(&chars[chars.len() - keep_tail..]);
    out
}

/// Length of the ITU-T E.164 country code that starts `digits`.
///
/// Country codes are prefix-free: `1` and `7` are the only one-digit codes, a fixed
/// set of two-digit codes follows, and every other code has three digits.
fn country_code_len(digits: &str) -> usize {
    let b = digits.as_bytes();
    match b.first() {
        Some(b'1' | b'7') => 1,
        Some(_) => {
            let two = digits.get(..2).and_then(|s| s.parse::<u8>().ok());
            match two {
                Some(
                    20
                    | 27
                    | 30..=34
                    | 36
                    | 39
                    | 40
                    | 41
                    | 43..=49
                    | 51..=58
                    | 60..=66
                    | 81
                    | 82
                    | 84
                    | 86
                    | 90..=95
                    | 98,
                ) => 2,
                _ => 3,
            }
        }
        None => 0,
    }
}

impl TryFrom<String> for PhoneNumber {
    type Error = PhoneNumberError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<PhoneNumber> for String {
    fn from(value: PhoneNumber) -> Self {
        value.0
    }
}

impl AsRef<str> for PhoneNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// `Debug` masks the number, so a stray `{:?}` cannot leak it into a log.
impl fmt::Debug for PhoneNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PhoneNumber").field(&self.masked()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_numbers_parse() {
        for good in [
            "+14155550123",
            "+447911123456",
            "+12345678",
            "+123456789012345",
            "+5511987654321",
            "+919876543210",
        ] {
            assert!(PhoneNumber::parse(good).is_ok(), "{good} should be valid");
        }
    }

    #[test]
    fn invalid_numbers_are_rejected_with_the_reason() {
        let cases = [
            ("14155550123", PhoneNumberError::MissingPlus),
            ("", PhoneNumberError::MissingPlus),
            ("+", PhoneNumberError::Length(0)),
            ("+1 415 555 0123", PhoneNumberError::NotDigits),
            ("+1-415-555-0123", PhoneNumberError::NotDigits),
            ("+1(415)5550123", PhoneNumberError::NotDigits),
            ("+04155550123", PhoneNumberError::LeadingZero),
            ("+1234567", PhoneNumberError::Length(7)),
            ("+1234567890123456", PhoneNumberError::Length(16)),
            ("++14155550123", PhoneNumberError::NotDigits),
            ("+1415555012a", PhoneNumberError::NotDigits),
            // Arabic-Indic and full-width digits are digits to Unicode, not to E.164.
            ("+١٤١٥٥٥٥٠١٢٣", PhoneNumberError::NotDigits),
            ("+１４１５５５５０１２３", PhoneNumberError::NotDigits),
            (" +14155550123", PhoneNumberError::MissingPlus),
            ("+14155550123 ", PhoneNumberError::NotDigits),
            ("+14155550123\n", PhoneNumberError::NotDigits),
        ];
        for (input, expected) in cases {
            assert_eq!(PhoneNumber::parse(input), Err(expected), "input {input:?}");
        }
    }

    #[test]
    fn masking_keeps_only_the_country_code_and_last_two_digits() {
        let cases = [
            ("+14155550123", "+1********23"),
            ("+447911123456", "+44********56"),
            ("+5511987654321", "+55*********21"),
            ("+35312345678", "+353******78"),
            ("+79161234567", "+7********67"),
        ];
        for (input, expected) in cases {
            assert_eq!(PhoneNumber::parse(input).unwrap().masked(), expected);
        }
    }

    #[test]
    fn masking_survives_short_and_empty_input() {
        assert_eq!(mask_digits(""), "+");
        assert_eq!(mask_digits("4"), "+4");
        assert_eq!(mask_digits("44"), "+44");
        assert_eq!(mask_digits("441"), "+441");
    }

    #[test]
    fn masking_never_slices_inside_a_character() {
        assert_eq!(mask_digits("ab€"), "+*b€");
        assert_eq!(mask_digits("€€€€€"), "+***€€");
        assert_eq!(mask_digits("٣٣٣٣٣٣"), "+****٣٣");
    }

    #[test]
    fn debug_output_is_masked() {
        let n = PhoneNumber::parse("+14155550123").unwrap();
        assert!(!format!("{n:?}").contains("4155550123"));
    }

    #[test]
    fn digits_drop_the_plus() {
        assert_eq!(
            PhoneNumber::parse("+14155550123").unwrap().digits(),
            "14155550123"
        );
    }
}

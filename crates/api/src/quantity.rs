//! Kubernetes resource quantities (`500m`, `2`, `0.5`, `128Mi`, `1G`, `1e3`) as integers.
//!
//! The grammar is upstream's (`k8s.io/apimachinery/pkg/api/resource`):
//! `<sign>? <digits>[.<digits>] <suffix>?` where the suffix is a binary SI one (`Ki Mi Gi Ti Pi
//! Ei`), a decimal SI one (`n u m k M G T P E`) or a decimal exponent (`e3`, `E-2`).
//! Schedulers and agents need two views: CPU in milli-cores and everything else in whole units (bytes,
//! pods). Like upstream's `MilliValue()`/`Value()`, fractions round **up**, so a request is never
//! under-counted. Values are computed exactly in `i128` and saturate at `i64::MAX`.
//! <https://kubernetes.io/docs/reference/kubernetes-api/common-definitions/quantity/>

/// Why a quantity string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("quantity is empty")]
    Empty,
    /// The number part is malformed.
    #[error("quantity {0:?} has no valid number")]
    InvalidNumber(String),
    /// The suffix is not one Kubernetes knows.
    #[error("quantity {0:?} has an unknown suffix")]
    InvalidSuffix(String),
    /// The value does not fit what the scheduler can represent.
    #[error("quantity {0:?} is out of range")]
    OutOfRange(String),
}

/// Most significant digits kept; upstream's canonical form is far shorter than this.
const MAX_DIGITS: usize = 30;
/// Largest decimal exponent accepted (10^30 bytes is far beyond any node).
const MAX_EXPONENT: i32 = 30;

/// Parses `s` into thousandths of its unit, rounding up (`"500m"` → 500, `"2"` → 2000).
pub fn parse_milli(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 3)
}

/// Parses `s` into whole units, rounding up (`"1Ki"` → 1024, `"1.5"` → 2, `"100m"` → 1).
pub fn parse_value(s: &str) -> Result<i64, QuantityError> {
    scaled(s, 0)
}

/// `ceil(quantity * 10^extra_exp10)` as an `i64` (saturating).
fn scaled(s: &str, extra_exp10: i32) -> Result<i64, QuantityError> {
    let parsed = Parsed::new(s)?;
    let mut exp10 = parsed.exp10 + extra_exp10;
    let mut value: i128 = parsed.mantissa;
    // Multiply by 2^exp2 first: it is exact and never needs rounding.
    for _ in 0..parsed.exp2 {
        value = value.saturating_mul(2);
    }
    while exp10 > 0 {
        value = value.saturating_mul(10);
        exp10 -= 1;
    }
    if exp10 < 0 {
        let divisor = 10i128.pow(exp10.unsigned_abs().min(38));
        let quotient = value / divisor;
        // Round toward positive infinity, like upstream's MilliValue/Value.
        value = if value % divisor > 0 { quotient + 1 } else { quotient };
    }
    let signed = if parsed.negative { -value } else { value };
    Ok(signed.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// A quantity as `(-1)^negative * mantissa * 10^exp10 * 2^exp2`.
struct Parsed {
    negative: bool,
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

impl Parsed {
    fn new(s: &str) -> Result<Self, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        let bytes = s.as_bytes();
        let mut i = 0;
        let mut negative = false;
        if let Some(&c) = bytes.first() {
            if c == b'+' || c == b'-' {
                negative = c == b'-';
                i = 1;
            }
        }
        let mut mantissa: i128 = 0;
        let mut exp10: i32 = 0;
        let mut digits = 0usize;
        let mut significant = 0usize;
        let mut seen_dot = false;
        while i < bytes.len() {
            let c = bytes[i];
            if c.is_ascii_digit() {
                digits += 1;
                if significant < MAX_DIGITS {
                    mantissa = mantissa * 10 + i128::from(c - b'0');
                    if mantissa != 0 {
                        significant += 1;
                    }
                    if seen_dot {
                        exp10 -= 1;
                    }
                } else if !seen_dot {
                    // Too many digits to keep: the value is huge, track its magnitude only.
                    exp10 += 1;
                }
            } else if c == b'.' && !seen_dot {
                seen_dot = true;
            } else {
                break;
            }
            i += 1;
        }
        if digits == 0 {
            return Err(QuantityError::InvalidNumber(s.to_string()));
        }
        let (suffix_exp10, exp2) = suffix(&s[i..], s)?;
        let exp10 = exp10 + suffix_exp10;
        if mantissa != 0 && exp10 + (significant as i32) > MAX_EXPONENT + 20 {
            return Err(QuantityError::OutOfRange(s.to_string()));
        }
        Ok(Self { negative, mantissa, exp10: exp10.max(-(MAX_EXPONENT + 40)), exp2 })
    }
}

/// Returns `(exp10, exp2)` for a suffix.
fn suffix(suffix: &str, whole: &str) -> Result<(i32, u32), QuantityError> {
    let found = match suffix {
        "" => (0, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        other => {
            let rest = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))
                .ok_or_else(|| QuantityError::InvalidSuffix(whole.to_string()))?;
            let unsigned = rest.strip_prefix(['+', '-']).unwrap_or(rest);
            if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QuantityError::InvalidSuffix(whole.to_string()));
            }
            let exponent: i32 =
                rest.parse().map_err(|_| QuantityError::OutOfRange(whole.to_string()))?;
            if exponent.abs() > MAX_EXPONENT {
                return Err(QuantityError::OutOfRange(whole.to_string()));
            }
            (exponent, 0)
        }
    };
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn cpu_quantities_become_millicores() {
        for (input, want) in [
            ("500m", 500),
            ("2", 2000),
            ("0.5", 500),
            (".5", 500),
            ("1.0001", 1001),
            ("100u", 1),
            ("0", 0),
            ("1k", 1_000_000),
            ("+3", 3000),
            ("-1", -1000),
        ] {
            assert_eq!(parse_milli(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn memory_quantities_become_bytes() {
        for (input, want) in [
            ("128Mi", 128 << 20),
            ("1Gi", 1 << 30),
            ("1G", 1_000_000_000),
            ("1e3", 1000),
            ("1E3", 1000),
            ("1k", 1000),
            ("1Ki", 1024),
            ("1.5Gi", 3 << 29),
            ("100m", 1),
            ("12e-1", 2),
            ("110", 110),
        ] {
            assert_eq!(parse_value(input), Ok(want), "{input}");
        }
    }

    #[test]
    fn malformed_quantities_are_errors() {
        for input in ["", "m", "abc", "1x", "1Kb", "1e", "1e+", "--1", "1..2", "1 Gi", "1e99"] {
            assert!(parse_value(input).is_err(), "{input:?} should be rejected");
        }
    }

    #[test]
    fn huge_quantities_saturate() {
        assert_eq!(parse_value("9Ei").ok(), Some(i64::MAX));
        assert_eq!(parse_milli("99999999999999999999999999999999999"), Ok(i64::MAX));
    }

    proptest! {
        #[test]
        fn parsing_never_panics(s in "\\PC{0,40}") {
            let _ = parse_milli(&s);
            let _ = parse_value(&s);
        }

        #[test]
        fn numeric_looking_strings_never_panic(s in "[-+]?[0-9]{0,45}(\\.[0-9]{0,45})?([eE][-+]?[0-9]{0,12}|[KMGTPE]i?|[numk])?") {
            let _ = parse_milli(&s);
            let _ = parse_value(&s);
        }

        #[test]
        fn integers_round_trip(n in 0i64..1_000_000_000) {
            prop_assert_eq!(parse_value(&n.to_string()), Ok(n));
            prop_assert_eq!(parse_milli(&format!("{n}m")), Ok(n));
            prop_assert_eq!(parse_value(&format!("{n}Ki")), Ok(n * 1024));
        }
    }
}

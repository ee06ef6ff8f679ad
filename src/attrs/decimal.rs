//! Exact decimal numbers for the numeric attribute types (sum, avg, min, max)
//! and for weights: values arrive as text, are summed exactly (no binary
//! floating point drift) and written back as canonical decimal text
//! (`12.5`, `3`, `-0.25`: no exponent, no trailing zeros).

use std::cmp::Ordering;

/// `mant × 10^-scale`, kept normalised (no trailing zeros in `mant` when
/// `scale > 0`, `scale >= 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    mant: i128,
    scale: u32,
}

/// Digits kept after the point by `avg` (rounded half away from zero).
pub const AVG_SCALE: u32 = 10;
const MAX_SCALE: u32 = 30;

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

impl Decimal {
    pub const ZERO: Decimal = Decimal { mant: 0, scale: 0 };
    pub const ONE: Decimal = Decimal { mant: 1, scale: 0 };

    pub fn from_int(n: i64) -> Decimal {
        Decimal {
            mant: n as i128,
            scale: 0,
        }
    }

    fn new(mant: i128, scale: i64) -> Option<Decimal> {
        let (mut mant, mut scale) = (mant, scale);
        if scale < 0 {
            mant = mant.checked_mul(pow10(u32::try_from(-scale).ok()?)?)?;
            scale = 0;
        }
        while scale > 0 && mant % 10 == 0 {
            mant /= 10;
            scale -= 1;
        }
        if scale > MAX_SCALE as i64 {
            // more digits than we keep: round them away
            let drop = (scale - MAX_SCALE as i64) as u32;
            mant = div_round(mant, pow10(drop.min(38))?);
            return Decimal::new(mant, MAX_SCALE as i64);
        }
        Some(Decimal {
            mant,
            scale: scale as u32,
        })
    }

    /// Parses what PostgreSQL's `numeric` input accepts, minus NaN and
    /// infinities: surrounding blanks, a sign, digits with an optional point,
    /// an optional exponent. `None` for anything else (or out of range).
    pub fn parse(s: &str) -> Option<Decimal> {
        let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
        let b = s.as_bytes();
        let mut i = 0;
        let neg = match b.first() {
            Some(b'-') => {
                i += 1;
                true
            }
            Some(b'+') => {
                i += 1;
                false
            }
            _ => false,
        };
        let mut mant: i128 = 0;
        let mut scale: i64 = 0;
        let mut digits = 0;
        let mut seen_point = false;
        while i < b.len() {
            match b[i] {
                c @ b'0'..=b'9' => {
                    if mant == 0 && c == b'0' && !seen_point {
                        // leading zeros carry no information
                    } else {
                        mant = mant.checked_mul(10)?.checked_add((c - b'0') as i128)?;
                    }
                    if seen_point {
                        scale += 1;
                    }
                    digits += 1;
                }
                b'.' if !seen_point => seen_point = true,
                _ => break,
            }
            i += 1;
        }
        if digits == 0 {
            return None;
        }
        if i < b.len() {
            if b[i] != b'e' && b[i] != b'E' {
                return None;
            }
            i += 1;
            let rest = &s[i..];
            if rest.is_empty()
                || !rest
                    .trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                || rest.trim_start_matches(['+', '-']).is_empty()
                || rest.len() > 6
            {
                return None;
            }
            let exp: i64 = rest.parse().ok()?;
            scale -= exp;
        }
        if neg {
            mant = -mant;
        }
        Decimal::new(mant, scale)
    }

    fn aligned(a: Decimal, b: Decimal) -> Option<(i128, i128, u32)> {
        let scale = a.scale.max(b.scale);
        Some((
            a.mant.checked_mul(pow10(scale - a.scale)?)?,
            b.mant.checked_mul(pow10(scale - b.scale)?)?,
            scale,
        ))
    }

    pub fn checked_add(self, other: Decimal) -> Option<Decimal> {
        let (a, b, scale) = Decimal::aligned(self, other)?;
        Decimal::new(a.checked_add(b)?, scale as i64)
    }

    pub fn checked_mul(self, other: Decimal) -> Option<Decimal> {
        Decimal::new(
            self.mant.checked_mul(other.mant)?,
            self.scale as i64 + other.scale as i64,
        )
    }

    /// `self / n`, rounded half away from zero to [`AVG_SCALE`] digits.
    pub fn div_count(self, n: u64) -> Option<Decimal> {
        if n == 0 {
            return None;
        }
        let n = n as i128;
        let q = if self.scale <= AVG_SCALE {
            let num = self.mant.checked_mul(pow10(AVG_SCALE - self.scale)?)?;
            div_round(num, n)
        } else {
            div_round(self.mant, n.checked_mul(pow10(self.scale - AVG_SCALE)?)?)
        };
        Decimal::new(q, AVG_SCALE as i64)
    }

    pub fn is_zero(&self) -> bool {
        self.mant == 0
    }
}

/// Integer division rounded half away from zero.
fn div_round(num: i128, den: i128) -> i128 {
    let q = num / den;
    let r = num % den;
    if r.abs() * 2 >= den.abs() {
        if (num < 0) != (den < 0) {
            q - 1
        } else {
            q + 1
        }
    } else {
        q
    }
}

impl Ord for Decimal {
    fn cmp(&self, other: &Self) -> Ordering {
        match Decimal::aligned(*self, *other) {
            Some((a, b, _)) => a.cmp(&b),
            None => {
                // too far apart to align exactly: the integer parts decide
                let ia = self.mant / pow10(self.scale).unwrap_or(i128::MAX);
                let ib = other.mant / pow10(other.scale).unwrap_or(i128::MAX);
                ia.cmp(&ib)
                    .then_with(|| self.mant.signum().cmp(&other.mant.signum()))
            }
        }
    }
}

impl PartialOrd for Decimal {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let digits = self.mant.unsigned_abs().to_string();
        let sign = if self.mant < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        if digits.len() > scale {
            let (int, frac) = digits.split_at(digits.len() - scale);
            write!(f, "{sign}{int}.{frac}")
        } else {
            write!(f, "{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        Decimal::parse(s).unwrap_or_else(|| panic!("{s:?} should parse"))
    }

    #[test]
    fn parses_and_prints_canonically() {
        for (input, out) in [
            ("12.50", "12.5"),
            ("3", "3"),
            ("003.000", "3"),
            ("-0.0", "0"),
            (" +7 ", "7"),
            ("-0.25", "-0.25"),
            (".5", "0.5"),
            ("5.", "5"),
            ("1e3", "1000"),
            ("1.5E-2", "0.015"),
            ("0.000001", "0.000001"),
        ] {
            assert_eq!(d(input).to_string(), out, "{input}");
        }
    }

    #[test]
    fn rejects_non_numbers() {
        for s in [
            "", " ", "n/a", "NaN", "Infinity", "1,5", "1.2.3", "--1", "1e", "e5", "12abc", ".",
            "1e+", "0x10",
        ] {
            assert!(Decimal::parse(s).is_none(), "{s:?} should not parse");
        }
    }

    #[test]
    fn sums_exactly() {
        let mut s = Decimal::ZERO;
        for _ in 0..10 {
            s = s.checked_add(d("0.1")).unwrap();
        }
        assert_eq!(s.to_string(), "1");
        assert_eq!(
            d("12.34").checked_add(d("-2.34")).unwrap().to_string(),
            "10"
        );
        assert_eq!(d("1.5").checked_mul(d("4")).unwrap().to_string(), "6");
    }

    #[test]
    fn averages_round_half_away_from_zero() {
        assert_eq!(d("10").div_count(3).unwrap().to_string(), "3.3333333333");
        assert_eq!(d("20").div_count(3).unwrap().to_string(), "6.6666666667");
        assert_eq!(d("-20").div_count(3).unwrap().to_string(), "-6.6666666667");
        assert_eq!(d("7").div_count(2).unwrap().to_string(), "3.5");
        assert_eq!(
            d("0.00000000005").div_count(1).unwrap().to_string(),
            "0.0000000001"
        );
    }

    #[test]
    fn compares_across_scales() {
        assert!(d("2") > d("1.999"));
        assert!(d("-1") < d("0.5"));
        assert_eq!(d("1.50").cmp(&d("1.5")), Ordering::Equal);
        let mut v = [d("10"), d("9.5"), d("-3"), d("100.01")];
        v.sort();
        let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
        assert_eq!(s, ["-3", "9.5", "10", "100.01"]);
    }

    #[test]
    fn out_of_range_is_none_not_a_panic() {
        assert!(Decimal::parse(&"9".repeat(60)).is_none());
        assert!(Decimal::parse("1e999999").is_none());
        let big = d(&"9".repeat(38));
        assert!(big.checked_mul(big).is_none());
    }
}

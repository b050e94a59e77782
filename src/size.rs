//! Byte sizes as platform templates and app metadata write them (`"256M"`).
//!
//! BundleGen parses these strings with Python's `humanfriendly.parse_size(...,
//! binary=True)`, and Dobby receives the resulting byte counts. So every unit
//! is a binary multiple whatever its spelling: `K`, `KB` and `KiB` all mean
//! 1024 bytes, `M`/`MB`/`MiB` 1024², `G` 1024³, `T` 1024⁴. Units are
//! case-insensitive, may follow the number after a space, and a plain number
//! (or a `B` suffix) counts bytes. A decimal number is allowed (`"1.5G"`) and
//! rounded down to whole bytes, as BundleGen does. JSON integers are byte
//! counts.

use std::fmt;

/// The accepted form, quoted in every error so the user knows what to write.
pub const ALLOWED_FORM: &str = "a number of bytes with an optional unit K, M, G or T \
     (binary multiples: 1K = 1024 bytes; KB/KiB spellings and lower case also accepted), \
     e.g. \"65536\", \"256M\" or \"1.5G\"";

/// Why a size string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid size {input:?}: {reason}; expected {ALLOWED_FORM}")]
pub struct SizeError {
    pub input: String,
    pub reason: &'static str,
}

/// A size in bytes, deserialized from a size string or a JSON integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Size(pub u64);

impl Size {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (1 << 40, "T"),
            (1 << 30, "G"),
            (1 << 20, "M"),
            (1 << 10, "K"),
        ];
        for (mult, unit) in UNITS {
            if self.0 >= mult && self.0.is_multiple_of(mult) {
                return write!(f, "{}{unit}", self.0 / mult);
            }
        }
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Size {
    type Err = SizeError;
    fn from_str(s: &str) -> Result<Self, SizeError> {
        parse(s).map(Size)
    }
}

impl<'de> serde::Deserialize<'de> for Size {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Size;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(ALLOWED_FORM)
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                Ok(Size(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v).map(Size).map_err(|_| {
                    E::custom(format!(
                        "invalid size {v}: sizes cannot be negative; expected {ALLOWED_FORM}"
                    ))
                })
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Size, E> {
                parse(v).map(Size).map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

/// Parses a size string into bytes (see the module documentation for the form).
pub fn parse(input: &str) -> Result<u64, SizeError> {
    let err = |reason| SizeError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("it is empty"));
    }
    if s.starts_with('-') {
        return Err(err("sizes cannot be negative"));
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(num_end);
    let unit = unit.trim_start();
    let mult: u64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" | "byte" | "bytes" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(err("unknown unit")),
    };
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(err("no number before the unit"));
    }
    if frac_part.contains('.') {
        return Err(err("more than one decimal point"));
    }
    let int: u64 = if int_part.is_empty() {
        0
    } else {
        int_part.parse().map_err(|_| err("number too large"))?
    };
    let mut bytes = int.checked_mul(mult).ok_or_else(|| err("size too large"))?;
    if !frac_part.is_empty() {
        // Exact rational arithmetic: floor(0.frac * mult) without floats.
        let digits = &frac_part[..frac_part.len().min(12)];
        let num: u128 = digits.parse().map_err(|_| err("bad decimal part"))?;
        let den = 10u128.pow(digits.len() as u32);
        let frac = (num * u128::from(mult)) / den;
        bytes = bytes
            .checked_add(frac as u64)
            .ok_or_else(|| err("size too large"))?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_binary_multiples() {
        assert_eq!(parse("256M"), Ok(256 << 20));
        assert_eq!(parse("256MB"), Ok(256 << 20));
        assert_eq!(parse("256 MiB"), Ok(256 << 20));
        assert_eq!(parse("65536k"), Ok(65536 << 10));
        assert_eq!(parse("4096M"), Ok(4 << 30));
        assert_eq!(parse("2g"), Ok(2 << 30));
        assert_eq!(parse("1T"), Ok(1 << 40));
        assert_eq!(parse("23"), Ok(23));
        assert_eq!(parse("13b"), Ok(13));
        assert_eq!(parse("1.5G"), Ok(3 << 29));
        assert_eq!(parse("0.5K"), Ok(512));
    }

    #[test]
    fn errors_name_the_allowed_form() {
        for bad in [
            "-5M",
            "10ZB",
            "",
            "M",
            "1.2.3M",
            "99999999999999999999",
            "20000000T",
        ] {
            let e = parse(bad).expect_err(bad);
            let msg = e.to_string();
            assert!(msg.contains(&format!("{bad:?}")), "{msg}");
            assert!(msg.contains("K, M, G or T"), "{msg}");
        }
        assert_eq!(
            parse("-5M").map_err(|e| e.reason),
            Err("sizes cannot be negative")
        );
        assert_eq!(parse("10ZB").map_err(|e| e.reason), Err("unknown unit"));
    }

    #[test]
    fn display_uses_largest_exact_unit() {
        assert_eq!(Size(256 << 20).to_string(), "256M");
        assert_eq!(Size(1536).to_string(), "1536");
        assert_eq!(Size(3 << 29).to_string(), "1536M");
    }

    #[test]
    fn deserializes_strings_and_integers() {
        let s: Size = serde_json::from_str("\"100M\"").expect("valid");
        assert_eq!(s, Size(100 << 20));
        let s: Size = serde_json::from_str("4096").expect("valid");
        assert_eq!(s, Size(4096));
        assert!(serde_json::from_str::<Size>("-1").is_err());
        assert!(serde_json::from_str::<Size>("true").is_err());
    }
}

//! Byte amounts and rates as people type them (`500KB/s`, `1.5MiB/s`,
//! `20Mbps`, `2GiB`): one parser for the daemon's config and the clients.
//! Pure; exact integer arithmetic, no floats. Also the one display of
//! amounts with binary units (`1.5 MiB/s`) that every client uses.

use std::fmt;

/// The accepted forms, quoted in every parse error so a user can fix the value.
pub const ACCEPTED_FORMS: &str = "accepted forms: plain bytes/s (1048576), \
decimal 500KB/s or 500kB/s (1 KB = 1000 B), binary 1MiB/s or 1.5MiB/s (1 KiB = 1024 B), \
bits 20Mbit/s or 20Mbps (divided by 8); units B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, \
bit, kbit, Mbit, Gbit, Tbit, bps, kbps, Mbps, Gbps, Tbps";

/// A number with a unit as typed: how many bytes, and whether the unit said
/// "per second" (`/s`, `bps`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    pub bytes: u64,
    pub per_second: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{input}': {reason}; {ACCEPTED_FORMS}")]
pub struct UnitError {
    input: String,
    reason: &'static str,
}

/// Multiplier as a fraction so that bits (÷8) stay exact.
fn unit_factor(unit: &str) -> Option<(u128, u128)> {
    const K: u128 = 1000;
    const KI: u128 = 1024;
    Some(match unit {
        "" | "B" => (1, 1),
        "KB" | "kB" => (K, 1),
        "MB" => (K.pow(2), 1),
        "GB" => (K.pow(3), 1),
        "TB" => (K.pow(4), 1),
        "KiB" => (KI, 1),
        "MiB" => (KI.pow(2), 1),
        "GiB" => (KI.pow(3), 1),
        "TiB" => (KI.pow(4), 1),
        "bit" => (1, 8),
        "kbit" | "Kbit" => (K, 8),
        "Mbit" => (K.pow(2), 8),
        "Gbit" => (K.pow(3), 8),
        "Tbit" => (K.pow(4), 8),
        _ => return None,
    })
}

/// Parses an amount: a non-negative decimal number, optional spaces, an
/// optional unit and an optional `/s` (or the `bps` family, which implies it).
pub fn parse_amount(input: &str) -> Result<Amount, UnitError> {
    let err = |reason| UnitError {
        input: input.to_owned(),
        reason,
    };
    let s = input.trim();
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    if num.is_empty() {
        return Err(err("it does not start with a number"));
    }
    let mut unit = rest.trim_start();
    let mut per_second = false;
    if let Some(u) = unit.strip_suffix("/s") {
        unit = u;
        per_second = true;
    } else if let Some(prefix) = unit.strip_suffix("bps") {
        unit = match prefix {
            "" => "bit",
            "k" | "K" => "kbit",
            "M" => "Mbit",
            "G" => "Gbit",
            "T" => "Tbit",
            _ => return Err(err("unknown unit")),
        };
        per_second = true;
    }
    let (mul, div) = unit_factor(unit).ok_or_else(|| err("unknown unit"))?;

    let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(err("malformed number"));
    }
    // 24 digits times the largest multiplier (TiB) still fit in a u128.
    if int_part.len() + frac_part.len() > 24 {
        return Err(err("too large"));
    }
    let digits: String = [int_part, frac_part].concat();
    let mantissa: u128 = digits.parse().map_err(|_| err("malformed number"))?;
    let scale = 10u128.pow(u32::try_from(frac_part.len()).map_err(|_| err("too large"))?);
    let num = mantissa.checked_mul(mul).ok_or_else(|| err("too large"))?;
    let den = scale * div;
    // Round half up: a fraction of a byte is not worth an error.
    let bytes = (num + den / 2) / den;
    let bytes = u64::try_from(bytes).map_err(|_| err("too large"))?;
    Ok(Amount { bytes, per_second })
}

const BINARY_UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];

/// `512 B`, `1.5 KiB`, `12.0 GiB`: binary units, one decimal above bytes.
pub fn format_bytes(bytes: u64) -> String {
    Binary(bytes).to_string()
}

/// `1.5 MiB/s`.
pub fn format_rate(bps: u64) -> String {
    format!("{}/s", Binary(bps))
}

struct Binary(u64);

impl fmt::Display for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        #[allow(
            clippy::cast_precision_loss,
            reason = "display only, one decimal shown"
        )]
        let mut v = self.0 as f64;
        let mut unit = 0;
        while v >= 1024.0 && unit < BINARY_UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        // 1023.96 KiB would print as "1024.0 KiB": carry into the next unit.
        if v >= 1023.95 && unit < BINARY_UNITS.len() - 1 {
            v /= 1024.0;
            unit += 1;
        }
        write!(f, "{v:.1} {}", BINARY_UNITS[unit])
    }
}

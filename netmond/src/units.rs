//! Byte amounts typed in the config file (`1MiB/s`, `2GiB`, `20Mbit/s`): exact
//! integer parsing, the same forms netmonctl accepts (its `units.rs` is the twin;
//! they can move into netmon-proto together). Pure, no I/O.

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

//! Byte amounts and rates: parsing what users type (shared with netmond,
//! in `netmon_proto::units`) and formatting with binary units (`1.5 MiB/s`).

pub use netmon_proto::units::{format_bytes, format_rate, parse_amount};

#[cfg(test)]
mod tests {
    use super::*;
    use netmon_proto::units::Amount;

    #[test]
    fn parses_the_documented_forms() {
        let cases: &[(&str, u64, bool)] = &[
            ("0", 0, false),
            ("1048576", 1_048_576, false),
            ("500KB/s", 500_000, true),
            ("500kB/s", 500_000, true),
            ("500 KB/s", 500_000, true),
            ("1MiB/s", 1_048_576, true),
            ("1.5MiB/s", 1_572_864, true),
            ("20Mbit/s", 2_500_000, true),
            ("20Mbps", 2_500_000, true),
            ("8bps", 1, true),
            ("100kbps", 12_500, true),
            ("1Gbit/s", 125_000_000, true),
            ("2GiB", 2_147_483_648, false),
            ("1TB", 1_000_000_000_000, false),
            ("0.5KiB", 512, false),
            (".5KiB", 512, false),
            ("1.", 1, false),
            ("  64B/s ", 64, true),
            ("1.0005KB", 1001, false),
        ];
        for &(input, bytes, per_second) in cases {
            assert_eq!(
                parse_amount(input),
                Ok(Amount { bytes, per_second }),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_garbage_and_names_the_forms() {
        for input in [
            "12 parsecs",
            "",
            "KB/s",
            "-5KB/s",
            "1..5MB",
            "1.2.3",
            ".",
            "5 kb/s",
            "5mb",
            "1e6",
            "1Mbit/s/s",
            "99999999999999999999TiB",
            "18446744073709551616",
        ] {
            let err = parse_amount(input).expect_err(input);
            let msg = err.to_string();
            assert!(msg.contains("accepted forms"), "{msg}");
            assert!(msg.contains("500KB/s") && msg.contains("1MiB/s") && msg.contains("20Mbit/s"));
        }
    }

    #[test]
    fn u64_max_is_accepted_exactly() {
        assert_eq!(
            parse_amount("18446744073709551615").map(|a| a.bytes),
            Ok(u64::MAX)
        );
    }

    #[test]
    fn formats_with_binary_units() {
        let cases: &[(u64, &str)] = &[
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (1_572_864, "1.5 MiB"),
            (12 * 1024 * 1024 * 1024, "12.0 GiB"),
            (1_048_575, "1.0 MiB"),
            (u64::MAX, "16.0 EiB"),
        ];
        for &(bytes, want) in cases {
            assert_eq!(format_bytes(bytes), want, "{bytes}");
        }
        assert_eq!(format_rate(1_572_864), "1.5 MiB/s");
    }
}

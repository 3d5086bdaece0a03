//! `threshold list | set | clear`. Requests are built (and checked) before
//! connecting, so a bad RATE is a usage error whether or not netmond runs.

use std::io::Write;

use netmon_proto::v1;

use super::Client;
use crate::cli::{ClearArgs, DirectionArg, KindArg, SetArgs};
use crate::error::{CtlError, Result};
use crate::json::{direction_name, kind_name, ClearJson, ThresholdJson, ThresholdListJson};
use crate::output::{write_json, Align, Table};
use crate::units::{format_bytes, format_rate, parse_amount};
use crate::when::human_time;

fn kind(k: KindArg) -> v1::ThresholdKind {
    match k {
        KindArg::Rate => v1::ThresholdKind::ProcessRate,
        KindArg::Host => v1::ThresholdKind::HostRate,
        KindArg::Quota => v1::ThresholdKind::DailyQuota,
        KindArg::NewProcess => v1::ThresholdKind::NewProcess,
    }
}

fn direction(d: DirectionArg) -> v1::Direction {
    match d {
        DirectionArg::Up => v1::Direction::Up,
        DirectionArg::Down => v1::Direction::Down,
        DirectionArg::Total => v1::Direction::Total,
    }
}

pub fn set_request(args: &SetArgs) -> Result<v1::SetThresholdRequest> {
    let usage = |m: &str| CtlError::Usage(m.to_owned());
    let value = match (args.kind, args.rate.as_deref()) {
        (KindArg::NewProcess, Some(_)) => return Err(usage("--kind new-process takes no RATE")),
        (KindArg::NewProcess, None) => 0,
        (_, None) => {
            return Err(usage(
                "RATE is required, e.g. 500KB/s, 1MiB/s, 20Mbit/s (or an amount like 2GiB for --kind quota)",
            ))
        }
        (k, Some(raw)) => {
            let amount = parse_amount(raw).map_err(|e| CtlError::Usage(e.to_string()))?;
            if k == KindArg::Quota && amount.per_second {
                return Err(CtlError::Usage(format!(
                    "a quota is bytes per day, like '2GiB', not a rate like '{raw}'"
                )));
            }
            amount.bytes
        }
    };
    if args.kind == KindArg::Host && (args.process.is_some() || args.pid.is_some()) {
        return Err(usage(
            "--kind host applies to the whole host: drop --process/--pid",
        ));
    }
    if args.pid == Some(0) {
        return Err(usage("--pid must be a process id above 0"));
    }
    Ok(v1::SetThresholdRequest {
        kind: kind(args.kind) as i32,
        direction: if args.kind == KindArg::NewProcess {
            v1::Direction::Unspecified as i32
        } else {
            direction(args.direction) as i32
        },
        value,
        process_name: args.process.clone().unwrap_or_default(),
        pid: args.pid.unwrap_or(0),
    })
}

pub fn clear_request(args: &ClearArgs) -> v1::ClearThresholdsRequest {
    v1::ClearThresholdsRequest {
        all: args.all,
        id: args.id.unwrap_or(0),
        process_name: args.process.clone().unwrap_or_default(),
        pid: args.pid.unwrap_or(0),
        kind: args.kind.map_or(v1::ThresholdKind::Unspecified, kind) as i32,
        default_rule: args.default,
    }
}

fn value_text(t: &v1::Threshold) -> String {
    match v1::ThresholdKind::try_from(t.kind) {
        Ok(v1::ThresholdKind::DailyQuota) => format!("{}/day", format_bytes(t.value)),
        Ok(v1::ThresholdKind::NewProcess) => "-".to_owned(),
        _ => format_rate(t.value),
    }
}

fn selector(t: &v1::Threshold) -> String {
    match (t.pid, t.process_name.as_str()) {
        (0, "") if t.kind == v1::ThresholdKind::HostRate as i32 => "(host)".to_owned(),
        (0, "") => "(default)".to_owned(),
        (0, name) => format!("name {name}"),
        (pid, _) => format!("pid {pid}"),
    }
}

pub async fn list(mut client: Client, json: bool, out: &mut dyn Write) -> Result<()> {
    let l = client
        .list_thresholds(v1::ListThresholdsRequest {})
        .await?
        .into_inner();
    if json {
        let doc = ThresholdListJson {
            thresholds: l.thresholds.iter().map(ThresholdJson::from).collect(),
            presets: l.presets.clone(),
        };
        return write_json(out, &doc);
    }
    let mut t = Table::new(&[
        ("ID", Align::Right),
        ("KIND", Align::Left),
        ("APPLIES TO", Align::Left),
        ("DIRECTION", Align::Left),
        ("LIMIT", Align::Right),
        ("SOURCE", Align::Left),
        ("CREATED", Align::Left),
    ]);
    for th in &l.thresholds {
        t.row(vec![
            th.id.to_string(),
            kind_name(th.kind).to_owned(),
            selector(th),
            direction_name(th.direction).unwrap_or("-").to_owned(),
            value_text(th),
            th.source.clone(),
            human_time(th.created_ms),
        ]);
    }
    t.write_to(out)?;
    Ok(())
}

pub async fn set(
    mut client: Client,
    req: v1::SetThresholdRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let th = client.set_threshold(req).await?.into_inner();
    if json {
        return write_json(out, &ThresholdJson::from(&th));
    }
    writeln!(
        out,
        "threshold {} set: {} {} {} {}",
        th.id,
        kind_name(th.kind),
        selector(&th),
        direction_name(th.direction).unwrap_or(""),
        value_text(&th)
    )?;
    Ok(())
}

pub async fn clear(
    mut client: Client,
    req: v1::ClearThresholdsRequest,
    json: bool,
    out: &mut dyn Write,
) -> Result<()> {
    let r = client.clear_thresholds(req).await?.into_inner();
    if json {
        return write_json(out, &ClearJson { removed: r.removed });
    }
    writeln!(out, "{} threshold(s) removed", r.removed)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: Option<&str>, kind: KindArg) -> SetArgs {
        SetArgs {
            rate: rate.map(str::to_owned),
            process: Some("firefox".into()),
            pid: None,
            direction: DirectionArg::Down,
            kind,
        }
    }

    #[test]
    fn rate_is_parsed_into_the_request() {
        let req = set_request(&args(Some("1.5MiB/s"), KindArg::Rate)).expect("valid");
        assert_eq!(req.value, 1_572_864);
        assert_eq!(req.kind, v1::ThresholdKind::ProcessRate as i32);
        assert_eq!(req.direction, v1::Direction::Down as i32);
        assert_eq!(req.process_name, "firefox");
    }

    #[test]
    fn bad_values_are_usage_errors() {
        let cases = [
            (Some("12 parsecs"), KindArg::Rate),
            (Some("1MiB/s"), KindArg::Quota),
            (None, KindArg::Rate),
            (Some("1MiB/s"), KindArg::NewProcess),
            (Some("1MiB/s"), KindArg::Host),
        ];
        for (rate, kind) in cases {
            let err = set_request(&args(rate, kind)).expect_err("must fail");
            assert_eq!(err.exit_code(), 2, "{err}");
        }
    }

    #[test]
    fn quota_takes_an_amount() {
        let req = set_request(&args(Some("2GiB"), KindArg::Quota)).expect("valid");
        assert_eq!(req.value, 2 * 1024 * 1024 * 1024);
    }
}

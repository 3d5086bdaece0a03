//! The API from the gRPC project's own clients, used as a new user would:
//! Python `grpcio` with stubs generated from the shipped .proto at test
//! time, and `grpcio-reflection` with no .proto at all. No client option is
//! set (in particular no `grpc.default_authority`), so the C core sends the
//! socket path as `:authority`. The venv comes from packaging/dev/pyenv.sh.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::harness::*;

/// One driver for every case; prints one JSON document on stdout.
const CLIENT_PY: &str = r#"
import json, sys
import grpc

mode, sock = sys.argv[1], sys.argv[2]
channel = grpc.insecure_channel("unix://" + sock)
out = {}
try:
    if mode in ("read", "set-threshold"):
        from netmon.v1 import netmon_pb2 as pb, netmon_pb2_grpc as rpc
    if mode == "read":
        stub = rpc.NetmonStub(channel)
        out["version"] = stub.GetStatus(pb.StatusRequest(), timeout=10).version
        frames = stub.Subscribe(pb.SubscribeRequest(every_ticks=1), timeout=20)
        out["seqs"] = []
        for f in frames:
            out["seqs"].append(f.seq)
            if len(out["seqs"]) == 3:
                frames.cancel()
                break
    elif mode == "set-threshold":
        stub = rpc.NetmonStub(channel)
        t = stub.SetThreshold(pb.SetThresholdRequest(
            kind=pb.THRESHOLD_KIND_PROCESS_RATE, direction=pb.DIRECTION_TOTAL,
            value=1048576, process_name="pyclient-e2e"), timeout=10)
        out["id"] = t.id
    elif mode == "reflect":
        from google.protobuf import descriptor_pool, message_factory
        from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
            ProtoReflectionDescriptorDatabase)
        db = ProtoReflectionDescriptorDatabase(channel)
        out["services"] = sorted(db.get_services())
        pool = descriptor_pool.DescriptorPool(db)
        svc = pool.FindServiceByName("netmon.v1.Netmon")
        out["methods"] = sorted(m.name for m in svc.methods)
        m = svc.methods_by_name["GetStatus"]
        req = message_factory.GetMessageClass(m.input_type)
        resp = message_factory.GetMessageClass(m.output_type)
        call = channel.unary_unary("/netmon.v1.Netmon/GetStatus",
            request_serializer=req.SerializeToString,
            response_deserializer=resp.FromString)
        out["version"] = call(req(), timeout=10).version
except grpc.RpcError as e:
    out["code"] = e.code().name
    out["details"] = e.details()
print(json.dumps(out))
"#;

/// The venv made by packaging/dev/pyenv.sh (`NETMON_PYENV` overrides).
fn python() -> PathBuf {
    let venv = std::env::var_os("NETMON_PYENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/pyenv"));
    let py = venv.join("bin/python");
    assert!(
        py.exists(),
        "no Python gRPC venv at '{}': run `packaging/dev/pyenv.sh` (test.sh does) or set NETMON_PYENV",
        venv.display()
    );
    py
}

/// Stubs generated from proto/netmon/v1/netmon.proto with grpcio-tools,
/// plus the driver, in a directory any test user can read.
pub struct Client {
    pub dir: tempfile::TempDir,
    pub python: PathBuf,
}

impl Client {
    pub fn new() -> Client {
        let python = python();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        let proto = Path::new(env!("CARGO_MANIFEST_DIR")).join("../proto");
        let out = std::process::Command::new(&python)
            .args(["-m", "grpc_tools.protoc", "-I"])
            .arg(&proto)
            .arg(format!("--python_out={}", dir.path().display()))
            .arg(format!("--grpc_python_out={}", dir.path().display()))
            .arg("netmon/v1/netmon.proto")
            .output()
            .expect("run grpc_tools.protoc");
        assert!(
            out.status.success(),
            "stub generation failed: {}",
            stderr(&out)
        );
        std::fs::write(dir.path().join("client.py"), CLIENT_PY).expect("write driver");
        Client { dir, python }
    }

    /// `script` (written beside the stubs) as `user` with `args`; its
    /// stdout parsed as one JSON document.
    pub fn run_script(
        &self,
        user: &TempUser,
        script: &str,
        args: &[&str],
        secs: u64,
    ) -> serde_json::Value {
        std::fs::write(self.dir.path().join("script.py"), script).expect("write script");
        let child = user
            .command(&self.python)
            .current_dir(self.dir.path())
            .arg("script.py")
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run python");
        let out = wait_output(child, secs);
        assert!(
            out.status.success(),
            "python {args:?} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("python {args:?}: bad JSON ({e}): {}", stdout(&out)))
    }

    fn run(&self, user: &TempUser, mode: &str, socket: &Path) -> serde_json::Value {
        let out = user
            .command(&self.python)
            .current_dir(self.dir.path())
            .arg("client.py")
            .arg(mode)
            .arg(socket)
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "python {mode} failed: {}{}",
            stdout(&out),
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("python {mode}: bad JSON ({e}): {}", stdout(&out)))
    }
}

#[test]
fn python_grpcio_reads_status_and_three_stream_frames_without_options() {
    let client = Client::new();
    let d = Daemon::start(DaemonOpts {
        tick_ms: Some(200),
        ..Default::default()
    });
    let member = TempUser::new(&[d.group.name()]);
    let v = client.run(&member, "read", &d.socket);
    assert!(
        v.get("code").is_none(),
        "call failed: {v}\n{}",
        d.log_text()
    );
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
    let seqs: Vec<u64> = v["seqs"]
        .as_array()
        .expect("seqs")
        .iter()
        .map(|s| s.as_u64().expect("seq"))
        .collect();
    assert_eq!(seqs.len(), 3, "{v}");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "frames come in tick order: {seqs:?}"
    );
}

#[test]
fn python_grpcio_control_call_is_refused_to_a_reader_and_allowed_to_a_controller() {
    let client = Client::new();
    let control = TempGroup::new();
    let d = Daemon::start(DaemonOpts {
        config_extra: format!("control_group = \"{}\"\n", control.name),
        ..Default::default()
    });
    let reader = TempUser::new(&[d.group.name()]);
    let v = client.run(&reader, "set-threshold", &d.socket);
    assert_eq!(v["code"], "PERMISSION_DENIED", "{v}");
    let details = v["details"].as_str().unwrap_or_default();
    assert!(
        details.contains("control group"),
        "a clear reason: {details}"
    );
    let names = |list: &serde_json::Value| -> Vec<String> {
        list["thresholds"]
            .as_array()
            .expect("thresholds")
            .iter()
            .filter_map(|t| t["process_name"].as_str().map(str::to_owned))
            .collect()
    };
    assert!(
        !names(&d.ctl_json(&["threshold", "list"])).contains(&"pyclient-e2e".to_owned()),
        "the refused call changed nothing"
    );

    let admin = TempUser::new(&[d.group.name(), &control.name]);
    let v = client.run(&admin, "set-threshold", &d.socket);
    assert!(v.get("code").is_none(), "controller refused: {v}");
    assert!(v["id"].as_u64().is_some_and(|id| id > 0), "{v}");
    assert!(names(&d.ctl_json(&["threshold", "list"])).contains(&"pyclient-e2e".to_owned()));
}

#[test]
fn reflection_serves_the_schema_to_grpcio_reflection_without_a_proto_file() {
    // "reflect" mode imports no generated stubs.
    let client = Client::new();
    let d = Daemon::start(DaemonOpts::default());
    let member = TempUser::new(&[d.group.name()]);
    let v = client.run(&member, "reflect", &d.socket);
    assert!(v.get("code").is_none(), "reflection failed: {v}");
    let services: Vec<&str> = v["services"]
        .as_array()
        .expect("services")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    assert!(services.contains(&"netmon.v1.Netmon"), "{v}");
    let methods: Vec<&str> = v["methods"]
        .as_array()
        .expect("methods")
        .iter()
        .filter_map(|s| s.as_str())
        .collect();
    for m in ["GetStatus", "Subscribe", "SetThreshold", "Export"] {
        assert!(methods.contains(&m), "{m} missing: {v}");
    }
    assert_eq!(
        v["version"],
        env!("CARGO_PKG_VERSION"),
        "a call built from reflected descriptors only"
    );
}

/// The ```python block of README's "Scripting the API".
fn readme_example() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("read README.md");
    let section = readme
        .split("## Scripting the API")
        .nth(1)
        .expect("README has a 'Scripting the API' section");
    let code = section
        .split("```python\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("a python block in 'Scripting the API'");
    code.to_owned()
}

#[test]
fn readme_python_example_runs_as_a_controller() {
    let client = Client::new();
    std::fs::write(client.dir.path().join("example.py"), readme_example()).expect("write");
    let control = TempGroup::new();
    let d = Daemon::start(DaemonOpts {
        config_extra: format!("control_group = \"{}\"\n", control.name),
        tick_ms: Some(200),
        ..Default::default()
    });
    let admin = TempUser::new(&[d.group.name(), &control.name]);
    let child = admin
        .command(&client.python)
        .current_dir(client.dir.path())
        .arg("example.py")
        .env("NETMON_SOCKET", &d.socket)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the example");
    let out = wait_output(child, 30);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "example failed: {text}{}",
        stderr(&out)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "status, 3 frames, threshold: {text}");
    assert!(lines[0].starts_with(&format!("netmond {}", env!("CARGO_PKG_VERSION"))));
    assert!(lines[4].starts_with("threshold "), "{text}");
    let list = d.ctl_json(&["threshold", "list"]);
    assert!(
        list["thresholds"]
            .as_array()
            .expect("thresholds")
            .iter()
            .any(|t| t["process_name"] == "firefox" && t["value"] == 1 << 20),
        "{list}"
    );
}

//! Compiles the eBPF socket-accounting programs (bpf/*.bpf.c) with clang into
//! OUT_DIR, where `sockacct` embeds them. clang and libbpf-dev come from
//! packaging/dev/deps.sh (Debian: `apt install clang libbpf-dev`).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let src = "bpf/sockacct.bpf.c";
    println!("cargo:rerun-if-changed={src}");
    println!("cargo:rerun-if-env-changed=NETMON_CLANG");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let obj = out.join("sockacct.bpf.o");
    let clang = env::var("NETMON_CLANG").unwrap_or_else(|_| "clang".to_owned());
    // <asm/types.h> lives in the multiarch include directory on Debian.
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let multiarch = match arch.as_str() {
        "x86_64" => "x86_64-linux-gnu",
        "aarch64" => "aarch64-linux-gnu",
        "arm" => "arm-linux-gnueabihf",
        "riscv64" => "riscv64-linux-gnu",
        other => other,
    };
    let status = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{multiarch}"))
        .args(["-c", src, "-o"])
        .arg(&obj)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("clang failed to compile {src} ({s}); see the messages above"),
        Err(e) => panic!(
            "cannot run '{clang}' to compile {src}: {e}. Install clang and libbpf-dev \
             (packaging/dev/deps.sh does), or set NETMON_CLANG to a clang binary"
        ),
    }
}

//! Two link-time layouts for the relay binary, each applied only where a probe
//! shows the toolchain supports it.
//!
//! **Packed relative relocations** (`-z pack-relative-relocs`, DT_RELR).
//!
//! The relay is a position-independent executable, and most of its
//! relocations are relative ones (vtables, string tables). Stored as RELA
//! entries they take 24 bytes each, about 470 KiB, all of which the dynamic
//! loader reads at every start and which then stay resident. As DT_RELR they
//! take a few KiB. Needs GNU ld 2.38 or lld 15, and glibc 2.36 at run time
//! (Debian 12). Elsewhere the probe below fails and the relay links as before.
//! `BSV_P2P_NO_RELR=1` skips it, e.g. to build on a newer system for an older
//! one.
//!
//! **Hot functions first** (`--symbol-ordering-file=layout/hot-functions.txt`).
//! The kernel maps code in 64 KiB windows around each page the process
//! touches, so code executed once here and once there, spread over the
//! 7.5 MB of text, kept about 5 MB of it resident. The file lists the
//! functions a profiled run executed (`scripts/layout-profile` writes it);
//! the linker places them first, side by side, and the rest after, unchanged.
//! Symbols the file names and the binary lacks (after a dependency, the
//! compiler or the unified features changed: names carry hashes that move)
//! are skipped: the layout degrades, the program does not
//! change. Needs lld (rustc's default linker on x86_64 Linux since 1.90); the
//! probe links a small Rust program with the flag through the same rustc and
//! linker. `BSV_P2P_NO_LAYOUT=1` skips it.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

/// The hot-function list, relative to this package.
const LAYOUT: &str = "layout/hot-functions.txt";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BSV_P2P_NO_RELR");
    println!("cargo:rerun-if-env-changed=BSV_P2P_NO_LAYOUT");
    println!("cargo:rerun-if-env-changed=CC");
    println!("cargo:rerun-if-changed={LAYOUT}");
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    // The probes run what they link: only for a native Linux glibc build.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if !flag_set("BSV_P2P_NO_RELR") {
        match probe() {
            Ok(()) => println!("cargo:rustc-link-arg-bins={FLAG}"),
            Err(why) => println!("cargo:warning=linking without DT_RELR: {why}"),
        }
    }
    if !flag_set("BSV_P2P_NO_LAYOUT") {
        match layout() {
            Ok(args) => {
                for arg in args {
                    println!("cargo:rustc-link-arg-bins={arg}");
                }
            }
            Err(why) => println!("cargo:warning=linking without the hot-function layout: {why}"),
        }
    }
}

fn flag_set(name: &str) -> bool {
    env::var_os(name).is_some_and(|v| v != "0")
}

/// The linker arguments that place the listed functions first, once a small
/// Rust program linked with them through this build's rustc and linker runs.
fn layout() -> Result<Vec<String>, String> {
    let dir = PathBuf::from(
        env::var("CARGO_MANIFEST_DIR").map_err(|e| format!("CARGO_MANIFEST_DIR: {e}"))?,
    );
    let list = dir.join(LAYOUT);
    if !list.is_file() {
        return Err(format!("{} is missing", list.display()));
    }
    let list = list
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", list.display()))?;
    if list.contains(',') {
        // -Wl, splits its argument at commas.
        return Err(format!("{list} contains a comma"));
    }
    let args = vec![
        format!("-Wl,--symbol-ordering-file={list}"),
        "-Wl,--no-warn-symbol-ordering".to_string(),
    ];
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let src = out.join("layout_probe.rs");
    let exe = out.join("layout_probe");
    std::fs::write(&src, "fn main() {}\n").map_err(|e| format!("write {}: {e}", src.display()))?;
    let rustc = env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let mut cmd = Command::new(&rustc);
    cmd.arg("--edition=2021").arg("-o").arg(&exe).arg(&src);
    if let Ok(flags) = env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Ok(linker) = env::var("RUSTC_LINKER") {
        cmd.arg("-C").arg(format!("linker={linker}"));
    }
    for arg in &args {
        cmd.arg("-C").arg(format!("link-arg={arg}"));
    }
    let link = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {rustc}: {e}"))?;
    if !link.status.success() {
        return Err(format!(
            "the linker does not take --symbol-ordering-file: {}",
            String::from_utf8_lossy(&link.stderr).trim()
        ));
    }
    run_probe(&exe, "--symbol-ordering-file")?;
    Ok(args)
}

/// Runs a probe program the build just linked with `flag`.
fn run_probe(exe: &std::path::Path, flag: &str) -> Result<(), String> {
    let run = Command::new(exe)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", exe.display()))?;
    if !run.status.success() {
        return Err(format!(
            "the probe linked with {flag} does not run: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    Ok(())
}

/// Links and runs a small position-independent program with the flag; any
/// output from the linker (a warning that it ignored the flag) counts as
/// unsupported.
fn probe() -> Result<(), String> {
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| format!("OUT_DIR: {e}"))?);
    let src = out.join("relr_probe.c");
    let exe = out.join("relr_probe");
    std::fs::write(
        &src,
        "static const char *p = \"relr\";\nint main(void) { return p[0] != 'r'; }\n",
    )
    .map_err(|e| format!("write {}: {e}", src.display()))?;
    let cc = env::var("CC").unwrap_or_else(|_| "cc".into());
    let link = Command::new(&cc)
        .args(["-fPIE", "-pie", FLAG, "-o"])
        .arg(&exe)
        .arg(&src)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run {cc}: {e}"))?;
    if !link.status.success() || !link.stderr.is_empty() || !link.stdout.is_empty() {
        return Err(format!(
            "{cc} {FLAG}: {}",
            String::from_utf8_lossy(&link.stderr).trim()
        ));
    }
    run_probe(&exe, FLAG)
}

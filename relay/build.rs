//! Links the relay with packed relative relocations (`-z pack-relative-relocs`,
//! DT_RELR) where the linker and the C library support them.
//!
//! The relay is a position-independent executable, and most of its
//! relocations are relative ones (vtables, string tables). Stored as RELA
//! entries they take 24 bytes each, about 470 KiB, all of which the dynamic
//! loader reads at every start and which then stay resident. As DT_RELR they
//! take a few KiB. Needs GNU ld 2.38 or lld 15, and glibc 2.36 at run time
//! (Debian 12). Elsewhere the probe below fails and the relay links as before.
//! `BSV_P2P_NO_RELR=1` skips it, e.g. to build on a newer system for an older
//! one.

use std::env;
use std::path::PathBuf;
use std::process::{Command, Stdio};

const FLAG: &str = "-Wl,-z,pack-relative-relocs";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=BSV_P2P_NO_RELR");
    println!("cargo:rerun-if-env-changed=CC");
    if env::var_os("BSV_P2P_NO_RELR").is_some_and(|v| v != "0") {
        return;
    }
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    // The probe runs what it links: only for a native Linux glibc build.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    match probe() {
        Ok(()) => println!("cargo:rustc-link-arg-bins={FLAG}"),
        Err(why) => println!("cargo:warning=linking without DT_RELR: {why}"),
    }
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
    let run = Command::new(&exe)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("run the probe: {e}"))?;
    if !run.status.success() {
        return Err(format!(
            "the probe linked with {FLAG} does not run: {}",
            String::from_utf8_lossy(&run.stderr).trim()
        ));
    }
    Ok(())
}

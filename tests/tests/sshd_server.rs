//! The sshd fixture the backup sidecar ships its archives to: rsync over
//! ssh with the fixture's key works, a key that is not authorized is
//! refused, passwords are not offered, an outage (sshd stopped) fails with
//! ssh's "Connection refused", and after a restart it works again.

use std::path::Path;
use std::process::{Command, Output, Stdio};

use bsv_p2p_tests::sshd::{keygen, Sshd};
use bsv_p2p_tests::ScratchDir;

/// rsync -a of `src/` into `dest` on the server, through `rsh`.
fn rsync(rsh: &str, src: &Path, dest: &str) -> Output {
    Command::new("rsync")
        .arg("-a")
        .arg("-e")
        .arg(rsh)
        .arg(format!("{}/", src.display()))
        .arg(dest)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run rsync ({e}); it is the Debian package rsync"))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A directory with a couple of files, one in a subdirectory.
fn source_tree(label: &str) -> ScratchDir {
    let src = ScratchDir::new(label);
    std::fs::write(src.join("wallet.db"), vec![0x5a_u8; 64 * 1024]).expect("write");
    std::fs::create_dir(src.join("meta")).expect("mkdir");
    std::fs::write(src.join("meta/manifest.json"), b"{\"tx\":42}\n").expect("write");
    src
}

fn assert_shipped(sshd: &Sshd, into: &str) {
    let remote = sshd.remote_dir().join(into);
    assert_eq!(
        std::fs::read(remote.join("wallet.db")).expect("wallet.db shipped"),
        vec![0x5a_u8; 64 * 1024]
    );
    assert_eq!(
        std::fs::read(remote.join("meta/manifest.json")).expect("manifest shipped"),
        b"{\"tx\":42}\n"
    );
}

#[test]
fn rsync_over_ssh_ships_a_directory() {
    let sshd = Sshd::start();
    let src = source_tree("sshd-src");
    let dest = format!(
        "{}:{}/first/",
        sshd.user_at_host(),
        sshd.remote_dir().display()
    );
    let out = rsync(&sshd.ssh_command(), src.path(), &dest);
    assert!(
        out.status.success(),
        "rsync failed with {}: {}\nsshd log: {}",
        out.status,
        text(&out.stderr),
        sshd.log()
    );
    assert_shipped(&sshd, "first");
    assert!(
        sshd.log().contains("Accepted publickey for"),
        "sshd log: {}",
        sshd.log()
    );
}

#[test]
fn a_key_that_is_not_authorized_is_refused() {
    let sshd = Sshd::start();
    let keys = ScratchDir::new("sshd-wrong-key");
    let wrong = keys.join("wrong_key");
    keygen(&wrong, "not-authorized");
    let src = source_tree("sshd-src");
    let dest = format!(
        "{}:{}/wrong/",
        sshd.user_at_host(),
        sshd.remote_dir().display()
    );
    let out = rsync(&sshd.ssh_command_with_key(&wrong), src.path(), &dest);
    let stderr = text(&out.stderr);
    eprintln!(
        "wrong key: rsync exit {:?}, stderr:\n{stderr}",
        out.status.code()
    );
    assert_ssh_failed(out.status.code(), &stderr);
    assert!(
        stderr.contains("Permission denied (publickey)"),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("Connection refused"), "stderr: {stderr}");
    assert!(!sshd.remote_dir().join("wrong").exists());

    // ssh alone says the same with its own exit code 255.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {} true",
            sshd.ssh_command_with_key(&wrong),
            sshd.user_at_host()
        ))
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    assert_ssh_failed(out.status.code(), &text(&out.stderr));
}

#[test]
fn passwords_are_not_offered() {
    let sshd = Sshd::start();
    // A client that only tries passwords and keyboard-interactive: the
    // server lists the methods that can continue, which must be publickey
    // alone.
    let out = Command::new("ssh")
        .args(["-F", "none", "-v", "-p"])
        .arg(sshd.port().to_string())
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "PubkeyAuthentication=no",
            "-o",
            "PreferredAuthentications=password,keyboard-interactive",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
        ])
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            sshd.known_hosts_file().display()
        ))
        .arg(sshd.user_at_host())
        .arg("true")
        .stdin(Stdio::null())
        .output()
        .expect("run ssh");
    let stderr = text(&out.stderr);
    assert_ssh_failed(out.status.code(), &stderr);
    assert!(
        stderr.contains("Authentications that can continue: publickey\n")
            || stderr.contains("Authentications that can continue: publickey\r\n"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("Permission denied (publickey)."),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("can continue: publickey,"), "{stderr}");
}

#[test]
fn an_outage_fails_with_connection_refused_and_a_restart_recovers() {
    let mut sshd = Sshd::start();
    let src = source_tree("sshd-src");
    let (remote, remote_dir) = (sshd.user_at_host(), sshd.remote_dir());
    let dest = |into: &str| format!("{remote}:{}/{into}/", remote_dir.display());
    let out = rsync(&sshd.ssh_command(), src.path(), &dest("before"));
    assert!(out.status.success(), "{}", text(&out.stderr));

    let port = sshd.port();
    sshd.stop();
    assert!(!sshd.is_running());
    let out = rsync(&sshd.ssh_command(), src.path(), &dest("during"));
    let stderr = text(&out.stderr);
    eprintln!(
        "server down: rsync exit {:?}, stderr:\n{stderr}",
        out.status.code()
    );
    assert_ssh_failed(out.status.code(), &stderr);
    assert!(
        stderr.contains(&format!(
            "ssh: connect to host 127.0.0.1 port {port}: Connection refused"
        )),
        "stderr: {stderr}"
    );
    assert!(!stderr.contains("Permission denied"), "stderr: {stderr}");
    assert!(!sshd.remote_dir().join("during").exists());

    sshd.start_again();
    assert_eq!(sshd.port(), port);
    // Same host key: the pinned known_hosts still matches, no prompt.
    let out = rsync(&sshd.ssh_command(), src.path(), &dest("after"));
    assert!(
        out.status.success(),
        "rsync after restart failed with {}: {}\nsshd log: {}",
        out.status,
        text(&out.stderr),
        sshd.log()
    );
    assert_shipped(&sshd, "before");
    assert_shipped(&sshd, "after");
}

#[test]
fn a_changed_host_key_is_refused() {
    let sshd = Sshd::start();
    let keys = ScratchDir::new("sshd-other-host");
    let other = keys.join("other_host_key");
    keygen(&other, "another-host");
    let other_pub = std::fs::read_to_string(keys.join("other_host_key.pub")).expect("pub");
    let key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let pinned = keys.join("known_hosts");
    std::fs::write(
        &pinned,
        format!("[127.0.0.1]:{} {}\n", sshd.port(), key.join(" ")),
    )
    .expect("write known_hosts");
    let rsh = sshd.ssh_command().replace(
        &sshd.known_hosts_file().display().to_string(),
        &pinned.display().to_string(),
    );
    let src = source_tree("sshd-src");
    let dest = format!(
        "{}:{}/mitm/",
        sshd.user_at_host(),
        sshd.remote_dir().display()
    );
    let out = rsync(&rsh, src.path(), &dest);
    let stderr = text(&out.stderr);
    eprintln!(
        "changed host key: rsync exit {:?}, stderr:\n{stderr}",
        out.status.code()
    );
    assert_ssh_failed(out.status.code(), &stderr);
    assert!(
        stderr.contains("Host key verification failed."),
        "stderr: {stderr}"
    );
    assert!(!sshd.remote_dir().join("mitm").exists());
}

/// rsync exits with ssh's 255 when the remote shell fails, or with its own
/// 12 (protocol stream ended) when it sees the closed connection first:
/// rsync 3.5 races between the two. Either way nothing was transferred; the
/// callers check ssh's message for why.
#[track_caller]
fn assert_ssh_failed(code: Option<i32>, context: &str) {
    assert!(
        matches!(code, Some(255 | 12)),
        "rsync exit {code:?}, expected 255 or 12; stderr: {context}"
    );
}

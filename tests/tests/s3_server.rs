//! The S3 server fixture ([`bsv_p2p_tests::s3::S3Server`]) against the real
//! SeaweedFS: signed round trips, signatures really checked, S3's error
//! codes, and an outage (stop, start_again) that keeps the objects.

use std::net::TcpStream;
use std::time::Instant;

use bsv_p2p_tests::s3::{object_path, Auth, S3Server};

#[test]
fn signed_put_get_list_delete_round_trip() {
    let started = Instant::now();
    let s3 = S3Server::start();
    eprintln!("S3 server ready in {:?}", started.elapsed());
    assert!(s3.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(s3.region(), "us-east-1");

    s3.create_bucket("backups");
    s3.create_bucket("backups"); // again: already ours, fine
    assert_eq!(s3.list("backups", ""), vec![]);

    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    s3.put("backups", "node-1/2024/a.tar.zst", b"first archive");
    s3.put("backups", "node-1/2024/b c+d&e.tar.zst", &big);
    s3.put("backups", "node-2/x", b"");
    s3.put("backups", "other", b"zz");

    assert_eq!(
        s3.get("backups", "node-1/2024/a.tar.zst").as_deref(),
        Some(&b"first archive"[..])
    );
    assert!(s3.get("backups", "node-1/2024/b c+d&e.tar.zst") == Some(big.clone()));
    assert_eq!(s3.get("backups", "node-2/x").as_deref(), Some(&b""[..]));
    assert_eq!(s3.get("backups", "missing"), None);

    assert_eq!(
        s3.list("backups", "node-1/"),
        vec![
            ("node-1/2024/a.tar.zst".to_string(), 13),
            ("node-1/2024/b c+d&e.tar.zst".to_string(), big.len() as u64),
        ]
    );
    let all = s3.list("backups", "");
    assert_eq!(all.len(), 4, "{all:?}");
    // Pagination: 2 keys a page gives the same listing.
    assert_eq!(s3.list_paged("backups", "", 2), all);
    assert_eq!(s3.list_paged("backups", "", 1), all);

    s3.delete("backups", "node-1/2024/a.tar.zst");
    s3.delete("backups", "node-1/2024/a.tar.zst"); // missing: fine
    assert_eq!(s3.get("backups", "node-1/2024/a.tar.zst"), None);
    assert_eq!(s3.list("backups", "node-1/").len(), 1);
}

#[test]
fn signatures_are_checked() {
    let s3 = S3Server::start();
    s3.create_bucket("guarded");
    s3.put("guarded", "k", b"secret data");
    let path = object_path("guarded", "k");

    let wrong_secret = Auth::Keys {
        access: s3.access_key(),
        secret: "not-the-secret",
    };
    for (method, body) in [
        ("GET", &b""[..]),
        ("PUT", &b"evil"[..]),
        ("DELETE", &b""[..]),
    ] {
        let a = s3.request_as(wrong_secret, method, &path, body).unwrap();
        assert_eq!(a.status, 403, "{method} wrong secret: {}", a.text());
        assert_eq!(a.code().as_deref(), Some("SignatureDoesNotMatch"));
    }
    let a = s3
        .request_as(wrong_secret, "GET", "/guarded?list-type=2&prefix=", b"")
        .unwrap();
    assert_eq!(
        a.code().as_deref(),
        Some("SignatureDoesNotMatch"),
        "{}",
        a.text()
    );

    let unknown = Auth::Keys {
        access: "AKIDUNKNOWN000000000",
        secret: s3.secret_key(),
    };
    let a = s3.request_as(unknown, "GET", &path, b"").unwrap();
    assert_eq!(a.status, 403, "unknown key: {}", a.text());
    assert_eq!(a.code().as_deref(), Some("InvalidAccessKeyId"));

    for (method, path, body) in [
        ("GET", "/", &b""[..]),
        ("PUT", "/newbucket", &b""[..]),
        ("GET", &path[..], &b""[..]),
        ("PUT", &path[..], &b"evil"[..]),
        ("DELETE", &path[..], &b""[..]),
        ("GET", "/guarded?list-type=2", &b""[..]),
    ] {
        let a = s3.request_as(Auth::Unsigned, method, path, body).unwrap();
        assert_eq!(a.status, 403, "unsigned {method} {path}: {}", a.text());
        assert_eq!(a.code().as_deref(), Some("AccessDenied"));
    }
    // Nothing of that got through.
    assert_eq!(s3.get("guarded", "k").as_deref(), Some(&b"secret data"[..]));
    assert_eq!(s3.list("guarded", ""), vec![("k".to_string(), 11)]);
}

#[test]
fn missing_bucket_is_no_such_bucket() {
    let s3 = S3Server::start();
    for (method, path, body) in [
        ("GET", "/nobucket/k", &b""[..]),
        ("PUT", "/nobucket/k", &b"data"[..]),
        ("DELETE", "/nobucket/k", &b""[..]),
        ("GET", "/nobucket?list-type=2", &b""[..]),
    ] {
        let a = s3.request(method, path, body).unwrap();
        assert_eq!(a.status, 404, "{method} {path}: {}", a.text());
        assert_eq!(a.code().as_deref(), Some("NoSuchBucket"), "{method} {path}");
    }
    s3.create_bucket("present");
    let a = s3.request("GET", "/present/nokey", b"").unwrap();
    assert_eq!((a.status, a.code().as_deref()), (404, Some("NoSuchKey")));
}

#[test]
fn objects_survive_stop_and_start_again() {
    let mut s3 = S3Server::start();
    let port = s3.port();
    let endpoint = s3.endpoint();
    s3.create_bucket("durable");
    s3.put("durable", "a", b"alpha");
    s3.put("durable", "dir/b", &[7u8; 100_000]);
    let first_pid = s3.pid();

    s3.stop();
    assert!(!s3.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after stop"
    );
    assert!(s3.request("GET", "/", b"").is_err());
    assert!(
        !std::path::Path::new(&format!("/proc/{first_pid}")).exists(),
        "weed {first_pid} still exists after stop"
    );

    let restarted = Instant::now();
    s3.start_again();
    eprintln!("S3 server ready again in {:?}", restarted.elapsed());
    assert!(s3.is_running());
    assert_eq!(s3.endpoint(), endpoint);
    assert_ne!(s3.pid(), first_pid);
    assert_eq!(s3.get("durable", "a").as_deref(), Some(&b"alpha"[..]));
    assert_eq!(s3.get("durable", "dir/b"), Some(vec![7u8; 100_000]));
    assert_eq!(
        s3.list("durable", ""),
        vec![("a".to_string(), 5), ("dir/b".to_string(), 100_000)]
    );
    // And it still takes writes.
    s3.put("durable", "c", b"after the outage");
    assert_eq!(s3.list("durable", "c").len(), 1);
}

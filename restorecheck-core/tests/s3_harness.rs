//! The S3 test harness itself: moto_server with IAM really enforced (the least-privilege reader
//! can list and read but not write or delete; unsigned and forged requests are refused), upload
//! and snapshot round trip, and the fault-injecting proxy passing through and cutting.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use common::s3::{http_request, Creds, FaultProxy, ReaderProbe, S3Server};
use common::TestDir;

#[tokio::test(flavor = "multi_thread")]
async fn moto_enforces_the_reader_policy_and_refuses_unsigned_and_forged_requests() {
    let s3 = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    println!("moto start-up: {:?}", s3.startup);
    assert!(s3.endpoint.starts_with("http://127.0.0.1:"));
    assert_ne!(s3.admin, s3.reader);

    let p = s3.probe_reader();
    assert_eq!(
        p,
        ReaderProbe { list_denied: false, get_denied: false, put_denied: true, delete_denied: true },
        "reader may list and get, never put or delete"
    );
    assert!(s3.reader_write_denied());
    // The denied delete really did not happen, and the denied put left nothing.
    let keys = s3.snapshot("probe/");
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["probe/existing"], "{keys:?}");

    // Unsigned requests are not served (moto answers 500 for a missing Authorization header
    // rather than AWS's 403; either way no data leaves).
    let (status, body) = http_request(&s3.addr(), "GET", &format!("/{}/probe/existing", s3.bucket));
    assert!(!(200..300).contains(&status), "unsigned GetObject served: {status}");
    assert!(!String::from_utf8_lossy(&body).contains("probe"), "{}", String::from_utf8_lossy(&body));
    let (status, _) = http_request(&s3.addr(), "PUT", &format!("/{}/probe/anon", s3.bucket));
    assert!(!(200..300).contains(&status), "unsigned PutObject accepted: {status}");
    let (status, _) = http_request(&s3.addr(), "DELETE", &format!("/{}/probe/existing", s3.bucket));
    assert!(!(200..300).contains(&status), "unsigned DeleteObject accepted: {status}");

    // A known key id with the wrong secret, and an unknown key id.
    let forged = Creds { access_key_id: s3.reader.access_key_id.clone(), secret_access_key: "wrong".into() };
    assert_eq!(s3.get_with(&forged, "probe/existing"), Err("SignatureDoesNotMatch".into()));
    let unknown = Creds { access_key_id: "AKIAUNKNOWN000000000".into(), secret_access_key: "x".into() };
    assert_eq!(s3.get_with(&unknown, "probe/existing"), Err("InvalidAccessKeyId".into()));
    assert_eq!(s3.get_with(&s3.reader, "probe/existing"), Ok(5));
    assert_eq!(s3.snapshot("probe/").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn upload_dir_and_snapshot_round_trip() {
    let dir = TestDir::new("s3-upload");
    let src = dir.sub("src");
    std::fs::create_dir_all(src.join("a/b")).unwrap();
    std::fs::write(src.join("top.txt"), b"hello\n").unwrap();
    let big: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(src.join("a/b/big.bin"), &big).unwrap();
    std::fs::write(src.join("a/empty"), b"").unwrap();
    let s3 = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    s3.upload_dir(&src, "backups/b1");
    s3.upload_file(&src.join("top.txt"), "single/key.txt");
    let snap = s3.snapshot("backups/");
    let got: Vec<(&str, u64)> = snap.iter().map(|(k, v)| (k.as_str(), v.0)).collect();
    assert_eq!(got, [("backups/b1/a/b/big.bin", 300_000), ("backups/b1/a/empty", 0), ("backups/b1/top.txt", 6)]);
    // ETag of a single-part upload is the MD5: "hello\n" and the empty file.
    assert_eq!(snap["backups/b1/top.txt"].1, "b1946ac92492d2347c6235b4d2611184");
    assert_eq!(snap["backups/b1/a/empty"].1, "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(s3.snapshot("single/").len(), 1);
    assert_eq!(s3.get_with(&s3.reader, "backups/b1/a/b/big.bin"), Ok(300_000));
    // Reading changes nothing.
    assert_eq!(s3.snapshot("backups/"), snap);
}

/// A tiny upstream answering every request with `len` bytes of body.
fn upstream(len: usize) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut req = Vec::new();
                let mut b = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&b[..n]),
                    }
                }
                let body = vec![b'x'; len];
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
                let _ = s.write_all(&body);
            });
        }
    });
    addr
}

/// GET through the proxy: total bytes received (head and body) before EOF or reset.
fn raw_get(addr: &str) -> usize {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = write!(s, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let mut got = 0;
    let mut b = [0u8; 8192];
    loop {
        match s.read(&mut b) {
            Ok(0) => return got,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("proxy neither forwarded nor closed within 10 s")
            }
            Err(_) => return got,
        }
    }
}

const HEAD: usize = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n".len();

#[tokio::test(flavor = "multi_thread")]
async fn proxy_passes_through_and_cuts_the_next_connections() {
    let up = upstream(1_000_000);
    let proxy = FaultProxy::start(&up);
    assert!(proxy.endpoint.starts_with("http://127.0.0.1:"));
    let full = HEAD + 1_000_000;
    let a = proxy.addr().to_string();
    assert_eq!(tokio::task::spawn_blocking(move || raw_get(&a)).await.unwrap(), full);
    assert_eq!(proxy.connections(), 1);
    assert_eq!(proxy.cuts(), 0);

    proxy.cut_next(2, 5000);
    let a = proxy.addr().to_string();
    let got = tokio::task::spawn_blocking(move || [raw_get(&a), raw_get(&a), raw_get(&a)]).await.unwrap();
    assert_eq!(got, [5000, 5000, full], "two cut after exactly 5000 bytes, the third passes");
    assert_eq!(proxy.connections(), 4);
    assert_eq!(proxy.cuts(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_stop_after_cuts_a_download_in_progress_and_refuses_new_connections() {
    // A download in progress when the server "goes away": it gets `bytes` more, then is cut,
    // and new connections are refused. The body is far larger than the loopback socket buffers.
    let len = 64_000_000;
    let full = HEAD + 1 + len; // one more Content-Length digit
    let proxy = FaultProxy::start(&upstream(len));
    let a = proxy.addr().to_string();
    let mut s = TcpStream::connect(&a).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut first = vec![0u8; 1000];
    s.read_exact(&mut first).unwrap();
    // The proxy has forwarded some amount n (at least the 1000 read, at most what the client's
    // socket buffer holds); after stop_after(3000) the client gets n + 3000 bytes, then EOF.
    std::thread::sleep(Duration::from_millis(200));
    proxy.stop_after(3000);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let total = 1000 + rest.len();
    assert!(total < full / 4, "the download was cut ({total} of {full})");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(tokio::task::spawn_blocking(move || raw_get(&a)).await.unwrap(), 0, "refused after stop");
    assert_eq!(proxy.connections(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn proxy_in_front_of_moto_serves_signed_requests_and_cuts_them() {
    let dir = TestDir::new("s3-proxy");
    let f = dir.path().join("obj");
    std::fs::write(&f, vec![7u8; 200_000]).unwrap();
    let s3 = tokio::task::spawn_blocking(S3Server::start).await.unwrap();
    s3.upload_file(&f, "obj");
    let proxy = FaultProxy::start(&s3.addr());
    assert_eq!(s3.get_via(&proxy.endpoint, &s3.reader, "obj"), Ok(200_000));
    let before = proxy.connections();
    assert!(before >= 1);
    // boto3 gets retries: 1 here, so a single cut mid-body is an error the client sees.
    proxy.cut_next(1, 10_000);
    let r = s3.get_via(&proxy.endpoint, &s3.reader, "obj");
    assert!(r.is_err(), "{r:?}");
    assert_eq!(proxy.cuts(), 1);
    assert_eq!(s3.get_via(&proxy.endpoint, &s3.reader, "obj"), Ok(200_000), "later connections pass");
}

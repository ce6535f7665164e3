//! A real S3-compatible server for tests (moto_server with IAM enforced, driven through
//! tests/s3/moto_ctl.py and boto3), and a fault-injecting TCP proxy for transient failures.
#![allow(dead_code, missing_docs, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests `moto_ctl.py setup` sends unauthenticated (its `SETUP_CALLS`): two users, two
/// inline policies, two access keys, one bucket. Every later request must be signed by a known
/// key and allowed by that user's policy. Too low and setup fails; too high and `start` panics
/// because an unsigned request was served.
const SETUP_CALLS: u32 = 7;

const DEFAULT_MOTO: &str = "/opt/restorecheck/moto/bin/moto_server";
// Through the workspace root, so that the CLI crate's tests can include this file too.
const CTL: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../restorecheck-core/tests/s3/moto_ctl.py");

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Creds {
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// What the `reader` keys may do; see [`S3Server::probe_reader`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReaderProbe {
    pub list_denied: bool,
    pub get_denied: bool,
    pub put_denied: bool,
    pub delete_denied: bool,
}

/// A moto_server on a loopback port with IAM enforcement, an admin user (s3:*), a least-privilege
/// `reader` (s3:ListBucket on the bucket, s3:GetObject on its objects) and one bucket. Region
/// us-east-1, path-style addressing. Data lives in memory; the server is killed on drop.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    pub admin: Creds,
    pub reader: Creds,
    pub bucket: String,
    pub region: String,
    /// From spawn until the port accepted connections (setup calls not included).
    pub startup: Duration,
    port: u16,
    python: PathBuf,
    log: PathBuf,
    child: Child,
}

fn moto_server() -> PathBuf {
    let p = std::env::var_os("RESTORECHECK_MOTO").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(DEFAULT_MOTO));
    assert!(
        p.is_file(),
        "moto_server not found at {} (RESTORECHECK_MOTO or {DEFAULT_MOTO}): run scripts/setup.sh --test",
        p.display()
    );
    p
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn log_tail(log: &Path) -> String {
    let s = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// A plain HTTP/1.1 request without any signature; returns (status, body).
pub fn http_request(addr: &str, method: &str, path: &str) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(s, "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
    let status =
        String::from_utf8_lossy(&buf[..head_end]).split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (status, buf[head_end..].to_vec())
}

impl S3Server {
    pub fn start() -> S3Server {
        let moto = moto_server();
        let python = moto.with_file_name("python");
        assert!(python.is_file(), "no python next to {} (the moto venv): run scripts/setup.sh --test", moto.display());
        let logs = PathBuf::from("/var/tmp/restorecheck-tests");
        std::fs::create_dir_all(&logs).unwrap();
        // The free port may be taken between probe and bind: then moto exits and we try again.
        for _ in 0..5 {
            let port = free_port();
            let log = logs.join(format!("moto-{}-{port}.log", std::process::id()));
            let t = Instant::now();
            let out = std::fs::File::create(&log).unwrap();
            let mut child = Command::new(&moto)
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .env("INITIAL_NO_AUTH_ACTION_COUNT", SETUP_CALLS.to_string())
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .stdin(Stdio::null())
                .stdout(out.try_clone().unwrap())
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", moto.display()));
            let deadline = t + Duration::from_secs(30);
            let up = loop {
                if let Some(st) = child.try_wait().unwrap() {
                    eprintln!("moto_server exited ({st}) on port {port}:\n{}", log_tail(&log));
                    break false;
                }
                if TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok() {
                    break true;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("moto_server did not listen on port {port} within 30 s:\n{}", log_tail(&log));
                }
                std::thread::sleep(Duration::from_millis(20));
            };
            if !up {
                continue;
            }
            let startup = t.elapsed();
            let mut server = S3Server {
                endpoint: format!("http://127.0.0.1:{port}"),
                admin: Creds { access_key_id: String::new(), secret_access_key: String::new() },
                reader: Creds { access_key_id: String::new(), secret_access_key: String::new() },
                bucket: "backups".into(),
                region: "us-east-1".into(),
                startup,
                port,
                python: python.clone(),
                log,
                child,
            };
            // Unauthenticated while the server's no-auth budget lasts: any key is accepted.
            let anyone = Creds { access_key_id: "setup".into(), secret_access_key: "setup".into() };
            let keys = server.ctl(&anyone, &["setup", &server.bucket.clone()]);
            let creds = |u: &str| Creds {
                access_key_id: keys[u]["access_key_id"].as_str().unwrap().into(),
                secret_access_key: keys[u]["secret_access_key"].as_str().unwrap().into(),
            };
            server.admin = creds("admin");
            server.reader = creds("reader");
            // The budget is spent exactly: an unsigned request must not be served now.
            let (status, _) = http_request(&server.addr(), "GET", &format!("/{}?list-type=2", server.bucket));
            assert!(
                !(200..300).contains(&status),
                "an unsigned ListObjectsV2 was served ({status}): INITIAL_NO_AUTH_ACTION_COUNT exceeds the setup calls"
            );
            eprintln!("moto_server listening on {} after {:?}", server.endpoint, server.startup);
            return server;
        }
        panic!("moto_server did not start on a free port in 5 attempts");
    }

    /// `127.0.0.1:PORT`, for [`FaultProxy::start`].
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Runs moto_ctl.py with `creds` in the environment (never argv); returns its JSON answer.
    fn ctl(&self, creds: &Creds, args: &[&str]) -> serde_json::Value {
        self.ctl_via(&self.endpoint, creds, args)
    }

    fn ctl_via(&self, endpoint: &str, creds: &Creds, args: &[&str]) -> serde_json::Value {
        let out = Command::new(&self.python)
            .arg(CTL)
            .arg(endpoint)
            .args(args)
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env("AWS_ACCESS_KEY_ID", &creds.access_key_id)
            .env("AWS_SECRET_ACCESS_KEY", &creds.secret_access_key)
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "moto_ctl.py {args:?} failed: {}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            log_tail(&self.log)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Uploads every file under `dir` to s3://bucket/<prefix>/<relative path> (admin keys).
    pub fn upload_dir(&self, dir: &Path, prefix: &str) {
        self.ctl(&self.admin, &["upload-dir", &self.bucket, &dir.to_string_lossy(), prefix]);
    }

    pub fn upload_file(&self, file: &Path, key: &str) {
        self.ctl(&self.admin, &["upload-file", &self.bucket, &file.to_string_lossy(), key]);
    }

    /// Every key under `prefix` with its size and ETag (the MD5 for single-part uploads).
    pub fn snapshot(&self, prefix: &str) -> BTreeMap<String, (u64, String)> {
        let v = self.ctl(&self.admin, &["snapshot", &self.bucket, prefix]);
        v.as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_string())))
            .collect()
    }

    /// GetObject with `creds`: Ok(size) or Err(error code such as AccessDenied).
    pub fn get_with(&self, creds: &Creds, key: &str) -> Result<u64, String> {
        self.get_via(&self.endpoint, creds, key)
    }

    /// [`S3Server::get_with`] through another endpoint (a [`FaultProxy`]).
    pub fn get_via(&self, endpoint: &str, creds: &Creds, key: &str) -> Result<u64, String> {
        let v = self.ctl_via(endpoint, creds, &["get", &self.bucket, key]);
        match v["size"].as_u64() {
            Some(n) => Ok(n),
            None => Err(v["error"].as_str().unwrap_or("?").to_string()),
        }
    }

    /// With the reader keys: ListObjectsV2, GetObject, PutObject, DeleteObject, each denied or
    /// not. Uploads `probe/existing` first (admin) so Get and Delete have a real target.
    pub fn probe_reader(&self) -> ReaderProbe {
        let tmp = std::env::temp_dir().join(format!("restorecheck-probe-{}-{}", std::process::id(), self.port));
        std::fs::write(&tmp, b"probe").unwrap();
        self.upload_file(&tmp, "probe/existing");
        let _ = std::fs::remove_file(&tmp);
        let v = self.ctl(&self.reader, &["probe", &self.bucket]);
        let b = |k: &str| v[k].as_bool().unwrap();
        ReaderProbe {
            list_denied: b("list_denied"),
            get_denied: b("get_denied"),
            put_denied: b("put_denied"),
            delete_denied: b("delete_denied"),
        }
    }

    /// Put and delete with the reader keys were both denied (AccessDenied).
    pub fn reader_write_denied(&self) -> bool {
        let p = self.probe_reader();
        p.put_denied && p.delete_denied
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One proxied connection.
struct Conn {
    client: TcpStream,
    upstream: TcpStream,
    /// Response bytes forwarded to the client so far.
    forwarded: AtomicU64,
    /// Cut once `forwarded` reaches this (u64::MAX: never).
    limit: AtomicU64,
    closed: AtomicBool,
}

impl Conn {
    fn cut(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.upstream.shutdown(Shutdown::Both);
    }
}

#[derive(Default)]
struct ProxyState {
    cut_next: usize,
    cut_bytes: u64,
    /// `stop_after` was called: refuse new connections.
    stopped: bool,
    conns: Vec<Arc<Conn>>,
}

/// A TCP proxy on a loopback port that forwards to an upstream and can cut connections after a
/// given number of response bytes. Runs on its own std threads, never on a test's runtime.
pub struct FaultProxy {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    addr: String,
    state: Arc<Mutex<ProxyState>>,
    accepted: Arc<AtomicUsize>,
    cuts: Arc<AtomicUsize>,
    shutdown: Arc<AtomicBool>,
    /// Response bytes forwarded on all connections, and the total at which the proxy acts as
    /// if the server went away (`u64::MAX`: never).
    total: Arc<AtomicU64>,
    stop_at_total: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Listens on a free loopback port and forwards to `upstream` (host:port).
    pub fn start(upstream: &str) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let accepted = Arc::new(AtomicUsize::new(0));
        let cuts = Arc::new(AtomicUsize::new(0));
        let shutdown = Arc::new(AtomicBool::new(false));
        let total = Arc::new(AtomicU64::new(0));
        let stop_at_total = Arc::new(AtomicU64::new(u64::MAX));
        let (st, acc, cu, sd, up) =
            (state.clone(), accepted.clone(), cuts.clone(), shutdown.clone(), upstream.to_string());
        let (tot, stop_tot) = (total.clone(), stop_at_total.clone());
        std::thread::Builder::new()
            .name("fault-proxy".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if sd.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = client else { continue };
                    acc.fetch_add(1, Ordering::SeqCst);
                    let limit = {
                        let mut s = st.lock().unwrap();
                        s.conns.retain(|c| !c.closed.load(Ordering::SeqCst));
                        if s.stopped {
                            let _ = client.shutdown(Shutdown::Both);
                            continue;
                        }
                        if s.cut_next > 0 {
                            s.cut_next -= 1;
                            s.cut_bytes
                        } else {
                            u64::MAX
                        }
                    };
                    let Ok(upstream) = TcpStream::connect(&up) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = upstream.set_nodelay(true);
                    let conn = Arc::new(Conn {
                        client: client.try_clone().unwrap(),
                        upstream: upstream.try_clone().unwrap(),
                        forwarded: AtomicU64::new(0),
                        limit: AtomicU64::new(limit),
                        closed: AtomicBool::new(false),
                    });
                    st.lock().unwrap().conns.push(conn.clone());
                    if limit == 0 {
                        conn.cut();
                        cu.fetch_add(1, Ordering::SeqCst);
                        continue;
                    }
                    // Request direction: client -> upstream, unlimited.
                    let (mut from, mut to) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(Shutdown::Write);
                    });
                    // Response direction: upstream -> client, counted and cut at the limit.
                    let (mut from, mut to, c, cu) = (upstream, client, conn, cu.clone());
                    let (tot, stop_tot, st2) = (tot.clone(), stop_tot.clone(), st.clone());
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            let done = c.forwarded.load(Ordering::SeqCst);
                            let room = c.limit.load(Ordering::SeqCst).saturating_sub(done);
                            let global_room =
                                stop_tot.load(Ordering::SeqCst).saturating_sub(tot.load(Ordering::SeqCst));
                            if global_room < room {
                                c.limit.fetch_min(done + global_room, Ordering::SeqCst);
                            }
                            let room = room.min(global_room);
                            let send = (n as u64).min(room) as usize;
                            if to.write_all(&buf[..send]).is_err() {
                                break;
                            }
                            c.forwarded.fetch_add(send as u64, Ordering::SeqCst);
                            if tot.fetch_add(send as u64, Ordering::SeqCst) + send as u64
                                >= stop_tot.load(Ordering::SeqCst)
                            {
                                st2.lock().unwrap().stopped = true;
                            }
                            if send < n || c.forwarded.load(Ordering::SeqCst) >= c.limit.load(Ordering::SeqCst) {
                                if !c.closed.swap(true, Ordering::SeqCst) {
                                    cu.fetch_add(1, Ordering::SeqCst);
                                }
                                c.cut();
                                return;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                        c.closed.store(true, Ordering::SeqCst);
                    });
                }
            })
            .unwrap();
        FaultProxy { endpoint: format!("http://{addr}"), addr, state, accepted, cuts, shutdown, total, stop_at_total }
    }

    /// Once `bytes` response bytes in all have been forwarded (counting from the proxy's start),
    /// the server "goes away": every connection is cut at that point and new ones are refused.
    pub fn stop_at_total(&self, bytes: u64) {
        self.stop_at_total.store(bytes, Ordering::SeqCst);
    }

    /// Response bytes forwarded so far on all connections.
    pub fn forwarded(&self) -> u64 {
        self.total.load(Ordering::SeqCst)
    }

    /// `127.0.0.1:PORT`
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The next `n` connections are cut (both directions closed) after `bytes` bytes of response
    /// have been forwarded to the client. Later connections pass through.
    pub fn cut_next(&self, n: usize, bytes: u64) {
        let mut s = self.state.lock().unwrap();
        s.cut_next = n;
        s.cut_bytes = bytes;
    }

    /// From now on, cut every open connection once it has forwarded `bytes` more response bytes,
    /// and refuse (close at once) new connections: "the server went away mid-download".
    pub fn stop_after(&self, bytes: u64) {
        let mut s = self.state.lock().unwrap();
        s.stopped = true;
        for c in &s.conns {
            if c.closed.load(Ordering::SeqCst) {
                continue;
            }
            let limit = c.forwarded.load(Ordering::SeqCst).saturating_add(bytes);
            c.limit.fetch_min(limit, Ordering::SeqCst);
            if bytes == 0 && !c.closed.swap(true, Ordering::SeqCst) {
                self.cuts.fetch_add(1, Ordering::SeqCst);
                c.cut();
            }
        }
    }

    /// Number of connections accepted so far (refused ones included).
    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Number of connections cut so far.
    pub fn cuts(&self) -> usize {
        self.cuts.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.shutdown.store(true, Ordering::SeqCst);
        // Wake the accept loop so its thread ends and the port is released.
        let _ = TcpStream::connect(&self.addr);
        for c in &self.state.lock().unwrap().conns {
            c.cut();
        }
    }
}

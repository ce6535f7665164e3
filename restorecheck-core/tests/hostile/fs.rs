//! Hostile inputs: the file system. Backups whose files are links to a root-only file outside,
//! tablespaces that climb or name no OID, oversized labels and zstd windows, a plain backup
//! with `--waldir` and a tablespace restored twice, and a work dir that runs out of space.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

#[allow(unused_imports)]
use super::common::*;
use restorecheck_core::report::{CheckReport, Phase, Verdict};
use restorecheck_core::{runner, Check, RunContext};

/// Bytes, mode, owner and modification time of a file outside the work dir.
#[derive(Debug, PartialEq)]
struct FileState {
    bytes: Vec<u8>,
    mode: u32,
    uid: u32,
    mtime: SystemTime,
}

fn file_state(p: &Path) -> FileState {
    let m = fs::symlink_metadata(p).unwrap();
    FileState { bytes: fs::read(p).unwrap(), mode: m.mode(), uid: m.uid(), mtime: m.modified().unwrap() }
}

/// A root-only file outside every work dir, holding a marker no report may contain.
struct Outside {
    path: PathBuf,
    marker: String,
    before: FileState,
}

impl Outside {
    fn new(dir: &TestDir) -> Self {
        let folder = dir.sub("outside");
        let path = folder.join("secret.conf");
        let nanos = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap().as_nanos();
        let marker = format!("RESTORECHECK_OUTSIDE_MARKER_{}_{nanos}", std::process::id());
        fs::write(&path, format!("# {marker}\nshared_buffers = '{marker}'\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let before = file_state(&path);
        Outside { path, marker, before }
    }

    /// The file is unchanged and its marker is nowhere in the report.
    fn assert_untouched(&self, r: &CheckReport) {
        assert_eq!(file_state(&self.path), self.before, "the file outside the work dir changed");
        let json = serde_json::to_string(r).unwrap();
        assert!(!json.contains(&self.marker), "the outside file's content reached the report: {json}");
    }
}

/// Runs `check` with `work` as work root; the work dir must be gone afterwards.
async fn run_in(work: &Path, check: Check) -> CheckReport {
    let report = runner::run_check(&check, work, 0, &RunContext::new()).await;
    let left: Vec<_> = fs::read_dir(work).unwrap().flatten().map(|e| e.path()).collect();
    assert!(left.is_empty(), "work dir not cleaned up: {left:?}");
    assert_no_server_under(work);
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    report
}

fn assert_verdict(r: &CheckReport, verdict: Verdict, phase: Phase, words: &[&str]) {
    assert_eq!(r.verdict, verdict, "{:?}", r.failure);
    let f = r.failure.as_ref().expect("a failure");
    assert_eq!(f.phase, phase, "{f:?}");
    for w in words {
        assert!(f.message.contains(w), "{w:?} not in {:?}", f.message);
    }
}

/// A raw tar header + data (the tar crate's builder refuses `..` and absolute names, which is
/// what a hostile archive has).
fn raw_entry(name: &str, kind: tar::EntryType, link: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_entry_type(kind);
    h.set_mode(0o600);
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// Rewrites the tar `path`: `first` (raw entries) go in front, then every original entry not
/// named in `drop`.
fn rewrite_tar(path: &Path, drop: &[&str], first: &[Vec<u8>]) {
    let tmp = path.with_extension("new");
    {
        let mut b = tar::Builder::new(fs::File::create(&tmp).unwrap());
        for raw in first {
            b.get_mut().write_all(raw).unwrap();
        }
        let mut ar = tar::Archive::new(fs::File::open(path).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().into_owned();
            if drop.iter().any(|d| name == Path::new(d)) {
                continue;
            }
            let mut h = e.header().clone();
            b.append_data(&mut h, &name, &mut e).unwrap();
        }
        b.finish().unwrap();
    }
    fs::rename(&tmp, path).unwrap();
}

/// A copy of the backup folder `from` named `name` beside it.
fn copy_backup(from: &Path, name: &str) -> PathBuf {
    let to = from.parent().unwrap().join(name);
    copy(from, &to);
    to
}

#[tokio::test]
async fn linked_config_signal_and_label_files_in_a_backup_are_never_followed() {
    let dir = TestDir::new("hostile-links");
    let c = cluster(&dir, 40).await;
    let tar = c.basebackup("tar", &["-Ft", "-Xfetch", "--no-manifest"]).await.unwrap();
    let plain = c.basebackup("plain", &["-Fp", "-Xfetch", "--no-manifest"]).await.unwrap();
    c.switch_and_archive().await.unwrap();
    let outside = Outside::new(&dir);
    let secret = outside.path.display().to_string();
    let rows = || sql_eq("select count(*) from registrations", 40);

    // A link in place of a configuration or signal file is not created: the server gets a
    // placeholder postgresql.conf (or none of the others), restorecheck writes recovery.signal
    // itself (archive recovery), and the data restores.
    for name in ["postgresql.conf", "postgresql.auto.conf", "recovery.signal"] {
        let b = copy_backup(&tar, &format!("tar-{name}"));
        rewrite_tar(&b.join("base.tar"), &[name], &[raw_entry(name, tar::EntryType::Symlink, &secret, b"")]);
        let r = run(&dir, check(&b, Some(&c.archive_dir())).assert(rows())).await;
        assert_pass(&r);
        outside.assert_untouched(&r);
    }
    // backup_label decides where recovery starts: a link there is refused, the check fails.
    let b = copy_backup(&tar, "tar-backup_label");
    rewrite_tar(
        &b.join("base.tar"),
        &["backup_label"],
        &[raw_entry("backup_label", tar::EntryType::Symlink, &secret, b"")],
    );
    let r = run(&dir, check(&b, Some(&c.archive_dir())).assert(rows())).await;
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["backup_label", "not a regular file"]);
    outside.assert_untouched(&r);

    // The same in a plain backup folder.
    let b = copy_backup(&plain, "plain-conf");
    fs::remove_file(b.join("postgresql.conf")).unwrap();
    std::os::unix::fs::symlink(&outside.path, b.join("postgresql.conf")).unwrap();
    let r = run(&dir, check(&b, Some(&c.archive_dir())).assert(rows())).await;
    assert_pass(&r);
    outside.assert_untouched(&r);
    let b = copy_backup(&plain, "plain-label");
    fs::remove_file(b.join("backup_label")).unwrap();
    std::os::unix::fs::symlink(&outside.path, b.join("backup_label")).unwrap();
    let r = run(&dir, check(&b, Some(&c.archive_dir())).assert(rows())).await;
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["backup_label", "symbolic link"]);
    outside.assert_untouched(&r);
}

#[tokio::test]
async fn tablespaces_and_entries_that_climb_or_name_no_oid_are_refused() {
    let dir = TestDir::new("hostile-tblspc");
    let c = cluster(&dir, 10).await;
    let tar = c.basebackup("tar", &["-Ft", "-Xfetch", "--no-manifest"]).await.unwrap();
    let plain = c.basebackup("plain", &["-Fp", "-Xfetch", "--no-manifest"]).await.unwrap();
    let work = dir.sub("work");
    // Where `../../x` and an absolute path would land if followed.
    let etc_x = PathBuf::from(format!("/etc/restorecheck-hostile-{}", std::process::id()));
    let landings = [work.join("x"), dir.path().join("x"), dir.path().parent().unwrap().join("x"), etc_x.clone()];
    let map = |text: &str| raw_entry("tablespace_map", tar::EntryType::Regular, "", text.as_bytes());
    let etc = etc_x.display().to_string();
    // (backup name, entries put in front of base.tar, words of the refusal)
    type Case<'a> = (&'a str, Vec<Vec<u8>>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        ("map-climbs", vec![map("16400 ../../x\n")], vec!["tablespace_map line 1", "absolute path without `..`"]),
        (
            "map-not-oid",
            vec![map(&format!("abc {etc}\n"))],
            vec!["tablespace_map line 1", "\"abc\" is not a tablespace OID"],
        ),
        ("map-absolute-no-tar", vec![map(&format!("16400 {etc}\n"))], vec!["16400.tar is not in the backup"]),
        (
            "entry-climbs",
            vec![raw_entry("../../x", tar::EntryType::Regular, "", b"x")],
            vec!["../../x would land outside the folder"],
        ),
        (
            "entry-absolute",
            vec![raw_entry(&etc, tar::EntryType::Regular, "", b"x")],
            vec!["would land outside the folder"],
        ),
        (
            "hardlink-out",
            vec![raw_entry("base/x", tar::EntryType::Link, "../../../x", b"")],
            vec!["hard link that leads out of the backup"],
        ),
    ];
    for (name, first, words) in cases {
        let b = copy_backup(&tar, name);
        rewrite_tar(&b.join("base.tar"), &["tablespace_map"], &first);
        let r = run_in(&work, check(&b, None)).await;
        assert_verdict(&r, Verdict::Fail, Phase::Fetch, &words);
        for l in &landings {
            assert!(!l.exists(), "{name}: {} was written", l.display());
        }
    }
    // An absolute production path with its tablespace tar present is remapped into the work
    // dir: nothing is written there either, and the backup restores.
    let b = copy_backup(&tar, "map-absolute-with-tar");
    rewrite_tar(&b.join("base.tar"), &["tablespace_map"], &[map(&format!("16400 {etc}\n"))]);
    {
        let mut t = tar::Builder::new(fs::File::create(b.join("16400.tar")).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o700);
        h.set_size(0);
        t.append_data(&mut h, "PG_15_hostile", std::io::empty()).unwrap();
        t.finish().unwrap();
    }
    let r = run_in(&work, check(&b, None).assert(sql_eq("select count(*) from registrations", 10))).await;
    assert_pass(&r);
    assert!(!etc_x.exists());

    // Plain backups: a tablespace link to a folder that is no tablespace, and one whose name is
    // not an OID.
    let b = copy_backup(&plain, "plain-tblspc-etc");
    std::os::unix::fs::symlink("/etc", b.join("pg_tblspc/16400")).unwrap();
    let r = run_in(&work, check(&b, None)).await;
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["tablespace 16400 points to /etc", "no PG_"]);
    let b = copy_backup(&plain, "plain-tblspc-name");
    std::os::unix::fs::symlink("/etc", b.join("pg_tblspc/..x")).unwrap();
    let r = run_in(&work, check(&b, None)).await;
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["not a tablespace OID"]);
}

/// The process's peak resident memory (VmHWM) in KiB.
fn peak_rss_kib() -> u64 {
    let s = fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A zstd frame of raw blocks holding `data` whose header asks for a 2^`window_log` window.
fn zstd_raw_frame(data: &[u8], window_log: u8) -> Vec<u8> {
    let mut f = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, (window_log - 10) << 3];
    let chunks: Vec<&[u8]> = data.chunks(128 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = u32::from(i + 1 == chunks.len());
        let header = ((chunk.len() as u32) << 3) | last;
        f.extend_from_slice(&header.to_le_bytes()[..3]);
        f.extend_from_slice(chunk);
    }
    f
}

#[tokio::test]
async fn a_1_gib_backup_label_or_tar_header_and_a_2_gib_zstd_window_are_refused() {
    let dir = TestDir::new("hostile-sizes");
    let c = cluster(&dir, 10).await;
    let tar = c.basebackup("tar", &["-Ft", "-Xfetch", "--no-manifest"]).await.unwrap();
    let plain = c.basebackup("plain", &["-Fp", "-Xfetch", "--no-manifest"]).await.unwrap();
    let work = dir.sub("work");
    let rss_before = peak_rss_kib();

    // Plain: a sparse 1 GiB backup_label.
    let b = copy_backup(&plain, "plain-label-1g");
    let f = fs::OpenOptions::new().write(true).truncate(true).open(b.join("backup_label")).unwrap();
    f.set_len(1 << 30).unwrap();
    let started = std::time::Instant::now();
    let r = run_in(&work, check(&b, None)).await;
    println!("plain 1 GiB backup_label refused in {:?}", started.elapsed());
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["backup_label", "larger than 1 MiB"]);

    // Tar: a backup_label entry claiming 1 GiB in front of base.tar (the file is sparse).
    let b = copy_backup(&tar, "tar-label-1g");
    let base = b.join("base.tar");
    let mut original = Vec::new();
    fs::File::open(&base).unwrap().read_to_end(&mut original).unwrap();
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..12].copy_from_slice(b"backup_label");
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(1 << 30);
    h.set_cksum();
    let mut f = fs::File::create(&base).unwrap();
    f.write_all(h.as_bytes()).unwrap();
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Current(1 << 30)).unwrap();
    f.write_all(&original).unwrap();
    drop(f);
    let started = std::time::Instant::now();
    let r = run_in(&work, check(&b, None)).await;
    println!("tar 1 GiB backup_label refused in {:?}", started.elapsed());
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["backup_label in", "larger than 1 MiB"]);

    // A GNU long-name header claiming 1 GiB after every real entry of base.tar: refused before
    // the tar crate reads it into memory (so the check also follows a real archive to its end).
    let b = copy_backup(&tar, "tar-longname-1g");
    let base = b.join("base.tar");
    let tmp = b.join("base.tar.new");
    {
        let mut builder = tar::Builder::new(fs::File::create(&tmp).unwrap());
        let mut ar = tar::Archive::new(fs::File::open(&base).unwrap());
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let (mut h, name) = (e.header().clone(), e.path().unwrap().into_owned());
            builder.append_data(&mut h, &name, &mut e).unwrap();
        }
        let mut h = tar::Header::new_gnu();
        h.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"././@LongLink");
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(1 << 30);
        h.set_cksum();
        let mut f = builder.into_inner().unwrap();
        f.write_all(h.as_bytes()).unwrap();
        let end = std::io::Seek::stream_position(&mut f).unwrap();
        f.set_len(end + (1 << 30) + 1024).unwrap(); // sparse
    }
    fs::rename(&tmp, &base).unwrap();
    let r = run_in(&work, check(&b, None)).await;
    assert_verdict(&r, Verdict::Fail, Phase::Fetch, &["base.tar", "claims 1 GiB"]);

    // base.tar.zst whose frame asks for a 2 GiB window: refused before any allocation; this
    // is restorecheck's limit, not proof the backup is bad, so the verdict is error.
    let b = copy_backup(&tar, "tar-zstd-2g");
    let data = fs::read(b.join("base.tar")).unwrap();
    fs::write(b.join("base.tar.zst"), zstd_raw_frame(&data, 31)).unwrap();
    fs::remove_file(b.join("base.tar")).unwrap();
    let r = run_in(&work, check(&b, None)).await;
    assert_verdict(&r, Verdict::Error, Phase::Fetch, &["base.tar.zst", "window larger than 128 MiB"]);
    // The same frame with a 128 MiB window restores.
    fs::write(b.join("base.tar.zst"), zstd_raw_frame(&data, 27)).unwrap();
    let r = run_in(&work, check(&b, None).assert(sql_eq("select count(*) from registrations", 10))).await;
    assert_pass(&r);

    let rss_after = peak_rss_kib();
    println!("peak RSS before {rss_before} KiB, after {rss_after} KiB");
    assert!(rss_after < rss_before + 256 * 1024, "memory grew from {rss_before} to {rss_after} KiB");
}

/// Path, kind, size, mode, modification time and content hash of one entry.
type Seen = (PathBuf, String, u64, u32, SystemTime, u64);

/// [`Seen`] for every entry under `root`.
fn deep_snapshot(root: &Path) -> Vec<Seen> {
    use std::hash::{Hash, Hasher};
    fn walk(p: &Path, out: &mut Vec<Seen>) {
        for e in fs::read_dir(p).unwrap().flatten() {
            let m = fs::symlink_metadata(e.path()).unwrap();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            let kind = if m.file_type().is_symlink() {
                fs::read_link(e.path()).unwrap().hash(&mut h);
                "link"
            } else if m.is_dir() {
                "dir"
            } else {
                fs::read(e.path()).unwrap().hash(&mut h);
                "file"
            };
            out.push((e.path(), kind.into(), m.len(), m.mode(), m.modified().unwrap(), h.finish()));
            if m.is_dir() {
                walk(&e.path(), out);
            }
        }
    }
    let mut v = Vec::new();
    walk(root, &mut v);
    v.sort();
    v
}

#[tokio::test]
async fn a_plain_waldir_backup_with_a_tablespace_restores_twice_and_stays_untouched() {
    let dir = TestDir::new("hostile-waldir");
    let mut c = cluster(&dir, 60).await;
    let live_ts = dir.sub("live-ts");
    c.os_user().chown_tree(&live_ts).unwrap();
    c.exec("postgres", &format!("create tablespace hostile_ts location '{}'", live_ts.display())).await.unwrap();
    c.exec("app", "create table in_ts (id int) tablespace hostile_ts; insert into in_ts select generate_series(1, 77)")
        .await
        .unwrap();
    let (wal, backup_ts) = (c.backups_dir().join("b1-wal"), c.backups_dir().join("b1-ts"));
    let b = c
        .basebackup(
            "b1",
            &[
                "-Fp",
                "-Xstream",
                &format!("--waldir={}", wal.display()),
                &format!("--tablespace-mapping={}={}", live_ts.display(), backup_ts.display()),
            ],
        )
        .await
        .unwrap();
    assert!(fs::symlink_metadata(b.join("pg_wal")).unwrap().file_type().is_symlink());
    // The source stops, so its tablespace folder changes only if a restore writes into it.
    c.stop().await.unwrap();
    let watched = [b.clone(), wal.clone(), backup_ts.clone(), live_ts.clone()];
    let before: Vec<_> = watched.iter().map(|p| deep_snapshot(p)).collect();
    assert!(before.iter().all(|s| !s.is_empty()));
    for round in 1..=2 {
        let r = run(
            &dir,
            check(&b, None)
                .assert(sql_eq("select count(*) from registrations", 60))
                .assert(sql_eq("select count(*) from in_ts", 77)),
        )
        .await;
        assert_pass(&r);
        let after: Vec<_> = watched.iter().map(|p| deep_snapshot(p)).collect();
        for (i, (b4, af)) in before.iter().zip(&after).enumerate() {
            assert_eq!(b4, af, "round {round}: {} changed", watched[i].display());
        }
    }
}

/// A tmpfs of `mib` MiB mounted at `path`, unmounted on drop.
struct SmallFs(PathBuf);

impl SmallFs {
    fn mount(path: &Path, mib: u32) -> Option<Self> {
        let st = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m,mode=0755"), "tmpfs"])
            .arg(path)
            .status()
            .ok()?;
        st.success().then(|| SmallFs(path.to_path_buf()))
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[tokio::test]
async fn a_full_work_dir_is_an_error_not_a_failed_backup_and_is_cleaned_up() {
    let dir = TestDir::new("hostile-enospc");
    let c = cluster(&dir, 10).await;
    let plain = c.basebackup("plain", &["-Fp", "-Xfetch", "--no-manifest"]).await.unwrap();
    let gz = c.basebackup("gz", &["-Ft", "-z", "-Xfetch", "--no-manifest"]).await.unwrap();
    let small = dir.sub("small");
    let Some(_mounted) = SmallFs::mount(&small, 24) else {
        println!("SKIPPED: mounting a tmpfs is not permitted here (the classification is unit-tested in archive.rs)");
        return;
    };
    let free_before = nix::sys::statvfs::statvfs(&small).unwrap().blocks_available();
    // The plain backup's size is known: refused before copying anything.
    let r = run_in(&small, check(&plain, None)).await;
    assert_verdict(&r, Verdict::Error, Phase::Fetch, &["not enough free space in the work dir"]);
    // The compressed backup looks small enough; extraction runs out of space: an error of the
    // tester, not a failed backup, and the work dir is gone.
    let gz_size: u64 = fs::read_dir(&gz).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    assert!(gz_size < 20 << 20, "the compressed backup is {gz_size} bytes");
    let r = run_in(&small, check(&gz, None)).await;
    assert_verdict(&r, Verdict::Error, Phase::Fetch, &["ran out of space"]);
    assert_eq!(nix::sys::statvfs::statvfs(&small).unwrap().blocks_available(), free_before);
}

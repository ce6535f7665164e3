//! A folder of archived WAL segments (plain, `.gz`, `.zst` or `.lz4`), served read-only to the
//! restored server's `restore_command`, and where recovery must get to in it: the newest
//! segment *on the timeline path recovery follows* ([`ArchiveContents`], [`TimelinePath`]).
//!
//! After a failover an archive holds segments of several timelines: the promoted standby's
//! (timeline 2, with `00000002.history`) and the old primary's last, lost writes as timeline-1
//! segments past the fork. Recovery with `recovery_target_timeline = latest` follows the history
//! file to timeline 2 and never reads those timeline-1 segments, so they must not count as WAL
//! recovery had to reach: a parent timeline counts only up to its switch point.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::archive::Compression;
use crate::error::{Error, Result};
use crate::postgres::{Lsn, WalSegment};
use crate::source::RecoveryTargetTimeline;

/// One line of a timeline history file (`1\t0/B00A3C8\tno recovery target specified`): the
/// parent timeline and the WAL position where the child branched off it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct TimelineSwitch {
    /// The parent timeline that was left.
    pub timeline: u32,
    /// Where it was left (the first position of the child timeline).
    pub switch_lsn: Lsn,
}

/// Parses the text of a `NNNNNNNN.history` file as PostgreSQL does (`readTimeLineHistory`):
/// blank lines and `#` comments are skipped; each line is `parentTLI switchpoint reason`, with
/// parent timelines increasing. Returns the ancestry, oldest first.
pub(crate) fn parse_history(text: &str) -> std::result::Result<Vec<TimelineSwitch>, String> {
    let mut out: Vec<TimelineSwitch> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let mut parts = l.split_whitespace();
        let tli = parts
            .next()
            .and_then(|t| t.parse::<u32>().ok())
            .ok_or_else(|| format!("line {}: expected a numeric timeline ID", i + 1))?;
        let lsn: Lsn = parts
            .next()
            .ok_or_else(|| format!("line {}: expected a WAL position after the timeline ID", i + 1))?
            .parse()
            .map_err(|e| format!("line {}: {e}", i + 1))?;
        if out.last().is_some_and(|p| p.timeline >= tli) {
            return Err(format!("line {}: timeline IDs must be in increasing sequence", i + 1));
        }
        out.push(TimelineSwitch { timeline: tli, switch_lsn: lsn });
    }
    Ok(out)
}

/// Reads a (possibly compressed) history file, at most 1 MiB (it is backup content).
fn read_history(path: &Path) -> std::result::Result<Vec<TimelineSwitch>, String> {
    let f = open_no_follow(path).map_err(|e| e.to_string())?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let comp = Compression::from_name(&name);
    let r = crate::archive::decompress(Box::new(std::io::BufReader::new(f)), comp, &path.display().to_string())
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    r.take(1 << 20).read_to_string(&mut text).map_err(|e| e.to_string())?;
    parse_history(&text)
}

fn open_no_follow(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NOFOLLOW).open(path)
}

/// The timeline a `backup_label` (in `data_dir`, read without following a link) says the
/// backup was taken on: `START TIMELINE`, else the file in `START WAL LOCATION`.
pub(crate) fn backup_label_timeline(data_dir: &Path) -> Option<u32> {
    let mut text = String::new();
    open_no_follow(&data_dir.join("backup_label")).ok()?.take(64 << 10).read_to_string(&mut text).ok()?;
    let direct = text.lines().find_map(|l| l.strip_prefix("START TIMELINE:")).and_then(|v| v.trim().parse().ok());
    direct.or_else(|| {
        let l = text.lines().find_map(|l| l.strip_prefix("START WAL LOCATION:"))?;
        let file = l.split_once("(file ")?.1.split(')').next()?.trim();
        crate::source::timeline_of_segment(file)
    })
}

/// What a WAL archive holds, as far as the completeness proof needs it: its segment names and
/// the timeline history files, parsed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ArchiveContents {
    /// The archive, for messages (`the WAL archive /backups/wal`).
    pub described: String,
    /// Segment names (24 hex digits, upper case), in no particular order.
    pub segments: Vec<String>,
    /// Timeline → its history (ancestry, oldest first), for every readable `.history` file.
    pub histories: BTreeMap<u32, Vec<TimelineSwitch>>,
    /// History files that could not be read or parsed (`name: why`): recovery cannot follow
    /// them either.
    pub unreadable_histories: Vec<String>,
}

/// The timelines recovery goes through, oldest first, and where it switches from each to the
/// next (`switches[i]` leaves `timelines[i]`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TimelinePath {
    /// Timelines in order (`[1, 2]`).
    pub timelines: Vec<u32>,
    /// Switch points, one per timeline but the last.
    pub switches: Vec<TimelineSwitch>,
}

impl TimelinePath {
    /// The path's last timeline (the one recovery ends on).
    pub fn target(&self) -> Option<u32> {
        self.timelines.last().copied()
    }

    /// `1 → 2 (switch at 0/B00A3C8)`.
    pub fn describe(&self) -> String {
        let tl: Vec<String> = self.timelines.iter().map(u32::to_string).collect();
        let sw: Vec<String> = self.switches.iter().map(|s| s.switch_lsn.to_string()).collect();
        if sw.is_empty() {
            tl.join(" → ")
        } else {
            format!("{} (switch at {})", tl.join(" → "), sw.join(", "))
        }
    }

    /// True when recovery along this path reads segment `seg`: a segment of the last timeline,
    /// or of an earlier one up to (and including) the segment holding its switch point.
    pub fn covers(&self, seg: WalSegment, seg_size: u64) -> bool {
        let Some(i) = self.timelines.iter().position(|t| *t == seg.timeline) else { return false };
        match self.switches.get(i) {
            None => true,
            // The last byte before the switch: a switch exactly at a segment boundary leaves the
            // parent's segment at that position unread.
            Some(s) => seg.segno <= s.switch_lsn.0.saturating_sub(1) / seg_size.max(1),
        }
    }
}

impl ArchiveContents {
    /// The timeline path recovery follows for `target` from a backup on `backup_timeline`, as
    /// PostgreSQL computes it: `latest` probes for history files of the timelines after the
    /// backup's, one by one, and takes the last one found (`findNewestTimeLine`); the chosen
    /// timeline's history file gives its ancestry.
    pub fn path(&self, target: RecoveryTargetTimeline, backup_timeline: u32) -> TimelinePath {
        let tli = match target {
            RecoveryTargetTimeline::Current => backup_timeline,
            RecoveryTargetTimeline::Id(n) => n,
            RecoveryTargetTimeline::Latest => {
                let mut newest = backup_timeline;
                while newest < u32::MAX && self.histories.contains_key(&(newest + 1)) {
                    newest += 1;
                }
                newest
            }
        };
        let switches = self.histories.get(&tli).cloned().unwrap_or_default();
        let mut timelines: Vec<u32> = switches.iter().map(|s| s.timeline).collect();
        timelines.push(tli);
        TimelinePath { timelines, switches }
    }

    /// The newest segment on `path` (by position) for segments of `seg_size` bytes.
    pub fn newest_on(&self, path: &TimelinePath, seg_size: u64) -> Option<String> {
        self.segments
            .iter()
            .filter_map(|n| WalSegment::parse(n, seg_size))
            .filter(|s| path.covers(*s, seg_size))
            .max_by_key(|s| s.segno)
            .map(|s| s.file_name(seg_size))
    }

    /// The newest segment of any timeline (what the proof compared with before it followed
    /// timelines), by position, then timeline.
    pub fn newest_any(&self) -> Option<&String> {
        self.segments.iter().max_by_key(|n| (n.get(8..24).map(str::to_string), n.get(0..8).map(str::to_string)))
    }
}

/// Facts about a WAL archive folder.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WalArchive {
    /// The folder.
    pub(crate) path: PathBuf,
    /// Name of the newest segment (highest segment number, then timeline), if any.
    pub(crate) newest_segment: Option<String>,
    /// Number of segment files.
    pub(crate) segments: usize,
    /// Compressions present.
    pub(crate) compressions: Vec<Compression>,
    /// Segment names (upper case) and history files, for the timeline-following proof.
    pub(crate) contents: ArchiveContents,
}

impl WalArchive {
    /// Lists `path` (read only).
    pub(crate) fn scan(path: &Path) -> Result<Self> {
        let rd = std::fs::read_dir(path).map_err(|e| Error::Source {
            source_kind: "basebackup",
            message: format!("cannot read wal_archive {}", path.display()),
            source: Some(e.into()),
        })?;
        let mut newest: Option<(String, String)> = None; // (log+seg part, full name)
        let mut segments = 0;
        let mut compressions = Vec::new();
        let mut contents =
            ArchiveContents { described: format!("the WAL archive {}", path.display()), ..Default::default() };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let comp = Compression::from_name(&name);
            let base = name.strip_suffix(comp.suffix()).unwrap_or(&name);
            if let Some(tli) = base
                .strip_suffix(".history")
                .filter(|t| t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()))
                .and_then(|t| u32::from_str_radix(t, 16).ok())
            {
                match read_history(&entry.path()) {
                    Ok(h) => {
                        contents.histories.insert(tli, h);
                    }
                    Err(e) => contents.unreadable_histories.push(format!("{name}: {e}")),
                }
                continue;
            }
            if base.len() != 24 || !base.bytes().all(|b| b.is_ascii_hexdigit()) {
                continue; // .history, .backup, .partial and strangers
            }
            segments += 1;
            if !compressions.contains(&comp) {
                compressions.push(comp);
            }
            contents.segments.push(base.to_ascii_uppercase());
            let key = format!("{}{}", &base[8..24], &base[0..8]).to_ascii_uppercase();
            if newest.as_ref().is_none_or(|(k, _)| key > *k) {
                newest = Some((key, base.to_ascii_uppercase()));
            }
        }
        Ok(WalArchive {
            path: path.to_path_buf(),
            newest_segment: newest.map(|x| x.1),
            segments,
            compressions,
            contents,
        })
    }

    /// Writes the `restore_command` script into `dir` and returns the command line for
    /// PostgreSQL. The script exits 0 when it restored the file, 1 when the archive does not
    /// have it, and 200 (which makes PostgreSQL stop recovery with an error rather than treat
    /// the file as missing) when the file exists but cannot be read or decompressed. The
    /// decompressors it calls are located where the check's tools run (`ctx.tools`, for a
    /// server of `major`): on this host, or in the image the `docker` target runs the server in.
    pub(crate) async fn write_restore_command(
        &self,
        dir: &Path,
        ctx: &crate::context::RunContext,
        major: u32,
    ) -> Result<crate::source::WalFetch> {
        let mut branches = vec![format!("if [ -f \"$a/$f\" ]; then cp \"$a/$f\" \"$t\" || exit 200")];
        for (comp, name, args) in
            [(Compression::Gzip, "gzip", "-dc"), (Compression::Zstd, "zstd", "-qdc"), (Compression::Lz4, "lz4", "-qdc")]
        {
            if self.compressions.contains(&comp) {
                let hint = format!(
                    "the WAL archive holds {name}-compressed segments: install {name} (Debian: apt-get install {name})"
                );
                let exe = ctx.tools.locate(name, &hint, Some(major)).await?;
                branches.push(format!(
                    "elif [ -f \"$a/$f{sfx}\" ]; then {exe} {args} \"$a/$f{sfx}\" > \"$t\" || exit 200",
                    exe = shell_quote(&exe.display().to_string()),
                    sfx = comp.suffix()
                ));
            }
        }
        let script = format!(
            "#!/bin/sh\n# written by restorecheck: serves WAL from a read-only archive; never writes to it\n\
             a=\"$1\"; f=\"$2\"; p=\"$3\"; t=\"$p.restorecheck-tmp\"\n\
             {}\nelse exit 1; fi\nmv \"$t\" \"$p\" || exit 200\n",
            branches.join("\n")
        );
        let path = dir.join("restore_wal.sh");
        std::fs::write(&path, script).map_err(|e| Error::io("writing restore script", &path, e))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| Error::io("chmod", &path, e))?;
        Ok(crate::source::WalFetch::new(path, [self.path.display().to_string(), "%f".into(), "%p".into()])
            .reading([self.path.clone()]))
    }
}

/// Quotes `s` for /bin/sh and for a PostgreSQL string setting (no single quotes inside).
pub(crate) fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Finds `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_segment_ignores_history_and_partial() {
        let d = tempfile::tempdir().unwrap();
        for n in [
            "000000010000000000000003",
            "000000010000000000000004.gz",
            "000000020000000000000004.zst",
            "00000002.history",
            "000000010000000000000009.partial",
            "000000010000000000000002.00000028.backup",
        ] {
            std::fs::write(d.path().join(n), b"x").unwrap();
        }
        let a = WalArchive::scan(d.path()).unwrap();
        assert_eq!(a.segments, 3);
        assert_eq!(a.newest_segment.as_deref(), Some("000000020000000000000004"));
        assert!(a.compressions.contains(&Compression::Zstd));
    }

    const SEG: u64 = 16 << 20;

    fn failover_archive() -> ArchiveContents {
        let mut a = ArchiveContents::default();
        for n in [
            "000000010000000000000003",
            "00000001000000000000000A",
            "00000001000000000000000B",
            "00000001000000000000000C",
            "00000001000000000000000E",
            "00000002000000000000000B",
            "00000002000000000000000C",
        ] {
            a.segments.push(n.into());
        }
        a.histories.insert(2, parse_history("1\t0/B00A3C8\tno recovery target specified\n").unwrap());
        a
    }

    #[test]
    fn history_files_parse_like_postgresql_reads_them() {
        let h = parse_history("# comment\n\n1\t0/B00A3C8\tno recovery target specified\n2\t0/D000000\tbefore 2026\n")
            .unwrap();
        assert_eq!(
            h,
            vec![
                TimelineSwitch { timeline: 1, switch_lsn: "0/B00A3C8".parse().unwrap() },
                TimelineSwitch { timeline: 2, switch_lsn: "0/D000000".parse().unwrap() },
            ]
        );
        assert!(parse_history("x\t0/1\n").unwrap_err().contains("numeric timeline"));
        assert!(parse_history("1\n").is_err());
        assert!(parse_history("1\tzz\n").is_err());
        assert!(parse_history("2\t0/1\tr\n1\t0/2\tr\n").unwrap_err().contains("increasing"));
        assert_eq!(parse_history("").unwrap(), vec![]);
    }

    #[test]
    fn latest_follows_the_history_and_ignores_the_old_primarys_segments_past_the_fork() {
        let a = failover_archive();
        assert_eq!(a.newest_any().map(String::as_str), Some("00000001000000000000000E"));
        let p = a.path(RecoveryTargetTimeline::Latest, 1);
        assert_eq!(p.timelines, vec![1, 2]);
        assert_eq!(p.describe(), "1 → 2 (switch at 0/B00A3C8)");
        assert_eq!(a.newest_on(&p, SEG).as_deref(), Some("00000002000000000000000C"));
        // Timeline 1 counts up to the segment holding the switch point, not past it.
        assert!(p.covers(WalSegment::parse("00000001000000000000000B", SEG).unwrap(), SEG));
        assert!(!p.covers(WalSegment::parse("00000001000000000000000C", SEG).unwrap(), SEG));
        // A backup taken on timeline 2 follows the same path.
        assert_eq!(a.path(RecoveryTargetTimeline::Latest, 2), p);
        assert_eq!(a.path(RecoveryTargetTimeline::Id(2), 1), p);
    }

    #[test]
    fn current_stays_on_the_backups_timeline() {
        let a = failover_archive();
        let p = a.path(RecoveryTargetTimeline::Current, 1);
        assert_eq!(p.timelines, vec![1]);
        assert!(p.switches.is_empty());
        assert_eq!(p.describe(), "1");
        assert_eq!(a.newest_on(&p, SEG).as_deref(), Some("00000001000000000000000E"));
    }

    #[test]
    fn latest_stops_at_the_first_missing_history_file_as_postgresql_does() {
        let mut a = failover_archive();
        a.histories.insert(4, parse_history("1\t0/B00A3C8\tx\n2\t0/C100000\tx\n3\t0/D000000\tx\n").unwrap());
        assert_eq!(a.path(RecoveryTargetTimeline::Latest, 1).timelines, vec![1, 2]);
        // A switch exactly at a segment boundary leaves the parent's segment there unread.
        let mut b = ArchiveContents {
            segments: vec!["00000001000000000000000C".into(), "00000002000000000000000B".into()],
            ..Default::default()
        };
        b.histories.insert(2, parse_history("1\t0/C000000\tx\n").unwrap());
        let p = b.path(RecoveryTargetTimeline::Latest, 1);
        assert_eq!(b.newest_on(&p, SEG).as_deref(), Some("00000002000000000000000B"));
    }

    #[test]
    fn scan_reads_history_files_and_backup_label_timelines() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("00000002.history"), "1\t0/B00A3C8\tno recovery target specified\n").unwrap();
        std::fs::write(d.path().join("00000003.history"), "garbage\n").unwrap();
        std::fs::write(d.path().join("00000002000000000000000B"), b"x").unwrap();
        let a = WalArchive::scan(d.path()).unwrap();
        assert_eq!(a.contents.histories.len(), 1);
        assert_eq!(a.contents.unreadable_histories.len(), 1, "{:?}", a.contents.unreadable_histories);
        assert_eq!(a.contents.segments, vec!["00000002000000000000000B".to_string()]);

        std::fs::write(
            d.path().join("backup_label"),
            "START WAL LOCATION: 0/2000028 (file 000000030000000000000002)\nCHECKPOINT LOCATION: 0/2000060\n",
        )
        .unwrap();
        assert_eq!(backup_label_timeline(d.path()), Some(3));
        std::fs::write(
            d.path().join("backup_label"),
            "START WAL LOCATION: 0/2000028 (file 000000030000000000000002)\nSTART TIMELINE: 2\n",
        )
        .unwrap();
        assert_eq!(backup_label_timeline(d.path()), Some(2));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("/a b/c"), "'/a b/c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}

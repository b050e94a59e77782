//! Fault injection (issue #6, hostile-input case 58 of docs/security.md): the real binary against a
//! full disk (a small tmpfs), SIGKILL at several points, a read-only or
//! vanished output directory, truncated and corrupted blobs, and a blob
//! that changes while it is read. After each: the documented exit code, a
//! message naming the file, nothing under the final name (or the previous
//! bundle and archive byte for byte), and no staged entries left beside the
//! output, or, after a kill, none once the next run is over.
//!
//! To stop bundlegen at a chosen point without hooks in its code, its
//! standard error is a pipe filled to the brim before it starts: the first
//! thing it prints (with `-q`, the first warning) blocks it in `write(2)`.
//! Each image or metadata file below carries one harmless oddity that makes
//! bundlegen warn at the point wanted. The test then sees the process
//! blocked there (`/proc/PID/task/*/syscall`), acts (SIGKILL, a remount,
//! removing the directory, rewriting a blob) and drains the pipe to let it
//! go on. Mounts need root; the tests fail without it under `CI`.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::builder::{Compression, Entry, Image, Layer, Layout, RunConfig, Tar, sha256_hex};
use crate::elfstub::{Machine, Stub};

pub(crate) fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_bundlegen")
}

// ---------------------------------------------------------------------------
// Inputs
// ---------------------------------------------------------------------------

/// `len` bytes that do not compress (xorshift), different for each `seed`.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The base layer: a static x86-64 executable as the entrypoint.
pub(crate) fn base_layer() -> Layer {
    let app = Stub { e_type: 2, interp: None, soname: None, ..Stub::lib(Machine::X86_64, "") }.build();
    Layer::gz([Entry::dir("usr/"), Entry::dir("usr/bin/"), Entry::file("usr/bin/app", app).with_mode(0o755)])
}

/// An uncompressed layer of `files` (name, size) with random content, so
/// that the blob is read as it is applied and the archive does not shrink.
pub(crate) fn data_layer(files: &[(&str, usize)], seed: u64) -> Layer {
    let mut entries = vec![Entry::dir("data/")];
    for (i, (name, size)) in files.iter().enumerate() {
        entries.push(Entry::file(&format!("data/{name}"), noise(*size, seed + i as u64)));
    }
    Layer::plain(entries)
}

/// An entry with a type flag no tar writer uses: extracted as a regular
/// file with a warning, which is where a gated run stops.
fn odd_entry(name: &str) -> Entry {
    Entry::raw(name.as_bytes(), b'Z')
}

pub(crate) fn store(layout_dir: &Path, layers: Vec<Layer>, working_dir: Option<&str>) -> Layout {
    let mut image = Image::new(layers);
    image.run = RunConfig {
        entrypoint: Some(vec!["/usr/bin/app".into()]),
        working_dir: working_dir.map(str::to_owned),
        ..RunConfig::default()
    };
    Layout::single(layout_dir, image)
}

/// App metadata for the built-in `qemux86-64`; `extra` keys are merged in.
/// A `display.resolution` makes bundlegen warn right after flattening (the
/// platform lists no display modes), which is where a gated run stops; an
/// unknown key would warn before the image is read.
pub(crate) fn app_metadata(path: &Path, extra: Value) {
    let mut app = json!({
        "id": "com.example.faults", "type": "application/vnd.rdk-app.dac.native", "graphics": false,
        "network": {"type": "open"}, "storage": {}, "resources": {"ram": "64M"}, "features": [], "mounts": []
    });
    if let (Some(a), Some(e)) = (app.as_object_mut(), extra.as_object()) {
        a.extend(e.clone());
    }
    fs::write(path, serde_json::to_vec_pretty(&app).expect("JSON")).expect("write app metadata");
}

/// One test's world: a layout, app metadata, and where the bundle goes.
pub(crate) struct World {
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub layout: PathBuf,
    pub meta: PathBuf,
    /// The output's parent, where staged entries appear.
    pub parent: PathBuf,
    pub out: PathBuf,
}

impl World {
    pub(crate) fn new(layers: Vec<Layer>) -> World {
        World::with(layers, None, json!({}))
    }

    pub(crate) fn with(layers: Vec<Layer>, working_dir: Option<&str>, meta_extra: Value) -> World {
        let dir = tempfile::Builder::new().prefix("bundlegen-faults-").tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let layout = root.join("image");
        store(&layout, layers, working_dir);
        let meta = root.join("app.json");
        app_metadata(&meta, meta_extra);
        let parent = root.join("deploy");
        fs::create_dir(&parent).expect("mkdir deploy");
        let out = parent.join("bundle");
        World { _dir: dir, root, layout, meta, parent, out }
    }

    pub(crate) fn archive(&self) -> PathBuf {
        self.parent.join("bundle.tar.gz")
    }

    /// `bundlegen -q generate -u -p qemux86-64 -a META oci:LAYOUT OUT ARGS`.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        self.command_for(&self.layout, args)
    }

    pub(crate) fn command_for(&self, layout: &Path, args: &[&str]) -> Command {
        self.command_to(layout, &self.out, args)
    }

    /// `generate` with any image and output.
    pub(crate) fn command_to(&self, layout: &Path, out: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(["-q", "generate", "-u", "-p", "qemux86-64", "-a"])
            .arg(&self.meta)
            .args(args)
            .arg(format!("oci:{}", layout.display()))
            .arg(out)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run bundlegen")
    }

    /// A successful run, whose output later runs must leave intact.
    pub(crate) fn previous(&self) -> Snapshot {
        let done = self.run(&["-y"]);
        assert!(done.status.success(), "the first run must succeed:\n{}", String::from_utf8_lossy(&done.stderr));
        self.snapshot()
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot::of(&[&self.out, &self.archive()])
    }

    /// Entries staged beside the output (`.bundle.bundlegen-XXXXXX`,
    /// `.bundle.tar.gz.bundlegen-XXXXXX`).
    pub(crate) fn staged(&self) -> Vec<String> {
        staged_in(&self.parent)
    }

    /// Nothing under the final names, nothing staged.
    pub(crate) fn assert_nothing_written(&self) {
        assert!(fs::symlink_metadata(&self.out).is_err(), "{} must not exist", self.out.display());
        assert!(fs::symlink_metadata(self.archive()).is_err(), "{} must not exist", self.archive().display());
        assert_eq!(self.staged(), Vec::<String>::new(), "staged entries left in {}", self.parent.display());
    }
}

pub(crate) fn staged_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.contains(".bundlegen-")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// Every path under some roots with its type, mode, owner and content
/// digest (or link target): equal snapshots mean byte-identical trees.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Snapshot(BTreeMap<PathBuf, String>);

impl Snapshot {
    pub(crate) fn of(roots: &[&Path]) -> Snapshot {
        let mut map = BTreeMap::new();
        for root in roots {
            walk(root, &mut map);
        }
        Snapshot(map)
    }
}

fn walk(path: &Path, map: &mut BTreeMap<PathBuf, String>) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        map.insert(path.to_owned(), "missing".into());
        return;
    };
    let head = format!("{:o} {}:{}", meta.mode(), meta.uid(), meta.gid());
    let ft = meta.file_type();
    if ft.is_symlink() {
        map.insert(path.to_owned(), format!("{head} -> {}", fs::read_link(path).expect("readlink").display()));
    } else if ft.is_dir() {
        map.insert(path.to_owned(), format!("{head} dir"));
        for e in fs::read_dir(path).expect("read_dir").flatten() {
            walk(&e.path(), map);
        }
    } else if ft.is_file() {
        map.insert(path.to_owned(), format!("{head} {}", sha256_hex(&fs::read(path).expect("read"))));
    } else {
        map.insert(path.to_owned(), format!("{head} rdev {}", meta.rdev()));
    }
}

pub(crate) fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The exit code, and a message with every fragment in `needles`.
pub(crate) fn assert_failed(status: ExitStatus, stderr: &str, code: i32, needles: &[&str]) {
    assert_eq!(status.code(), Some(code), "exit code; stderr:\n{stderr}");
    assert!(stderr.starts_with("error: ") || stderr.contains("\nerror: "), "an error line:\n{stderr}");
    for n in needles {
        assert!(stderr.contains(n), "{n:?} missing from:\n{stderr}");
    }
}

// ---------------------------------------------------------------------------
// Gated runs: bundlegen stops at its first write to standard error
// ---------------------------------------------------------------------------

/// A byte to fill the pipe with, told apart from bundlegen's own output.
const FILL: u8 = b'#';

struct Gated {
    child: Child,
    stderr: File,
}

impl Gated {
    /// Starts `cmd` with a full pipe as standard error.
    fn spawn(mut cmd: Command) -> Gated {
        let mut fds = [0; 2];
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0, "pipe2");
        let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        // One page, filled with non-blocking writes, then made blocking
        // again (the flag belongs to the open file, which the child shares).
        unsafe {
            libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, 4096);
            libc::fcntl(w.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK);
        }
        let mut wf = File::from(w);
        let page = [FILL; 4096];
        while wf.write(&page).is_ok_and(|n| n > 0) {}
        while wf.write(&page[..1]).is_ok_and(|n| n > 0) {}
        unsafe { libc::fcntl(wf.as_raw_fd(), libc::F_SETFL, 0) };
        cmd.stderr(Stdio::from(OwnedFd::from(wf)));
        let child = cmd.spawn().expect("spawn bundlegen");
        drop(cmd); // Our copy of the write end.
        let gated = Gated { child, stderr: File::from(r) };
        gated.wait_blocked();
        gated
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits until a thread of the child is blocked writing to fd 2.
    fn wait_blocked(&self) {
        let want = format!("{} 0x2 ", libc::SYS_write);
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let tasks = fs::read_dir(format!("/proc/{}/task", self.pid())).expect("child's tasks");
            for t in tasks.flatten() {
                if fs::read_to_string(t.path().join("syscall")).is_ok_and(|s| s.starts_with(&want)) {
                    // Let the other threads reach their own waits.
                    std::thread::sleep(Duration::from_millis(200));
                    return;
                }
            }
            let state = fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
            assert!(!state.contains(") Z "), "bundlegen ended before it printed anything");
            assert!(Instant::now() < deadline, "bundlegen did not stop at its first message");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, as the OOM killer or a cancelled build does.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        let status = self.child.wait().expect("wait");
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    }

    /// Lets the child go on; returns its exit status and what it printed.
    fn release(mut self) -> (ExitStatus, String) {
        let mut bytes = Vec::new();
        self.stderr.read_to_end(&mut bytes).expect("read stderr");
        let status = self.child.wait().expect("wait");
        let start = bytes.iter().position(|&b| b != FILL).unwrap_or(bytes.len());
        (status, String::from_utf8_lossy(&bytes[start..]).into_owned())
    }
}

/// After a kill: the staging directory is still there (the run was caught
/// half-way), then the next run removes it and succeeds.
fn assert_next_run_sweeps(w: &World, args: &[&str]) {
    assert!(!w.staged().is_empty(), "the killed run should leave its staging directory");
    let next = w.run(args);
    assert!(next.status.success(), "the next run: {}", stderr_of(&next));
    assert_eq!(w.staged(), Vec::<String>::new(), "the next run removes what the killed one left");
    assert!(w.out.join("config.json").is_file() && w.archive().is_file());
}

// ---------------------------------------------------------------------------
// Mounts (root only)
// ---------------------------------------------------------------------------

pub(crate) fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

/// Whether mount tests can run; under `CI` they must.
pub(crate) fn can_mount() -> bool {
    is_root() || crate::debian::unavailable::<()>("mounting needs root").is_some()
}

/// A mount at `dir`, lazily unmounted when dropped.
pub(crate) struct Mounted {
    dir: PathBuf,
}

impl Mounted {
    fn tmpfs(dir: &Path, size: &str) -> Mounted {
        mount(&["-t", "tmpfs", "-o", &format!("size={size},mode=0755"), "tmpfs"], dir);
        Mounted { dir: dir.to_owned() }
    }

    /// `dir` bind-mounted over itself, so it can be made read-only alone.
    fn bind(dir: &Path) -> Mounted {
        mount(&["--bind", dir.to_str().expect("utf-8")], dir);
        Mounted { dir: dir.to_owned() }
    }

    fn remount(&self, opts: &str) {
        mount(&["-o", &format!("remount,bind,{opts}")], &self.dir);
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) {
    let out = Command::new("mount").args(args).arg(dir).output().expect("run mount");
    assert!(out.status.success(), "mount {args:?} {}: {}", dir.display(), String::from_utf8_lossy(&out.stderr));
}

// ---------------------------------------------------------------------------
// SIGKILL
// ---------------------------------------------------------------------------

/// Killed while the second layer is half applied, with no previous bundle:
/// nothing appears under the final name; the next run removes the staging
/// directory.
#[test]
fn killed_during_layer_unpack_leaves_no_bundle() {
    let w = World::new(vec![
        base_layer(),
        Layer::plain([Entry::dir("data/"), Entry::file("data/a", noise(1 << 20, 1)), odd_entry("data/odd"), Entry::file("data/b", noise(1 << 20, 2))]),
    ]);
    let gated = Gated::spawn(w.command(&[]));
    let staged = w.staged();
    assert_eq!(staged.len(), 1, "one staging directory: {staged:?}");
    let rootfs = w.parent.join(&staged[0]).join("rootfs");
    assert!(rootfs.join("usr/bin/app").is_file() && rootfs.join("data/a").is_file(), "layer 1 and part of layer 2 applied");
    assert!(!rootfs.join("data/b").exists(), "the rest of layer 2 not yet");
    gated.kill();
    assert!(fs::symlink_metadata(&w.out).is_err() && fs::symlink_metadata(w.archive()).is_err(), "no partial bundle");
    assert_next_run_sweeps(&w, &[]);
}

/// Killed once the rootfs is flattened, as the app is checked against the
/// platform (the start of the ELF and library phase); the previous bundle and archive
/// stay byte for byte.
#[test]
fn killed_after_flattening_keeps_the_previous_bundle() {
    let w = World::with(vec![base_layer(), data_layer(&[("a", 1 << 20)], 3)], None, json!({"display": {"resolution": "1920x1080"}}));
    let before = w.previous();
    let gated = Gated::spawn(w.command(&["-y"]));
    let staged = w.staged();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(w.parent.join(&staged[0]).join("rootfs/data/a").is_file(), "flattened");
    assert!(!w.parent.join(&staged[0]).join("config.json").exists());
    gated.kill();
    assert_eq!(w.snapshot(), before, "the previous bundle and archive are intact");
    assert_next_run_sweeps(&w, &["-y"]);
}

/// Killed during the ELF scan (a file that looks like ELF but is cut short
/// makes the scan warn).
#[test]
fn killed_during_the_elf_scan_keeps_the_previous_bundle() {
    let mut broken = b"\x7fELF\x02\x01\x01".to_vec();
    broken.resize(40, 0);
    let w = World::new(vec![base_layer(), Layer::gz([Entry::dir("opt/"), Entry::file("opt/broken", broken).with_mode(0o755)])]);
    let before = w.previous();
    let gated = Gated::spawn(w.command(&["-y"]));
    let staged = w.staged();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(!w.parent.join(&staged[0]).join("config.json").exists());
    gated.kill();
    assert_eq!(w.snapshot(), before);
    assert_next_run_sweeps(&w, &["-y"]);
}

/// Killed while config.json is built (a relative WorkingDir makes bundlegen
/// warn), after library matching changed the rootfs: the last step before
/// the archive and the rename.
#[test]
fn killed_right_before_commit_keeps_the_previous_bundle() {
    let w = World::with(vec![base_layer(), data_layer(&[("a", 64 << 10)], 4)], Some("srv"), json!({}));
    let before = w.previous();
    let gated = Gated::spawn(w.command(&["-y"]));
    let staged = w.staged();
    assert_eq!(staged.len(), 1, "{staged:?}");
    assert!(!w.parent.join(&staged[0]).join("config.json").exists());
    gated.kill();
    assert_eq!(w.snapshot(), before);
    assert_next_run_sweeps(&w, &["-y"]);
}

/// Killed while the archive is written: caught by watching for the staged
/// archive to grow (bundlegen prints nothing then), stopped with SIGSTOP to
/// check the state, then killed. The staged archive and bundle are swept by
/// the next run; the previous ones were never touched.
#[test]
fn killed_while_writing_the_archive_keeps_the_previous_bundle() {
    let w = World::new(vec![base_layer(), data_layer(&[("a", 16 << 20), ("b", 16 << 20)], 5)]);
    let before = w.previous();
    let mut child = w.command(&["-y", "-j", "1"]).stderr(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(120);
    let staged_archive = loop {
        let found = staged_in(&w.parent)
            .into_iter()
            .find(|n| n.starts_with(".bundle.tar.gz.bundlegen-"))
            .filter(|n| fs::metadata(w.parent.join(n)).is_ok_and(|m| m.len() > 0));
        if let Some(n) = found {
            unsafe { libc::kill(child.id() as i32, libc::SIGSTOP) };
            break n;
        }
        assert!(child.try_wait().expect("try_wait").is_none(), "bundlegen finished before its archive was seen");
        assert!(Instant::now() < deadline, "no staged archive appeared");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(w.parent.join(&staged_archive).is_file(), "still writing {staged_archive}");
    assert_eq!(w.snapshot(), before, "nothing renamed yet");
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    let left = w.staged();
    assert_eq!(left.len(), 2, "the staged bundle and archive: {left:?}");
    assert_eq!(w.snapshot(), before);
    assert_next_run_sweeps(&w, &["-y"]);
}

/// A live run's staging directory is never swept: a second run for the same
/// destination finishes while the first is stopped; the first, without
/// `-y`, then refuses to replace the new bundle (exit 1) and cleans up.
#[test]
fn a_live_runs_staging_directory_is_not_swept() {
    let w = World::with(vec![base_layer()], None, json!({"display": {"resolution": "1920x1080"}}));
    let first = Gated::spawn(w.command(&[]));
    let theirs = w.staged();
    assert_eq!(theirs.len(), 1);
    let second = w.run(&[]);
    assert!(second.status.success(), "{}", stderr_of(&second));
    assert_eq!(w.staged(), theirs, "the stopped run's directory is still there");
    let after_second = w.snapshot();
    let (status, stderr) = first.release();
    assert_failed(status, &stderr, 1, &["already exists and is not empty"]);
    assert_eq!(w.snapshot(), after_second, "the second run's bundle is kept");
    assert_eq!(w.staged(), Vec::<String>::new());
}

// ---------------------------------------------------------------------------
// Disk full, read-only and vanished output directories
// ---------------------------------------------------------------------------

/// The rootfs does not fit: exit 3 naming the layer, the entry and the
/// cause, with advice; nothing staged is left, and a previous bundle that
/// did fit is intact.
#[test]
fn disk_full_while_flattening() {
    if !can_mount() {
        return;
    }
    let w = World::new(vec![base_layer(), data_layer(&[("a", 256 << 10)], 6)]);
    let _tmpfs = Mounted::tmpfs(&w.parent, "3m");
    let first = w.run(&[]);
    assert!(first.status.success(), "{}", stderr_of(&first));
    let before = w.snapshot();
    let big = w.root.join("big");
    store(&big, vec![base_layer(), data_layer(&[("a", 2 << 20), ("b", 2 << 20)], 7)], None);
    let out = w.command_for(&big, &["-y"]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 3, &["layer sha256:", "entry `data/", "No space left on device", "help: the file system is full"]);
    assert!(!stderr_of(&out).contains("layer :"), "the layer is named:\n{}", stderr_of(&out));
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.staged(), Vec::<String>::new());
}

/// The bundle fits but its archive does not: the archive is written before
/// anything is renamed, so the previous bundle and archive stay as they
/// were (exit 3, the archive named).
#[test]
fn disk_full_while_archiving() {
    if !can_mount() {
        return;
    }
    let w = World::new(vec![base_layer(), data_layer(&[("a", 64 << 10)], 8)]);
    let _tmpfs = Mounted::tmpfs(&w.parent, "5m");
    let before = w.previous();
    let big = w.root.join("big");
    store(&big, vec![base_layer(), data_layer(&[("a", 3 << 20)], 9)], None);
    let out = w.command_for(&big, &["-y"]).output().expect("run");
    let stderr = stderr_of(&out);
    assert_failed(out.status, &stderr, 3, &["cannot write the archive", "bundle.tar.gz", "No space left on device", "help: check free space"]);
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.staged(), Vec::<String>::new());
    // Without a previous bundle: nothing at all.
    fs::remove_dir_all(&w.out).expect("rm bundle");
    fs::remove_file(w.archive()).expect("rm archive");
    let out = w.command_for(&big, &[]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 3, &["cannot write the archive"]);
    w.assert_nothing_written();
}

/// A read-only output directory: exit 3 before anything is read, naming the
/// directory; the previous bundle is intact.
#[test]
fn read_only_output_directory() {
    if !can_mount() {
        return;
    }
    let w = World::new(vec![base_layer()]);
    let before = w.previous();
    let ro = Mounted::bind(&w.parent);
    ro.remount("ro");
    let out = w.run(&["-y"]);
    let parent = w.parent.display().to_string();
    assert_failed(out.status, &stderr_of(&out), 3, &[&parent, "Read-only file system", "help: the file system is read-only"]);
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.staged(), Vec::<String>::new());
}

/// The output directory turns read-only half-way (after flattening): exit 3;
/// the staging directory cannot be removed then, and the next run, once the
/// directory is writable again, removes it.
#[test]
fn output_directory_turns_read_only_mid_run() {
    if !can_mount() {
        return;
    }
    let w = World::with(vec![base_layer(), data_layer(&[("a", 64 << 10)], 10)], None, json!({"display": {"resolution": "1920x1080"}}));
    let before = w.previous();
    let ro = Mounted::bind(&w.parent);
    let gated = Gated::spawn(w.command(&["-y"]));
    ro.remount("ro");
    let (status, stderr) = gated.release();
    assert_failed(status, &stderr, 3, &[&w.parent.display().to_string(), "Read-only file system"]);
    assert_eq!(w.snapshot(), before);
    ro.remount("rw");
    assert_next_run_sweeps(&w, &["-y"]);
}

/// The output's directory is deleted while bundlegen works in it: exit 3
/// naming a path in it; nothing is recreated under the final name.
#[test]
fn output_directory_vanishes_mid_run() {
    let w = World::with(vec![base_layer(), data_layer(&[("a", 64 << 10)], 11)], None, json!({"display": {"resolution": "1920x1080"}}));
    let gated = Gated::spawn(w.command(&[]));
    fs::remove_dir_all(&w.parent).expect("remove the output directory");
    let (status, stderr) = gated.release();
    let gone = format!("the output directory {} was removed while bundlegen was writing into it", w.parent.display());
    assert_failed(status, &stderr, 3, &[&gone, "caused by: ", "No such file or directory"]);
    assert!(!w.parent.exists(), "nothing recreated it");
}

// ---------------------------------------------------------------------------
// Truncated and corrupted blobs
// ---------------------------------------------------------------------------

fn layer_blob(layout: &Path) -> PathBuf {
    let index: Value = serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index")).expect("JSON");
    let manifest = blob(layout, index["manifests"][0]["digest"].as_str().expect("digest"));
    let m: Value = serde_json::from_slice(&fs::read(&manifest).expect("manifest")).expect("JSON");
    blob(layout, m["layers"][1]["digest"].as_str().expect("layer digest"))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"))
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir").flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).expect("copy");
        }
    }
}

/// Each corruption of a copy of a good layout fails with exit 1 and a
/// message naming the blob; the previous bundle and archive stay intact
/// and nothing is left staged.
#[test]
fn truncated_and_corrupted_blobs() {
    let w = World::new(vec![base_layer(), Layer::gz([Entry::dir("data/"), Entry::file("data/a", noise(200 << 10, 12))])]);
    let before = w.previous();
    let index: Value = serde_json::from_slice(&fs::read(w.layout.join("index.json")).expect("index")).expect("JSON");
    let manifest_digest = index["manifests"][0]["digest"].as_str().expect("digest").to_owned();
    let manifest: Value = serde_json::from_slice(&fs::read(blob(&w.layout, &manifest_digest)).expect("manifest")).expect("JSON");
    let config_digest = manifest["config"]["digest"].as_str().expect("config").to_owned();
    let layer_digest = manifest["layers"][1]["digest"].as_str().expect("layer").to_owned();
    let short = |d: &str| d[..19].to_owned(); // sha256: + 12 hex digits

    type Corrupt = Box<dyn Fn(&Path)>;
    let cut = |path: PathBuf, keep: f64| -> Corrupt {
        Box::new(move |layout: &Path| {
            let p = layout.join(&path);
            let len = fs::metadata(&p).expect("meta").len();
            File::options().write(true).open(&p).expect("open").set_len((len as f64 * keep) as u64).expect("truncate");
        })
    };
    let flip = |path: PathBuf| -> Corrupt {
        Box::new(move |layout: &Path| {
            let p = layout.join(&path);
            let mut bytes = fs::read(&p).expect("read");
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x20;
            fs::write(&p, bytes).expect("write");
        })
    };
    let rel = |d: &str| PathBuf::from("blobs/sha256").join(d.trim_start_matches("sha256:"));
    let cases: Vec<(&str, Corrupt, Vec<String>)> = vec![
        ("layer cut short", cut(rel(&layer_digest), 0.5), vec![short(&layer_digest), "descriptor declares".into()]),
        ("layer with a flipped byte", flip(rel(&layer_digest)), vec![short(&layer_digest)]),
        ("layer emptied", cut(rel(&layer_digest), 0.0), vec![short(&layer_digest)]),
        ("manifest with a flipped byte", flip(rel(&manifest_digest)), vec![short(&manifest_digest), "manifest".into()]),
        ("config cut short", cut(rel(&config_digest), 0.5), vec![short(&config_digest), "config".into()]),
        ("config with a flipped byte", flip(rel(&config_digest)), vec![short(&config_digest), "config".into()]),
        ("index.json cut short", cut(PathBuf::from("index.json"), 0.5), vec!["index.json".into()]),
        ("oci-layout emptied", cut(PathBuf::from("oci-layout"), 0.0), vec!["oci-layout".into()]),
    ];
    for (i, (what, corrupt, needles)) in cases.iter().enumerate() {
        let copy = w.root.join(format!("corrupt{i}"));
        copy_tree(&w.layout, &copy);
        corrupt(&copy);
        let out = w.command_for(&copy, &["-y"]).output().expect("run");
        let stderr = stderr_of(&out);
        let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
        assert_eq!(out.status.code(), Some(1), "{what}: exit code; stderr:\n{stderr}");
        assert_failed(out.status, &stderr, 1, &needles);
        assert_eq!(w.snapshot(), before, "{what}: the previous bundle is intact");
        assert_eq!(w.staged(), Vec::<String>::new(), "{what}: nothing staged is left");
    }

    // A gzip layer that is itself truncated, with a descriptor that agrees.
    let gz = Compression::Gzip.apply(Tar::of([Entry::file("data/a", noise(200 << 10, 13))]).bytes());
    let cut_gz = gz[..gz.len() / 2].to_vec();
    let truncated = w.root.join("truncated-gzip");
    store(&truncated, vec![base_layer(), Layer::gz([Entry::file("data/a", "x")]).with_blob(cut_gz)], None);
    let out = w.command_for(&truncated, &["-y"]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["cannot be decompressed as Gzip", "corrupt or truncated"]);
    assert_eq!(w.snapshot(), before);
    assert_eq!(w.staged(), Vec::<String>::new());
}

/// A layer blob rewritten in place, cut short, or replaced by a FIFO while
/// bundlegen reads it: the digest check at its end catches the change
/// (exit 1, the layer named); nothing is left.
#[test]
fn blob_changing_while_read() {
    // The odd entry comes first: bundlegen stops there with the blob open
    // and about a third of it read (the reader runs ahead of the writer by
    // a bounded amount).
    let layers = || vec![base_layer(), Layer::plain([odd_entry("odd"), Entry::file("big", noise(32 << 20, 14))])];
    type Change = fn(&File, u64);
    let changes: [(&str, Change, &str); 2] = [
        ("rewritten", |f, len| f.write_all_at(&[0xa5; 4096], len - (2 << 20)).expect("pwrite"), "content has digest"),
        ("cut short", |f, len| f.set_len(len - (2 << 20)).expect("truncate"), "descriptor declares"),
    ];
    for (what, change, needle) in changes {
        let w = World::new(layers());
        let layer = layer_blob(&w.layout);
        let digest = format!("sha256:{}", &layer.file_name().expect("name").to_string_lossy()[..12]);
        let gated = Gated::spawn(w.command(&[]));
        let opened = fs::read_dir(format!("/proc/{}/fd", gated.pid()))
            .expect("fds")
            .flatten()
            .any(|fd| fs::read_link(fd.path()).is_ok_and(|t| t == layer));
        assert!(opened, "{what}: bundlegen has the layer open");
        let f = File::options().write(true).open(&layer).expect("open blob");
        change(&f, f.metadata().expect("meta").len());
        drop(f);
        let (status, stderr) = gated.release();
        assert_failed(status, &stderr, 1, &[&digest, needle]);
        w.assert_nothing_written();
    }

    // A FIFO in place of a blob is refused at once, not waited on.
    let w = World::new(vec![base_layer(), data_layer(&[("a", 1024)], 15)]);
    let layer = layer_blob(&w.layout);
    fs::remove_file(&layer).expect("rm blob");
    let c = std::ffi::CString::new(layer.to_str().expect("utf-8")).expect("cstr");
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo");
    let mut child = w.command(&[]).stderr(Stdio::piped()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().expect("kill");
            panic!("bundlegen waits forever on a FIFO blob");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    child.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("read");
    assert_failed(status, &stderr, 1, &["not a regular file"]);
    w.assert_nothing_written();
}

/// Staged entries are created with the modes the final outputs have (a
/// bundle directory 0755, an archive 0644), whatever the umask of the tmp
/// files they start as.
#[test]
fn outputs_have_their_final_modes() {
    let w = World::new(vec![base_layer()]);
    let done = w.run(&[]);
    assert!(done.status.success(), "{}", stderr_of(&done));
    assert_eq!(fs::metadata(&w.out).expect("bundle").permissions().mode() & 0o777, 0o755);
    assert_eq!(fs::metadata(w.archive()).expect("archive").permissions().mode() & 0o777, 0o644);
    assert_eq!(w.staged(), Vec::<String>::new());
}

/// `unpack` shares the staging: killed half-way, its rootfs never appears
/// and the next run sweeps the leftovers; a full disk is exit 3 with
/// nothing left.
#[test]
fn unpack_killed_or_out_of_space() {
    let w = World::new(vec![
        base_layer(),
        Layer::plain([Entry::dir("data/"), Entry::file("data/a", noise(1 << 20, 16)), odd_entry("data/odd"), Entry::file("data/b", noise(4 << 20, 17))]),
    ]);
    let unpack = |args: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["-q", "unpack"]).args(args).arg(format!("oci:{}", w.layout.display())).arg(&w.out).stdin(Stdio::null()).stdout(Stdio::null());
        cmd
    };
    let gated = Gated::spawn(unpack(&[]));
    assert_eq!(w.staged().len(), 1);
    gated.kill();
    assert!(fs::symlink_metadata(&w.out).is_err());
    let next = unpack(&[]).output().expect("run");
    assert!(next.status.success(), "{}", stderr_of(&next));
    assert_eq!(w.staged(), Vec::<String>::new());
    let before = Snapshot::of(&[&w.out]);

    if !can_mount() {
        return;
    }
    let tmpfs = Mounted::tmpfs(&w.parent, "4m");
    let out = unpack(&["--force"]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 3, &["entry `data/", "No space left on device"]);
    assert_eq!(w.staged(), Vec::<String>::new());
    assert!(fs::symlink_metadata(&w.out).is_err(), "the tmpfs hides the earlier rootfs; nothing new appears");
    drop(tmpfs);
    assert_eq!(Snapshot::of(&[&w.out]), before);
}

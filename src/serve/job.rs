//! One request, start to end: check it, fetch the image, run `bundlegen
//! generate` in a child process, commit the archive to the store.
//!
//! `generate` runs as a child process so that a request's time limit can
//! be enforced (the process group is killed), and so that nothing an image
//! does to the pipeline (a crash, an abort, the OOM killer) can take the
//! worker down with it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::request::Request;
use super::store::{RequestKey, Store, StoreError};
use crate::image::ImageRef;
use crate::platform::{self, LoadOptions};

/// How much of a child's stderr is kept for the log.
const MAX_STDERR: usize = 16 << 10;
/// Random letters after the app id in a bundle's default name (BundleGen's
/// `Utils.get_random_string(6)`).
const RANDOM_NAME_LEN: usize = 6;

/// How a request ended, in BundleGen's classes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Committed: the bundle's path.
    Success(PathBuf),
    /// Worth another try by another worker (download failed, I/O error, time
    /// limit, a killed child), unless this was already a retry.
    Transient(String),
    /// Will fail again (bad request, unknown platform, bad image or
    /// metadata, app incompatible with the platform).
    Fatal(String),
}

/// What every job needs from the worker.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The `bundlegen` executable to run `generate` with.
    pub exe: PathBuf,
    pub store: Store,
    pub tmp_dir: PathBuf,
    pub searchpath: Option<std::ffi::OsString>,
    pub registry_creds: Option<String>,
    /// `generate -j` (0: one thread per core).
    pub threads: usize,
}

pub async fn run(req: &Request, key: &RequestKey, cx: &JobContext) -> Outcome {
    if req.image_url.is_empty() {
        return Outcome::Fatal("the request has no image_url".into());
    }
    // BundleGen checks the platform first: a name it cannot find is fatal.
    let search_paths: Vec<PathBuf> = match (&req.searchpath, &cx.searchpath) {
        (Some(s), _) => vec![PathBuf::from(s)],
        (None, Some(s)) => std::env::split_paths(s)
            .filter(|p| !p.as_os_str().is_empty())
            .collect(),
        (None, None) => Vec::new(),
    };
    let load = LoadOptions {
        search_paths: search_paths.clone(),
        overlays: Vec::new(),
        overlay_values: Vec::new(),
        strict: false,
        load_libs: false,
    };
    let name = req.platform.clone();
    let platform = match tokio::task::spawn_blocking(move || {
        platform::load(&name, &load, &crate::diag::Silent)
    })
    .await
    {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Outcome::Fatal(crate::error::chain(&e)),
        Err(e) => return Outcome::Transient(format!("loading the platform failed: {e}")),
    };
    let outdir = match &req.outputdir {
        Some(d) => PathBuf::from(d),
        None => cx.store.dir().to_owned(),
    };
    if !outdir.is_dir() {
        return Outcome::Fatal(format!(
            "the outputdir {} is not a directory",
            outdir.display()
        ));
    }
    if let Some(name) = &req.output_filename {
        let dest = outdir.join(format!("{name}.tar.gz"));
        if std::fs::symlink_metadata(&dest).is_ok() {
            return Outcome::Fatal(StoreError::Exists { path: dest }.to_string());
        }
    }
    let work = match WorkDir::create(&cx.tmp_dir) {
        Ok(w) => w,
        Err(e) => {
            return Outcome::Transient(format!(
                "cannot create a work directory in {}: {e}",
                cx.tmp_dir.display()
            ));
        }
    };
    let outcome = run_in(req, key, cx, &platform, &search_paths, &outdir, work.path()).await;
    // Removal may take a while for a big rootfs: off the event loop.
    let _ = tokio::task::spawn_blocking(move || drop(work)).await;
    outcome
}

async fn run_in(
    req: &Request,
    key: &RequestKey,
    cx: &JobContext,
    platform: &platform::Platform,
    search_paths: &[PathBuf],
    outdir: &Path,
    work: &Path,
) -> Outcome {
    // Remote images are downloaded first, as BundleGen's worker does: a
    // failed download is the one failure worth retrying elsewhere.
    let image = match ImageRef::parse(&req.image_url) {
        Err(e) => return Outcome::Fatal(e.to_string()),
        Ok(ImageRef::Skopeo { reference }) => {
            let layout = work.join("image");
            if let Err(e) =
                download(&reference, &layout, platform, cx.registry_creds.as_deref()).await
            {
                return Outcome::Transient(e);
            }
            format!("oci:{}:latest", layout.display())
        }
        Ok(_) => req.image_url.clone(),
    };

    let bundle = work.join("bundle");
    let report = work.join("report.json");
    let mut cmd = tokio::process::Command::new(&cx.exe);
    cmd.arg("--quiet")
        .arg("generate")
        .arg(&image)
        .arg(&bundle)
        .arg("-p")
        .arg(&req.platform);
    for dir in search_paths {
        cmd.arg("-s").arg(dir);
    }
    // The search path is passed explicitly: generate must not add the
    // environment's to a request's own.
    cmd.env_remove("RDK_PLATFORM_SEARCHPATH")
        .env_remove("RDK_PLATFORM");
    if let Some(meta) = &req.app_metadata {
        let file = work.join("appmetadata.json");
        let json = serde_json::to_vec_pretty(meta).unwrap_or_default();
        if let Err(e) = std::fs::write(&file, json) {
            return Outcome::Transient(format!("cannot write {}: {e}", file.display()));
        }
        cmd.arg("-a").arg(file);
    }
    if let Some(id) = &req.app_id {
        cmd.arg("-x").arg(id);
    }
    cmd.arg("-m").arg(req.lib_match_mode.as_str());
    if req.createmountpoints {
        cmd.arg("-r");
    }
    if cx.threads > 0 {
        cmd.arg("-j").arg(cx.threads.to_string());
    }
    cmd.arg("--report").arg(&report);
    // Temporary files (oci-archive: extraction) stay in the work directory.
    cmd.env("TMPDIR", work);
    match run_child(cmd).await {
        Ok(()) => {}
        Err(ChildFailure::Exit(code, stderr)) => {
            // generate's exit codes: 1 bad input, 2 incompatible, 3 failed.
            return if code == 3 {
                Outcome::Transient(stderr)
            } else {
                Outcome::Fatal(stderr)
            };
        }
        Err(ChildFailure::Signal(sig, stderr)) => {
            return Outcome::Transient(format!(
                "generate was killed by signal {sig}{}",
                suffix(&stderr)
            ));
        }
        Err(ChildFailure::Spawn(e)) => {
            return Outcome::Transient(format!("cannot run {}: {e}", cx.exe.display()));
        }
    }

    let app_id = match std::fs::read(&report)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
    {
        Some(v) => v
            .get("appId")
            .and_then(|a| a.as_str())
            .unwrap_or("bundle")
            .to_owned(),
        None => {
            return Outcome::Transient(format!("generate wrote no report at {}", report.display()));
        }
    };
    let archive = PathBuf::from(format!("{}.tar.gz", bundle.display()));
    let store = cx.store.clone();
    let key = key.clone();
    let explicit = req.output_filename.clone();
    let outdir = outdir.to_owned();
    let committed = tokio::task::spawn_blocking(move || {
        // A random name that happens to exist is drawn again; an explicit
        // one is the client's to choose.
        let mut attempt = 0;
        loop {
            let name = match &explicit {
                Some(n) => n.clone(),
                None => format!("{app_id}{}", random_letters(RANDOM_NAME_LEN)),
            };
            let dest = outdir.join(format!("{name}.tar.gz"));
            match store.commit(&key, &archive, &dest) {
                Err(StoreError::Exists { .. }) if explicit.is_none() && attempt < 8 => attempt += 1,
                other => return other.map(|()| dest),
            }
        }
    })
    .await;
    match committed {
        Ok(Ok(dest)) => Outcome::Success(dest),
        Ok(Err(e @ StoreError::Exists { .. })) => Outcome::Fatal(crate::error::chain(&e)),
        Ok(Err(e)) => Outcome::Transient(crate::error::chain(&e)),
        Err(e) => Outcome::Transient(format!("committing the bundle failed: {e}")),
    }
}

/// `skopeo copy` of the platform's architecture, as BundleGen's
/// `ImageDownloader` runs it.
async fn download(
    reference: &str,
    layout: &Path,
    platform: &platform::Platform,
    creds: Option<&str>,
) -> Result<(), String> {
    let mut cmd = tokio::process::Command::new("skopeo");
    if !Path::new("/etc/containers/policy.json").exists()
        && !std::env::var_os("HOME").is_some_and(|h| {
            Path::new(&h)
                .join(".config/containers/policy.json")
                .exists()
        })
    {
        cmd.arg("--insecure-policy");
    }
    if let Some(arch) = platform.oci_arch() {
        cmd.arg("--override-os")
            .arg("linux")
            .arg("--override-arch")
            .arg(arch);
        if let Some(variant) = platform
            .spec
            .arch
            .as_ref()
            .and_then(|a| a.variant.as_deref())
        {
            cmd.arg("--override-variant").arg(variant);
        }
    }
    cmd.arg("copy").arg("--quiet");
    if let Some(c) = creds {
        cmd.arg("--src-creds").arg(c);
    }
    cmd.arg(reference)
        .arg(format!("oci:{}:latest", layout.display()));
    match run_child(cmd).await {
        Ok(()) => Ok(()),
        Err(ChildFailure::Exit(_, stderr)) => {
            Err(format!("downloading {reference} failed{}", suffix(&stderr)))
        }
        Err(ChildFailure::Signal(sig, _)) => Err(format!(
            "downloading {reference}: skopeo was killed by signal {sig}"
        )),
        Err(ChildFailure::Spawn(e)) => {
            Err(format!("cannot run skopeo to download {reference}: {e}"))
        }
    }
}

enum ChildFailure {
    Spawn(std::io::Error),
    Exit(i32, String),
    Signal(i32, String),
}

/// Runs `cmd` in its own process group, killed with the worker and killed
/// (the whole group) when the job is dropped: at its time limit, or when
/// the worker stops.
async fn run_child(mut cmd: tokio::process::Command) -> Result<(), ChildFailure> {
    use std::os::unix::process::ExitStatusExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The worker is single-threaded (current-thread runtime): the
            // forking thread lives as long as the worker.
            libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            );
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(ChildFailure::Spawn)?;
    let guard = GroupKiller(child.id().map(|p| p as libc::pid_t));
    let mut stderr = Vec::new();
    if let Some(mut pipe) = child.stderr.take() {
        let mut buf = [0u8; 8192];
        loop {
            match pipe.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    stderr.extend_from_slice(&buf[..n]);
                    if stderr.len() > MAX_STDERR {
                        stderr.drain(..stderr.len() - MAX_STDERR);
                    }
                }
            }
        }
    }
    let status = child.wait().await.map_err(ChildFailure::Spawn)?;
    // Reaped: its pid (and group id) may be reused now.
    std::mem::forget(guard);
    let text = String::from_utf8_lossy(&stderr).trim().to_owned();
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => Err(ChildFailure::Exit(code, text)),
        (None, Some(sig)) => Err(ChildFailure::Signal(sig, text)),
        (None, None) => Err(ChildFailure::Exit(-1, text)),
    }
}

/// Kills a child's process group when dropped before the child was reaped.
struct GroupKiller(Option<libc::pid_t>);

impl Drop for GroupKiller {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            // SAFETY: a plain system call; the group is the child's own.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// A job's directory in `BUNDLEGEN_TMP_DIR`, locked while the job runs so
/// that [`sweep_work_dirs`] can remove those of killed workers.
struct WorkDir {
    dir: Option<tempfile::TempDir>,
    _lock: std::fs::File,
}

const WORK_PREFIX: &str = "bundlegen-job-";

impl WorkDir {
    fn create(tmp: &Path) -> std::io::Result<WorkDir> {
        std::fs::create_dir_all(tmp)?;
        let dir = tempfile::Builder::new()
            .prefix(WORK_PREFIX)
            .tempdir_in(tmp)?;
        let lock = std::fs::File::open(dir.path())?;
        // SAFETY: a plain system call on an open descriptor.
        if unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&lock),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        Ok(WorkDir {
            dir: Some(dir),
            _lock: lock,
        })
    }

    fn path(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap_or(Path::new(""))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            // The rootfs may hold read-only directories: remove_tree copes.
            let path = dir.keep();
            let _ = crate::staging::remove_tree(&path);
        }
    }
}

/// Removes the work directories in `tmp` that no live worker holds (left by
/// a worker that was killed). Returns how many.
pub fn sweep_work_dirs(tmp: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with(WORK_PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(f) = std::fs::File::open(&path) else {
            continue;
        };
        // SAFETY: a plain system call on an open descriptor.
        let free = unsafe {
            libc::flock(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::LOCK_EX | libc::LOCK_NB,
            )
        } == 0;
        if free && crate::staging::remove_tree(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn random_letters(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    // SAFETY: fills a buffer of the given length.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), n, 0) };
    if got != n as isize {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        bytes
            .iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (seed >> (i * 5)) as u8);
    }
    bytes.iter().map(|b| (b'a' + b % 26) as char).collect()
}

fn suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    }
}

pub(crate) fn timeout_message(limit: Duration) -> String {
    format!(
        "the request took longer than the time limit of {}s and was stopped",
        limit.as_secs()
    )
}

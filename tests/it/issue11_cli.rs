//! Issue 11, item 5: the command line and environment as BundleGen's own
//! scripts and Yocto tasks use them (`bundlegen -vv generate`,
//! `FILE_FORMAT_IPK=1`, `RDK_OCI_REGISTRY_CREDS`, the success line they
//! grep for, an existing archive replaced), and `-u` keeping
//! `X-dobby.optional` mounts as ordinary mounts, run by runc.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::builder::{Entry, Image, Layer, Layout, RunConfig};
use crate::faults::{World, assert_failed, base_layer, bin, stderr_of};

/// `bundlegen PRE generate -p qemux86-64 -a META ARGS oci:LAYOUT OUT`,
/// without `-q` (BundleGen's scripts never silence it).
fn generate(w: &World, pre: &[&str], args: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(pre)
        .args(["generate", "-p", "qemux86-64", "-a"])
        .arg(&w.meta)
        .args(args)
        .arg(format!("oci:{}", w.layout.display()))
        .arg(&w.out)
        .env_remove("FILE_FORMAT_IPK")
        .env_remove("RDK_OCI_REGISTRY_CREDS")
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .stdin(Stdio::null());
    cmd
}

fn ok(mut cmd: Command) -> Output {
    let out = cmd.output().expect("run bundlegen");
    assert!(out.status.success(), "{cmd:?}:\n{}", stderr_of(&out));
    out
}

fn clean(w: &World) {
    for p in [w.out.clone(), w.archive(), w.parent.join("bundle.ipk")] {
        if p.is_dir() {
            fs::remove_dir_all(&p).expect("rm");
        } else if p.exists() {
            fs::remove_file(&p).expect("rm");
        }
    }
}

fn tar_list(archive: &Path) -> String {
    let out = Command::new("tar").arg("-tzf").arg(archive).output().expect("tar");
    assert!(out.status.success(), "tar -tzf {}: {}", archive.display(), stderr_of(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `-v`, `-vv`, `-vvv` before the subcommand (BundleGen's test scripts run
/// `bundlegen -vvv generate ...`); the last line is BundleGen's success
/// line with the archive's absolute path, which scripts grep for.
#[test]
fn issue11_verbosity_and_success_line() {
    let w = World::new(vec![base_layer()]);
    for pre in [&[][..], &["-v"], &["-vv"], &["-vvv"]] {
        clean(&w);
        let out = ok(generate(&w, pre, &[]));
        let stderr = stderr_of(&out);
        let last = stderr.lines().last().unwrap_or_default();
        let archive = fs::canonicalize(w.archive()).expect("archive written");
        assert_eq!(last, format!("Successfully generated bundle at {}", archive.display()), "{pre:?}");
    }
    // -v after the subcommand too; -q silences the line.
    clean(&w);
    ok(generate(&w, &[], &["-v"]));
    clean(&w);
    let out = ok(generate(&w, &["-q"], &[]));
    assert!(!stderr_of(&out).contains("Successfully"), "{}", stderr_of(&out));
    // A relative OUTPUTDIR is reported absolute, as BundleGen does.
    clean(&w);
    let mut cmd = Command::new(bin());
    cmd.args(["generate", "--no-archive", "-p", "qemux86-64", "-a"])
        .arg(&w.meta)
        .arg(format!("oci:{}", w.layout.display()))
        .arg("deploy/bundle")
        .current_dir(&w.root);
    let out = ok(cmd);
    let root = fs::canonicalize(&w.root).expect("root");
    assert!(
        stderr_of(&out).ends_with(&format!("Successfully generated bundle at {}\n", root.join("deploy/bundle").display())),
        "{}",
        stderr_of(&out)
    );
}

/// `FILE_FORMAT_IPK` as click reads BundleGen's `-i` (1/true/yes/on, and
/// 0/false/no/off or empty for off); the ipk is BundleGen's gzip'd tar by
/// default, `ar` with `--ipk-format ar`; both unpack with the real tools.
#[test]
fn issue11_file_format_ipk_and_layouts() {
    let w = World::new(vec![base_layer()]);
    let ipk = w.parent.join("bundle.ipk");
    for on in ["1", "true", "YES", "on"] {
        clean(&w);
        let mut cmd = generate(&w, &[], &[]);
        cmd.env("FILE_FORMAT_IPK", on);
        let out = ok(cmd);
        assert!(ipk.is_file() && !w.archive().exists(), "FILE_FORMAT_IPK={on}");
        assert!(stderr_of(&out).ends_with(&format!("Successfully generated bundle at {}\n", fs::canonicalize(&ipk).expect("ipk").display())));
        assert_eq!(tar_list(&ipk), "data.tar.gz\ncontrol.tar.gz\ndebian-binary\n", "tar xzf reads BundleGen's layout");
    }
    for off in ["0", "false", "no", ""] {
        clean(&w);
        let mut cmd = generate(&w, &[], &[]);
        cmd.env("FILE_FORMAT_IPK", off);
        ok(cmd);
        assert!(w.archive().is_file() && !ipk.exists(), "FILE_FORMAT_IPK={off:?}");
    }
    clean(&w);
    let mut cmd = generate(&w, &[], &[]);
    cmd.env("FILE_FORMAT_IPK", "maybe");
    let out = cmd.output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["FILE_FORMAT_IPK", "maybe"]);

    // --no-archive wins over the variable (the Yocto class passes it for
    // host images); an explicit -i with it is a usage error.
    clean(&w);
    let mut cmd = generate(&w, &[], &["--no-archive"]);
    cmd.env("FILE_FORMAT_IPK", "1");
    ok(cmd);
    assert!(w.out.is_dir() && !ipk.exists() && !w.archive().exists());
    clean(&w);
    let out = generate(&w, &[], &["--no-archive", "-i"]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["cannot be used with"]);

    clean(&w);
    ok(generate(&w, &[], &["-i", "--ipk-format", "ar"]));
    let out = Command::new("ar").arg("t").arg(&ipk).output().expect("ar");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "debian-binary\ncontrol.tar.gz\ndata.tar.gz\n");

    // Unpacked as BundleGen users do: tar xzf, then the bundle from
    // data.tar.gz.
    clean(&w);
    ok(generate(&w, &[], &["-i"]));
    let x = w.root.join("x");
    fs::create_dir(&x).expect("mkdir");
    for (archive, dir) in [(ipk.as_path(), &x), (&x.join("data.tar.gz"), &x)] {
        let out = Command::new("tar").arg("-xzf").arg(archive).current_dir(dir).output().expect("tar");
        assert!(out.status.success(), "{}", stderr_of(&out));
    }
    assert_eq!(fs::read(x.join("config.json")).expect("config"), fs::read(w.out.join("config.json")).expect("config"));
    assert!(x.join("rootfs/usr/bin/app").is_file());
}

/// An existing archive is replaced without `-y`, as BundleGen's
/// `create_tgz` removes it; an existing bundle directory still needs `-y`
/// (BundleGen asks, and aborts without a terminal).
#[test]
fn issue11_existing_archive_is_replaced() {
    let w = World::new(vec![base_layer()]);
    fs::write(w.archive(), b"an old archive").expect("write");
    ok(generate(&w, &[], &[]));
    assert!(tar_list(&w.archive()).contains("config.json"), "replaced by the new archive");
    let out = generate(&w, &[], &[]).output().expect("run");
    assert_failed(out.status, &stderr_of(&out), 1, &["bundle already exists and is not empty", "help: pass -y to replace it"]);
    ok(generate(&w, &[], &["-y"]));
}

/// `RDK_OCI_REGISTRY_CREDS` is `-c`, as in BundleGen; `-c` wins. The
/// registry is a stand-in: no registry is reachable here, so `skopeo` on
/// `PATH` is a script that records its arguments and fails.
#[test]
fn issue11_registry_creds_from_the_environment() {
    let w = World::new(vec![base_layer()]);
    let tools = w.root.join("tools");
    fs::create_dir(&tools).expect("mkdir");
    let log = w.root.join("skopeo.args");
    let script = tools.join("skopeo");
    fs::write(&script, format!("#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho 'stand-in: no registry' >&2\nexit 1\n", log.display()))
        .expect("write stand-in");
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).expect("chmod");
    let path = format!("{}:{}", tools.display(), std::env::var("PATH").unwrap_or_default());
    let run = |env: Option<&str>, args: &[&str]| {
        let _ = fs::remove_file(&log);
        let mut cmd = Command::new(bin());
        cmd.args(["generate", "-p", "qemux86-64", "-a"]).arg(&w.meta).args(args);
        cmd.arg("docker://registry.example/app:1").arg(&w.out).env("PATH", &path).env_remove("RDK_OCI_REGISTRY_CREDS");
        if let Some(v) = env {
            cmd.env("RDK_OCI_REGISTRY_CREDS", v);
        }
        let out = cmd.output().expect("run");
        assert_failed(out.status, &stderr_of(&out), 1, &["stand-in: no registry", "RDK_OCI_REGISTRY_CREDS"]);
        assert!(!stderr_of(&out).contains("s3cret"), "credentials never printed:\n{}", stderr_of(&out));
        fs::read_to_string(&log).expect("skopeo was run")
    };
    let args = run(Some("user:s3cret"), &[]);
    assert!(args.contains("--src-creds\nuser:s3cret\n"), "{args}");
    let args = run(Some("user:s3cret"), &["-c", "other:pw"]);
    assert!(args.contains("--src-creds\nother:pw\n") && !args.contains("s3cret"), "{args}");
    let args = run(None, &[]);
    assert!(!args.contains("--src-creds"), "{args}");
    // --help shows the variable, never its value.
    let out = Command::new(bin()).args(["generate", "--help"]).env("RDK_OCI_REGISTRY_CREDS", "user:s3cret").output().expect("help");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("RDK_OCI_REGISTRY_CREDS") && !help.contains("s3cret"), "{help}");
}

/// A static x86-64 program: `exit(open("/opt/dyn/flag", O_RDONLY))`, so
/// the exit status is 3 when the file is there, 254 (`-ENOENT`) when not.
fn open_flag_exe() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    let path = b"/opt/dyn/flag\0";
    let mut code = vec![0x48, 0x8d, 0x3d, 0, 0, 0, 0]; // lea rdi, [rip + path]
    code.extend([0x31, 0xf6]); // xor esi, esi
    code.extend([0xb8, 2, 0, 0, 0, 0x0f, 0x05]); // mov eax, 2 (open); syscall
    code.extend([0x89, 0xc7]); // mov edi, eax
    code.extend([0xb8, 60, 0, 0, 0, 0x0f, 0x05]); // mov eax, 60 (exit); syscall
    let rel = (code.len() - 7) as i32;
    code[3..7].copy_from_slice(&rel.to_le_bytes());
    code.extend(path);
    let entry = BASE + 64 + 56;
    let size = (64 + 56 + code.len()) as u64;
    let mut elf = Vec::new();
    elf.extend(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend(2u16.to_le_bytes()); // ET_EXEC
    elf.extend(62u16.to_le_bytes()); // EM_X86_64
    elf.extend(1u32.to_le_bytes());
    elf.extend(entry.to_le_bytes());
    elf.extend(64u64.to_le_bytes()); // e_phoff
    elf.extend(0u64.to_le_bytes()); // e_shoff
    elf.extend(0u32.to_le_bytes()); // e_flags
    elf.extend(64u16.to_le_bytes()); // e_ehsize
    elf.extend(56u16.to_le_bytes()); // e_phentsize
    elf.extend(1u16.to_le_bytes()); // e_phnum
    elf.extend([0u8; 6]); // e_shentsize, e_shnum, e_shstrndx
    elf.extend(1u32.to_le_bytes()); // PT_LOAD
    elf.extend(5u32.to_le_bytes()); // R + X
    elf.extend(0u64.to_le_bytes()); // p_offset
    elf.extend(BASE.to_le_bytes()); // p_vaddr
    elf.extend(BASE.to_le_bytes()); // p_paddr
    elf.extend(size.to_le_bytes()); // p_filesz
    elf.extend(size.to_le_bytes()); // p_memsz
    elf.extend(0x1000u64.to_le_bytes()); // p_align
    elf.extend(code);
    elf
}

/// `-u` keeps an `X-dobby.optional` bind mount as an ordinary one, as
/// BundleGen's crun bundle does, and runc mounts it: the program inside
/// opens the file from the host directory.
#[test]
fn issue11_crun_bundle_keeps_optional_mounts_and_runc_runs_it() {
    if !crate::faults::is_root() {
        eprintln!("skipping: runc runs the bundle as root");
        return;
    }
    if !crate::debian::have("runc", "--version") && crate::debian::unavailable::<()>("runc is not installed").is_none() {
        return;
    }
    let dir = tempfile::Builder::new().prefix("bundlegen-issue11-").tempdir().expect("tempdir");
    let layout = dir.path().join("image");
    let mut image = Image::new(vec![Layer::gz([
        Entry::dir("usr/"),
        Entry::dir("usr/bin/"),
        Entry::file("usr/bin/openflag", open_flag_exe()).with_mode(0o755),
    ])]);
    image.run = RunConfig { entrypoint: Some(vec!["/usr/bin/openflag".into()]), ..RunConfig::default() };
    Layout::single(&layout, image);
    let host = dir.path().join("host-dir");
    fs::create_dir(&host).expect("mkdir");
    fs::write(host.join("flag"), b"mounted").expect("write");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let overlay = dir.path().join("overlay.json");
    // No RLIMIT_RTPRIO: raising it is not permitted where these tests run.
    let mounts = json!({"resourceLimits": [],
        "mounts": [{"source": host, "destination": "/opt/dyn", "type": "bind", "options": ["rbind", "ro", "X-dobby.optional"]}]});
    fs::write(&overlay, mounts.to_string()).expect("write overlay");
    let meta = dir.path().join("app.json");
    crate::faults::app_metadata(&meta, json!({}));
    let out_dir = dir.path().join("bundle");
    let out = Command::new(bin())
        .args(["-q", "generate", "-u", "--no-archive", "-p", "qemux86-64", "--platform-overlay"])
        .arg(&overlay)
        .arg("-a")
        .arg(&meta)
        .arg(format!("oci:{}", layout.display()))
        .arg(&out_dir)
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr_of(&out));
    assert!(stderr_of(&out).contains("/opt/dyn: X-dobby.optional"), "warned: {}", stderr_of(&out));
    let config: Value = serde_json::from_slice(&fs::read(out_dir.join("config.json")).expect("config")).expect("json");
    let m: Vec<&Value> = config["mounts"].as_array().expect("mounts").iter().filter(|m| m["destination"] == "/opt/dyn").collect();
    assert_eq!(m.len(), 1, "{config}");

    let run = |id: &str| {
        let out = Command::new("runc").args(["run", "--bundle"]).arg(&out_dir).arg(id).stdin(Stdio::null()).output().expect("runc");
        let _ = Command::new("runc").args(["delete", "--force", id]).output();
        out
    };
    let out = run("bundlegen-issue11-optional");
    assert_eq!(out.status.code(), Some(3), "the file is visible in the container: {}", stderr_of(&out));
    // BundleGen's crun bundle keeps the option itself; runc ignores it on
    // a bind mount, so that bundle runs the same.
    let mut bundlegen_form = config.clone();
    for m in bundlegen_form["mounts"].as_array_mut().expect("mounts") {
        if m["destination"] == "/opt/dyn" {
            m["options"].as_array_mut().expect("options").push(json!("X-dobby.optional"));
        }
    }
    fs::write(out_dir.join("config.json"), bundlegen_form.to_string()).expect("write");
    let out = run("bundlegen-issue11-bgform");
    assert_eq!(out.status.code(), Some(3), "BundleGen's form under runc: {}", stderr_of(&out));
    // Without the mount the same program sees no file: the mount did it.
    let mut config = config;
    config["mounts"].as_array_mut().expect("mounts").retain(|m| m["destination"] != "/opt/dyn");
    fs::write(out_dir.join("config.json"), config.to_string()).expect("write");
    let out = run("bundlegen-issue11-nomount");
    assert_eq!(out.status.code(), Some(254), "{}", stderr_of(&out));
}

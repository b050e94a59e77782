# SPDX-License-Identifier: Apache-2.0
"""Single recipes' tasks run by the real bitbake (`bitbake -b`, which parses
only that recipe) on the real layers, in a build directory of their own with
BB_NO_NETWORK = "1" (tests/yocto/kas/tasks.yml)."""

import json
import os
import re
import shutil
import subprocess
import tarfile
import tomllib

import pytest

import reallayers

MACHINE = "qemux86-64"
TASKS_KAS = ["tests/yocto/kas/tasks.yml"]
RECIPE = "recipes-tools/bundlegen/bundlegen_git.bb"


def variable(env, name):
    m = re.search(r'^(?:export )?%s="(.*)"$' % re.escape(name), env, re.M)
    return m.group(1) if m else None


def run(real, command, dl_dir, check=True):
    try:
        return real.bitbake(MACHINE, command, extra_kas=TASKS_KAS, kind="tasks",
                            env={"DL_DIR": str(dl_dir)}, check=check)
    except reallayers.SetupError as e:
        pytest.fail(str(e), pytrace=False)


def lock_crates():
    lock = tomllib.loads((reallayers.REPO / "Cargo.lock").read_text())
    return {"%s-%s" % (p["name"], p["version"]): p["checksum"] for p in lock["package"] if p.get("source")}


def fill_dl_dir(real, dl_dir, crates):
    """DL_DIR holding exactly the .crate files cargo downloaded."""
    if dl_dir.exists():
        subprocess.run(["rm", "-rf", str(dl_dir)], check=True)
    dl_dir.mkdir(parents=True)
    for name, path in crates.items():
        (dl_dir / name).write_bytes(path.read_bytes())
    real.runner.chown(dl_dir)


@pytest.fixture(scope="module")
def crates(real):
    try:
        return reallayers.cargo_crates(reallayers.REPO / "Cargo.lock")
    except reallayers.SetupError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="module")
def native_unpacked(real, crates):
    """bundlegen-native's do_fetch and do_unpack, with no network: every
    crate:// file must come from DL_DIR and match its sha256."""
    dl_dir = reallayers.CACHE / real.release / "dl-crates"
    fill_dl_dir(real, dl_dir, crates)
    recipe = "virtual:native:%s/%s" % (real.layer, RECIPE)
    result = run(real, "bitbake -b %s -c clean && bitbake -b %s -c unpack && bitbake -b %s -e" % (recipe, recipe, recipe), dl_dir, check=False)
    return result, dl_dir


def test_native_fetch_verifies_every_crate_and_unpacks(native_unpacked):
    result, dl_dir = native_unpacked
    assert result.returncode == 0, result.stdout[-8000:]
    want = lock_crates()
    # The fetcher wrote a done stamp for each crate only after its sha256
    # matched the recipe's SRC_URI[...sha256sum].
    assert sorted(p.name[:-len(".crate.done")] for p in dl_dir.glob("*.crate.done")) == sorted(want)
    unpackdir = variable(result.stdout, "UNPACKDIR")
    vendored = os.path.join(unpackdir, "cargo_home", "bitbake")
    got = {}
    for name in sorted(os.listdir(vendored)):
        with open(os.path.join(vendored, name, ".cargo-checksum.json")) as f:
            got[name] = json.load(f)["package"]
    assert got == want


def test_cargo_resolves_the_vendored_set_offline(native_unpacked, tmp_path):
    """cargo, offline and with an empty CARGO_HOME, resolves Cargo.lock from
    the crates bitbake unpacked (as cargo_common's vendoring config does)."""
    result, _ = native_unpacked
    assert result.returncode == 0, result.stdout[-8000:]
    source = variable(result.stdout, "S")
    vendored = os.path.join(variable(result.stdout, "UNPACKDIR"), "cargo_home", "bitbake")
    assert os.path.isfile(os.path.join(source, "Cargo.lock"))
    env = dict(os.environ, CARGO_HOME=str(tmp_path / "cargo-home"))
    proc = subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--locked", "--offline",
         "--manifest-path", os.path.join(source, "Cargo.toml"),
         "--config", 'source.crates-io.replace-with="vendored"',
         "--config", 'source.vendored.directory="%s"' % vendored],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.returncode == 0, proc.stderr
    packages = {"%s-%s" % (p["name"], p["version"]) for p in json.loads(proc.stdout)["packages"]}
    assert set(lock_crates()) <= packages


def test_native_fetch_refuses_a_crate_with_the_wrong_checksum(real, crates):
    dl_dir = reallayers.CACHE / real.release / "dl-crates-bad"
    fill_dl_dir(real, dl_dir, crates)
    victim = sorted(crates)[0]
    data = bytearray((dl_dir / victim).read_bytes())
    data[-1] ^= 0xFF
    (dl_dir / victim).write_bytes(bytes(data))
    recipe = "virtual:native:%s/%s" % (real.layer, RECIPE)
    result = run(real, "bitbake -b %s -c fetch -f" % recipe, dl_dir, check=False)
    assert result.returncode != 0
    assert "Checksum mismatch for local file %s" % (dl_dir / victim) in result.stdout


# The class's three sides as real bitbake tasks -----------------------------
#
# `bitbake -b IMAGE -c image_complete` runs the image's own tasks: image-oci's
# real do_image_oci (Debian's umoci) writes the OCI layout from small
# per-layer trees, the class's tasks run, and oe-core's real
# do_image_complete deploys. What stands in for the rest is named, with the
# reason, in tests/yocto/meta-realtest/classes/bundlegen-realtest.bbclass.

CONTAINER = "bundlegen-demo-container"
HOST = "bundlegen-demo-host"
DEMO = reallayers.REPO / "meta-bundlegen" / "recipes-demo"
# This machine's x86-64 files: a libc, its loader and a shell.
LIBC = "/lib/x86_64-linux-gnu/libc.so.6"
LOADER = "/lib64/ld-linux-x86-64.so.2"
SHELL = "/bin/dash"


def _copy(src, root, dest):
    path = root / dest.lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), path)


def _base(root):
    """The base layer: libc, loader, passwd and group, lib64 -> usr/lib64."""
    _copy(LIBC, root, "/usr/lib/x86_64-linux-gnu/libc.so.6")
    _copy(LOADER, root, "/usr/lib64/ld-linux-x86-64.so.2")
    (root / "lib64").symlink_to("usr/lib64")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/ld.so.conf").write_text("/usr/lib/x86_64-linux-gnu\n")


@pytest.fixture(scope="module")
def standins(real, tool, tmp_path_factory):
    """${TOPDIR}/stand-ins: the bundlegen binary, the per-layer trees of the
    demo container (base: libc; shell: a shell; app: the demo program built
    from meta-bundlegen's own C source with this machine's gcc, and its
    appmetadata.json) and the device tree of the host image."""
    top = real.builddir(MACHINE, "tasks") / "stand-ins"
    if top.exists():
        shutil.rmtree(top)
    (top / "bin").mkdir(parents=True)
    shutil.copy2(tool, top / "bin" / "bundlegen")
    shutil.copy2(reallayers.REPO / "tests/yocto/meta-harness/scripts/shadow-standin", top / "bin" / "shadow-standin")
    layers = top / "oci-layers" / CONTAINER
    base, shell, app = (layers / "layer-1-base", layers / "layer-2-shell", layers / "layer-3-app")
    _base(base)
    _copy(SHELL, shell, "/usr/bin/sh")
    (app / "usr/bin").mkdir(parents=True)
    subprocess.run(["gcc", "-O2", "-o", str(app / "usr/bin/bundlegen-demo"),
                    str(DEMO / "bundlegen-demo/files/bundlegen-demo.c")], check=True)
    shutil.copy2(DEMO / "bundlegen-demo/files/appmetadata.json", app / "appmetadata.json")
    # The container image's rootfs is the union of its layers.
    rootfs = top / "rootfs" / CONTAINER
    for layer in (base, shell, app):
        shutil.copytree(layer, rootfs, symlinks=True, dirs_exist_ok=True)
    device = top / "rootfs" / HOST
    _base(device)
    _copy(SHELL, device, "/usr/bin/sh")
    crun = device / "usr/bin/crun"
    crun.write_text("#!/bin/sh\nexit 0\n")  # its presence is all the platform needs
    crun.chmod(0o755)
    real.runner.chown(top)
    return top


def build_image(real, recipe, dl_dir, extra_kas=(), task="image_complete"):
    path = "%s/meta-bundlegen/recipes-demo/images/%s.bb" % (real.layer, recipe)
    # clean first: every task runs, none is skipped by a stamp of an earlier run
    command = "bitbake -b %s -c clean && bitbake -b %s -c %s; rc=$?; bitbake -b %s -e; exit $rc" % (
        path, path, task, path)
    return real.bitbake(MACHINE, command, extra_kas=TASKS_KAS + list(extra_kas), kind="tasks",
                        env={"DL_DIR": str(dl_dir)}, check=False)


@pytest.fixture(scope="module")
def container_built(real, standins):
    return build_image(real, CONTAINER, reallayers.CACHE / real.release / "dl-crates")


def test_container_side_writes_bundles_beside_the_real_oci_layout(container_built):
    result = container_built
    assert result.returncode == 0, result.stdout[-10000:]
    env = result.stdout
    deploy = variable(env, "DEPLOY_DIR_IMAGE")
    link = variable(env, "IMAGE_LINK_NAME")
    assert link.startswith("%s-%s" % (CONTAINER, MACHINE))  # wrynose adds ".rootfs"
    # image-oci's layout, written by its own shell code: three layers, the tag
    layout = os.path.join(deploy, "%s-latest-oci" % CONTAINER)
    index = json.load(open(os.path.join(layout, "index.json")))
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["latest"]
    digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.load(open(os.path.join(layout, "blobs/sha256", digest)))
    assert len(manifest["layers"]) == 3
    # the class's archive and report, with their stable links
    archive = os.path.join(deploy, "%s-bundle-%s.tar.gz" % (link, MACHINE))
    report = os.path.join(deploy, "%s-bundle-%s.report.json" % (link, MACHINE))
    assert os.path.islink(archive) and os.path.islink(report)
    assert os.readlink(archive).endswith("-bundle-%s.tar.gz" % MACHINE)
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        config = json.load(tar.extractfile(next(n for n in names if n.endswith("config.json"))))
    assert any(n.endswith("rootfs/usr/bin/bundlegen-demo") for n in names)
    assert config["process"]["args"][0] == "/usr/bin/bundlegen-demo"
    assert config["ociVersion"] == "1.0.2"  # crun: a plain OCI bundle, not Dobby's
    made = json.load(open(report))
    assert made["image"]["manifest"] == index["manifests"][0]["digest"]
    assert made["image"]["layers"] == 3 and made["platform"] == MACHINE


@pytest.fixture(scope="module")
def host_built(real, standins, container_built):
    assert container_built.returncode == 0, container_built.stdout[-6000:]
    return build_image(real, HOST, reallayers.CACHE / real.release / "dl-crates")


def test_host_side_installs_bundle_account_and_unit(host_built):
    result = host_built
    assert result.returncode == 0, result.stdout[-10000:]
    env = result.stdout
    rootfs = variable(env, "IMAGE_ROOTFS")
    workdir = variable(env, "WORKDIR")
    # the class's entries of the real ROOTFS_POSTPROCESS_COMMAND, and
    # oe-core's extrausers entry that makes the app's account, are what ran
    commands = variable(env, "ROOTFS_POSTPROCESS_COMMAND").split()
    assert commands.index("bundlegen_check_accounts") < commands.index("set_user_group") \
        < commands.index("bundlegen_install_containers")
    assert open(os.path.join(workdir, "realtest-postprocess")).read().split() == \
        ["bundlegen_check_accounts", "set_user_group", "bundlegen_install_containers"]
    assert "useradd -u 30000 -g app-demo" in variable(env, "EXTRA_USERS_PARAMS")
    bundle = os.path.join(rootfs, "var/lib/bundlegen/demo")
    config = json.load(open(os.path.join(bundle, "config.json")))
    assert config["process"]["user"]["uid"] == 30000 and config["process"]["user"]["gid"] == 30000
    assert os.path.isfile(os.path.join(bundle, "rootfs/usr/bin/bundlegen-demo"))
    assert "app-demo:x:30000:30000:" in open(os.path.join(rootfs, "etc/passwd")).read()
    assert "app-demo:x:30000:" in open(os.path.join(rootfs, "etc/group")).read()
    unitdir = variable(env, "systemd_system_unitdir")
    unit = open(os.path.join(rootfs + unitdir, "bundlegen-demo.service")).read()
    assert "ExecStart=/usr/bin/crun run --bundle /var/lib/bundlegen/demo demo" in unit
    assert "Restart=always" in unit
    wants = os.path.join(rootfs, "etc/systemd/system/multi-user.target.wants/bundlegen-demo.service")
    assert os.readlink(wants) == os.path.join(unitdir, "bundlegen-demo.service")


def test_bsp_side_deploys_the_platform(host_built):
    result = host_built
    assert result.returncode == 0, result.stdout[-10000:]
    deploy = variable(result.stdout, "DEPLOY_DIR_IMAGE")
    platform = json.load(open(os.path.join(deploy, "%s.json" % MACHINE)))
    libs = json.load(open(os.path.join(deploy, "%s_libs.json" % MACHINE)))
    assert platform.get("platformName", MACHINE) == MACHINE
    assert "libc.so.6" in json.dumps(libs)
    link = variable(result.stdout, "IMAGE_LINK_NAME")
    assert os.path.islink(os.path.join(deploy, "%s-bundle-demo.report.json" % link))


def test_a_tag_with_colon_is_linked_with_underscore_and_found(real, standins, host_built):
    """image-oci writes the tag '1.0:beta' into the index and links the layout
    as ...-1.0_beta-oci; the class finds that link and bundles that tag.
    (Runs after the host image, which reads the 'latest' container.)"""
    result = build_image(real, CONTAINER, reallayers.CACHE / real.release / "dl-crates",
                         extra_kas=["tests/yocto/kas/tag-with-colon.yml"])
    assert result.returncode == 0, result.stdout[-10000:]
    deploy = variable(result.stdout, "DEPLOY_DIR_IMAGE")
    layout = os.path.join(deploy, "%s-1.0_beta-oci" % CONTAINER)
    index = json.load(open(os.path.join(layout, "index.json")))
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == ["1.0:beta"]
    link = variable(result.stdout, "IMAGE_LINK_NAME")
    report = json.load(open(os.path.join(deploy, "%s-bundle-%s.report.json" % (link, MACHINE))))
    assert report["image"]["manifest"] == index["manifests"][0]["digest"]


def test_an_empty_tag_is_refused_at_parse_time(real, standins):
    result = build_image(real, CONTAINER, reallayers.CACHE / real.release / "dl-crates",
                         extra_kas=["tests/yocto/kas/empty-tag.yml"], task="bundlegen_bundles")
    assert result.returncode != 0
    assert "OCI_IMAGE_TAG: it is empty: image-oci then runs `umoci new --image <layout>:`" in result.stdout


def test_update_crates_writes_exactly_what_gen_crates_inc_writes(real):
    """The recipe's do_update_crates (run by hand or by `devtool upgrade`)
    rewrites the include from Cargo.lock alone, as scripts/gen-crates-inc
    does: fuzz/Cargo.lock's crates stay out. The test empties the include
    of the layer copy first, so the task must write it all."""
    inc = real.layer / "recipes-tools/bundlegen/bundlegen-crates.inc"
    committed = (reallayers.REPO / "recipes-tools/bundlegen/bundlegen-crates.inc").read_text()
    assert (reallayers.REPO / "fuzz/Cargo.lock").is_file()
    inc.write_text("# emptied by the test\n")
    real.runner.chown(inc)
    recipe = "%s/%s" % (real.layer, RECIPE)
    result = run(real, "bitbake -b %s -c clean && bitbake -b %s -c update_crates" % (recipe, recipe),
                 reallayers.CACHE / real.release / "dl-crates", check=False)
    written = inc.read_text()
    inc.write_text(committed)
    assert result.returncode == 0, result.stdout[-8000:]
    assert written == committed

# SPDX-License-Identifier: Apache-2.0
"""Fixtures for the Yocto tests: the bundlegen binary, device and app root
filesystems made from this machine's own x86-64 binaries, and builds."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import harness  # noqa: E402
import reallayers  # noqa: E402

# Real x86-64 files of this machine: a dynamically linked program and the
# libraries it needs, so bundlegen scans real ELF files.
PROGRAM = "/bin/dash"
LIBS = ["/lib/x86_64-linux-gnu/libc.so.6", "/lib64/ld-linux-x86-64.so.2"]


@pytest.fixture(scope="session")
def tool():
    """The bundlegen binary of this checkout (BUNDLEGEN_BIN, or cargo build)."""
    if os.environ.get("BUNDLEGEN_BIN"):
        return os.environ["BUNDLEGEN_BIN"]
    out = subprocess.run(
        ["cargo", "build", "--bin", "bundlegen", "--message-format=json-render-diagnostics"],
        cwd=harness.REPO, check=True, stdout=subprocess.PIPE, text=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable"):
            return msg["executable"]
    raise RuntimeError("cargo build produced no bundlegen executable")


@pytest.fixture(scope="session")
def generate(tool):
    """The bundlegen binary, which must have the `generate` command.

    Tests that make bundles fail (never skip) when it does not."""
    probe = subprocess.run([tool, "generate", "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if probe.returncode != 0:
        pytest.fail("`bundlegen generate` is missing in %s:\n%s" % (tool, probe.stdout))
    return tool


def _copy(src, root, dest=None):
    dest = root / (dest or src).lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(os.path.realpath(src), dest)


def _usr_merged(root):
    (root / "usr/lib/x86_64-linux-gnu").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/lib64").mkdir(parents=True)
    for link, target in (("lib", "usr/lib"), ("bin", "usr/bin"), ("lib64", "usr/lib64")):
        (root / link).symlink_to(target)


@pytest.fixture(scope="session")
def device_rootfs(tmp_path_factory):
    """A device rootfs: libc, the loader, a shell, passwd/group, and a
    stand-in crun (its presence is all the tests need)."""
    root = tmp_path_factory.mktemp("device") / "rootfs"
    root.mkdir()
    _usr_merged(root)
    for lib in LIBS:
        _copy(lib, root, "/usr" + lib if lib.startswith("/lib/") else "/usr" + lib)
    _copy(PROGRAM, root, "/usr/bin/sh")
    crun = root / "usr/bin/crun"
    crun.write_text("#!/bin/sh\nexit 0\n")
    crun.chmod(0o755)
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    (root / "etc/ld.so.conf").write_text("/usr/lib/x86_64-linux-gnu\n")
    return root


@pytest.fixture(scope="session")
def app_rootfs(tmp_path_factory):
    """An app's rootfs: a program, its libraries and /appmetadata.json."""
    root = tmp_path_factory.mktemp("app") / "rootfs"
    root.mkdir()
    _usr_merged(root)
    for lib in LIBS:
        _copy(lib, root, "/usr" + lib)
    _copy(PROGRAM, root, "/usr/bin/hello")
    (root / "appmetadata.json").write_text(json.dumps({
        "id": "hello", "type": "application/vnd.rdk-app.dac.native", "graphics": False,
        "network": {"type": "none"}, "storage": {}, "resources": {"ram": "64M"},
    }, indent=2))
    return root


@pytest.fixture
def build(tmp_path, tool, device_rootfs, app_rootfs):
    """Returns make(local_conf) -> a parsed harness.Build in a fresh TOPDIR."""
    def make(local_conf="", **kwargs):
        conf = (
            'MACHINE = "qemux86-64"\n'
            'HARNESS_TOOL = "%s"\n'
            'HARNESS_ROOTFS_SOURCE:pn-harness-app-container = "%s"\n'
            'OCI_IMAGE_CMD:pn-harness-app-container = "/usr/bin/hello"\n'
            'HARNESS_ROOTFS_SOURCE:pn-harness-device-image = "%s"\n'
            'HARNESS_ROOTFS_SOURCE:pn-harness-plain-container = "%s"\n'
            % (tool, app_rootfs, device_rootfs, app_rootfs)) + local_conf
        topdir = kwargs.pop("topdir", tmp_path / "build")
        return harness.Build(topdir, conf, **kwargs).parse()
    return make


@pytest.fixture(scope="session")
def platform_dir(tmp_path_factory, tool, device_rootfs):
    """A search path with a platform `testdev` made by `platform init` from
    the device rootfs."""
    out = tmp_path_factory.mktemp("platforms") / "vendor"
    subprocess.run([tool, "platform", "init", "--rootfs", str(device_rootfs), "--name", "testdev", "-o", str(out)],
                   check=True)
    return out.parent


# The real layers (tests/yocto/reallayers.py) ------------------------------

@pytest.fixture(scope="session")
def real():
    """The wrynose layers from the kas files, set up once per session; fails
    (never skips) when they cannot be had."""
    try:
        layers = reallayers.RealLayers("wrynose").setup()
    except reallayers.SetupError as e:
        pytest.fail(str(e), pytrace=False)
    yield layers
    layers.unlock()


class _Parses(dict):
    """`bitbake -p` per machine, in that machine's build directory, run the
    first time a test asks for the machine."""

    def __init__(self, real):
        super().__init__()
        self.real = real

    def __missing__(self, machine):
        self[machine] = self.real.bitbake(machine, "bitbake -p", check=False)
        return self[machine]


@pytest.fixture(scope="session")
def parsed(real):
    return _Parses(real)

# SPDX-License-Identifier: Apache-2.0
"""bundlegen.bbclass: parse-time checks, the container, host and BSP sides run
as bitbake tasks, and what goes into the task signatures."""

import json
import os
import subprocess
import tarfile

import pytest

import harness

APP = "harness-app-container"
DEVICE = "harness-device-image"


def deploy(b, pn):
    return b.d(pn).getVar("DEPLOY_DIR_IMAGE")


# Parse-time errors: each names the variable and the fix -----------------

def test_oci_missing_from_image_fstypes(build):
    with pytest.raises(harness.BitbakeError) as e:
        build('BUNDLEGEN_PLATFORMS:pn-harness-plain-container = "qemux86-64"\n')
    msg = str(e.value)
    assert "BUNDLEGEN_PLATFORMS" in msg and "'oci' is not in IMAGE_FSTYPES" in msg
    assert 'fix: set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1"' in msg


@pytest.mark.parametrize("fstypes", ["oci", "oci tar"])
def test_oci_without_container_names_the_fix(build, fstypes):
    """image-oci's oci type needs "container" listed too: the class says so
    before image.bbclass stops with its own, fix-less message."""
    with pytest.raises(harness.BitbakeError) as e:
        build('IMAGE_FSTYPES:pn-%s = "%s"\nBUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % (APP, fstypes, APP))
    msg = str(e.value)
    assert "IMAGE_FSTYPES: 'oci' needs 'container' in IMAGE_FSTYPES too (%s)" % fstypes in msg
    assert 'fix: set IMAGE_FSTYPES = "container oci" and IMAGE_CONTAINER_NO_DUMMY = "1"' in msg
    assert "No IMAGE_CMD defined" not in msg


def test_container_without_no_dummy_names_the_fix(build):
    with pytest.raises(harness.BitbakeError) as e:
        build('IMAGE_CONTAINER_NO_DUMMY:pn-%s = ""\nBUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % (APP, APP))
    msg = str(e.value)
    assert "IMAGE_CONTAINER_NO_DUMMY: a 'container' image wants" in msg
    assert 'fix: set IMAGE_CONTAINER_NO_DUMMY = "1" in %s' % APP in msg


def test_empty_oci_image_tag_names_the_fix(build):
    """image-oci cannot write an image with an empty tag (umoci refuses
    `<layout>:`); the class says so at parse time."""
    with pytest.raises(harness.BitbakeError) as e:
        build('OCI_IMAGE_TAG:pn-%s = ""\nBUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % (APP, APP))
    msg = str(e.value)
    assert "OCI_IMAGE_TAG: it is empty: image-oci then runs `umoci new --image <layout>:`, which umoci refuses" in msg
    assert "fix: leave OCI_IMAGE_TAG unset" in msg


def test_stand_in_refuses_oci_alone_as_oe_core_does(build):
    """The stand-in image classes fail on "oci" without "container", as the
    real ones do (the issue no test saw before), when the class is unused."""
    with pytest.raises(harness.BitbakeError, match="No IMAGE_CMD defined for IMAGE_FSTYPES entry 'container'"):
        build('IMAGE_FSTYPES:pn-%s = "oci"\n' % APP)


def test_unknown_platform(build, platform_dir):
    with pytest.raises(harness.BitbakeError) as e:
        build('BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64 nosuchboard"\n'
              'BUNDLEGEN_PLATFORM_SEARCHPATH = "%s"\n' % (APP, platform_dir))
    msg = str(e.value)
    assert "BUNDLEGEN_PLATFORMS: unknown platform 'nosuchboard'" in msg
    assert "fix: add the directory holding nosuchboard.json to BUNDLEGEN_PLATFORM_SEARCHPATH" in msg


def test_unknown_container_option(build):
    with pytest.raises(harness.BitbakeError) as e:
        build('BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun:autostrat"\n' % (DEVICE, APP))
    msg = str(e.value)
    assert "BUNDLEGEN_CONTAINERS: entry '%s:crun:autostrat': unknown option 'autostrat'" % APP in msg
    assert "fix: use only these options: dobby | crun | runc, autostart" in msg


def test_restart_policy_needs_crun_or_runc(build):
    with pytest.raises(harness.BitbakeError, match="restart policy 'on-failure' needs crun or runc"):
        build('BUNDLEGEN_CONTAINERS:pn-%s = "%s:dobby:on-failure"\n' % (DEVICE, APP))


def test_bad_choice_values(build):
    with pytest.raises(harness.BitbakeError, match=r"BUNDLEGEN_COMPRESSION: 'lz4' is not one of: gzip zstd none"):
        build('BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\nBUNDLEGEN_COMPRESSION = "lz4"\n' % APP)


def test_builtin_platform_list_matches_the_tool(build, tool):
    listed = json.loads(subprocess.run([tool, "platform", "list", "--json"], check=True,
                                       stdout=subprocess.PIPE, text=True).stdout)
    names = sorted(p["name"] for p in listed if p["source"] == "builtin")
    assert names == sorted(build().d(APP).getVar("BUNDLEGEN_BUILTIN_PLATFORMS").split())


# Task graph ---------------------------------------------------------------

def test_container_side_task_sits_between_oci_and_complete(build):
    b = build('BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % APP)
    d = b.d(APP)
    assert "do_image_oci" in d.getVarFlag("do_bundlegen_bundles", "deps", False)
    assert "do_bundlegen_bundles" in d.getVarFlag("do_image_complete", "deps", False)
    assert ("bundlegen-native", "do_populate_sysroot") in b.task_deps(APP, "do_bundlegen_bundles")
    assert "bundlegen-native" in d.getVar("DEPENDS").split()


def test_unused_class_adds_no_task(build):
    b = build()
    assert "do_bundlegen_bundles" not in b.tasks(APP)
    assert "bundlegen_install_containers" not in (b.d(DEVICE).getVar("ROOTFS_POSTPROCESS_COMMAND") or "")


def test_host_side_dependencies(build):
    b = build('BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun:always"\n' % (DEVICE, APP))
    deps = b.task_deps(DEVICE, "do_rootfs")
    assert (APP, "do_image_complete") in deps and ("bundlegen-native", "do_populate_sysroot") in deps
    assert "crun" in b.d(DEVICE).getVar("IMAGE_INSTALL").split()


# BSP side (needs only `bundlegen platform init`) -------------------------

def test_bsp_side_deploys_the_machine_platform(build, tool):
    b = build('BUNDLEGEN_DEPLOY_PLATFORM:pn-%s = "1"\n' % DEVICE)
    b.run(DEVICE, "do_image_complete")
    out = deploy(b, DEVICE)
    template = os.path.join(out, "qemux86-64.json")
    libs = os.path.join(out, "qemux86-64_libs.json")
    assert json.load(open(template))["platformName"] == "qemux86-64"
    names = {lib["name"] for lib in json.load(open(libs))["libs"]}
    assert any(n.endswith("/libc.so.6") for n in names), names
    subprocess.run([tool, "platform", "validate", template, libs], check=True)


# Container side ----------------------------------------------------------

def test_container_side_writes_bundles_and_reports(build, generate, platform_dir):
    b = build('BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64 testdev"\n'
              'BUNDLEGEN_PLATFORM_SEARCHPATH = "%s"\n'
              'BUNDLEGEN_RUNTIME = "crun"\n' % (APP, platform_dir))
    b.run(APP, "do_image_complete")
    out = deploy(b, APP)
    for platform in ("qemux86-64", "testdev"):
        link = os.path.join(out, "%s-qemux86-64-bundle-%s.tar.gz" % (APP, platform))
        assert os.path.islink(link), sorted(os.listdir(out))
        assert os.readlink(link) == "%s-qemux86-64-20240101000000-bundle-%s.tar.gz" % (APP, platform)
        json.load(open(os.path.join(out, "%s-qemux86-64-bundle-%s.report.json" % (APP, platform))))
        with tarfile.open(link) as tar:
            members = {m.name.lstrip("./"): m for m in tar.getmembers()}
            assert "config.json" in members
            assert any(n.endswith("usr/bin/hello") for n in members)
            # SOURCE_DATE_EPOCH reached bundlegen: mtimes are clamped to
            # it (older files keep theirs) and files bundlegen wrote during
            # the build carry it.
            assert max(m.mtime for m in members.values()) == 1700000000
            assert members["config.json"].mtime == 1700000000
            config = json.load(tar.extractfile(members["config.json"]))
            assert config["ociVersion"] == "1.0.2"
            assert config["process"]["args"][0] == "/usr/bin/hello"
    # Issue 15: one bundlegen call for both platforms (the image is
    # flattened once); only that call writes the multi-platform summary.
    summary = json.load(open(os.path.join(b.d(APP).getVar("BUNDLEGEN_WORKDIR"), "summary.json")))
    assert [(p["platform"], p["status"]) for p in summary["platforms"]] == \
        [("qemux86-64", "generated"), ("testdev", "generated")], summary


def test_incompatible_bundle_fails_clearly(build, generate):
    b = build('BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n'
              'OCI_IMAGE_ARCH:pn-%s = "arm64"\n' % (APP, APP))
    with pytest.raises(harness.BitbakeError) as e:
        b.run(APP, "do_image_complete")
    msg = str(e.value)
    assert "BUNDLEGEN_PLATFORMS: %s on platform qemux86-64 is not compatible with the device" % APP in msg
    assert "fix:" in msg


# Host side ---------------------------------------------------------------

def test_host_side_installs_bundles_accounts_and_units(build, generate):
    # The container is multi-layer, as meta-bundlegen's demo.
    b = build('BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun:always %s:appid=second:dobby"\n'
              'OCI_LAYER_MODE:pn-%s = "multi"\n'
              'OCI_LAYERS:pn-%s = "base:directories:lib+lib64+bin+usr/lib+usr/lib64 '
              'app:files:usr/bin/hello+appmetadata.json"\n' % (DEVICE, APP, APP, APP, APP))
    b.run(DEVICE, "do_image_complete")
    assert b.done[(APP, "do_image_complete")], "the container image was built first"
    index = json.load(open(os.path.join(deploy(b, APP), "%s-latest-oci/index.json" % APP)))
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    layout = os.path.join(deploy(b, APP), "%s-latest-oci" % APP)
    manifest = json.load(open(os.path.join(layout, "blobs/sha256", manifest_digest)))
    assert len(manifest["layers"]) == 2
    d = b.d(DEVICE)
    rootfs = d.getVar("IMAGE_ROOTFS")
    base = rootfs + "/var/lib/bundlegen"

    config = json.load(open(base + "/%s/config.json" % APP))
    assert config["process"]["user"]["uid"] == 30000 and config["process"]["user"]["gid"] == 30000
    assert os.path.isfile(base + "/%s/rootfs/usr/bin/hello" % APP)
    second = json.load(open(base + "/second/config.json"))
    assert second["process"]["user"]["uid"] == 30001
    assert second["ociVersion"] == "1.0.2-dobby"

    unit = open(rootfs + "/lib/systemd/system/bundlegen-%s.service" % APP).read()
    assert "ExecStart=/usr/bin/crun run --bundle /var/lib/bundlegen/%s %s" % (APP, APP) in unit
    assert "Restart=always" in unit
    wants = rootfs + "/etc/systemd/system/multi-user.target.wants/bundlegen-%s.service" % APP
    assert os.readlink(wants) == "/lib/systemd/system/bundlegen-%s.service" % APP
    assert not os.path.exists(rootfs + "/lib/systemd/system/bundlegen-second.service")
    # The accounts come from oe-core's extrausers (EXTRA_USERS_PARAMS, run by
    # its set_user_group), not from the class editing passwd itself.
    assert "app-%s:x:30000:30000:bundlegen app %s:/nonexistent:/sbin/nologin" % (APP, APP) \
        in open(rootfs + "/etc/passwd").read().splitlines()
    assert "app-second:x:30001:" in open(rootfs + "/etc/group").read().splitlines()
    assert "groupadd -g 30000 app-%s;" % APP in d.getVar("EXTRA_USERS_PARAMS")
    commands = d.getVar("ROOTFS_POSTPROCESS_COMMAND").split()
    assert commands.index("bundlegen_check_accounts") < commands.index("set_user_group") \
        < commands.index("bundlegen_install_containers")

    # The device platform was generated from the rootfs itself.
    platform = os.path.join(d.getVar("WORKDIR"), "bundlegen/host/platform/qemux86-64_libs.json")
    assert any(lib["name"].endswith("/libc.so.6") for lib in json.load(open(platform))["libs"])
    assert os.path.isfile(os.path.join(deploy(b, DEVICE), "%s-qemux86-64-bundle-%s.report.json" % (DEVICE, APP)))


def test_host_side_refuses_an_id_another_account_holds(build, generate):
    b = build('BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun:uid=0"\n' % (DEVICE, APP))
    with pytest.raises(harness.BitbakeError) as e:
        b.run(DEVICE, "do_image_complete")
    msg = str(e.value)
    assert "BUNDLEGEN_CONTAINERS: entry '%s:crun:uid=0': id 0 is already root's in" % APP in msg
    assert "fix: give the entry uid=N with a free id, or change BUNDLEGEN_UID_BASE" in msg


# Signatures --------------------------------------------------------------

SIGNED_TASKS = {
    "do_bundlegen_bundles": (APP, 'BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % APP),
    "do_rootfs": (DEVICE, 'BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun"\n' % (DEVICE, APP)),
    "do_bundlegen_platform": (DEVICE, 'BUNDLEGEN_DEPLOY_PLATFORM:pn-%s = "1"\n' % DEVICE),
}


# Exactly the BUNDLEGEN_* values each task reads, and no other (issue 13:
# one list appended to every task made do_bundlegen_platform run again
# when BUNDLEGEN_CONTAINERS changed). Each task's [vardeps] names them; the
# functions in lib/bundlegen that read them literally are followed by
# bitbake itself (addpylib, BBIMPORTS).
GENERATE_READS = {"BUNDLEGEN_LIBMATCHING", "BUNDLEGEN_CREATE_MOUNTPOINTS", "BUNDLEGEN_STRICT", "BUNDLEGEN_OPERATOR",
                  "BUNDLEGEN_PLATFORM_SEARCHPATH", "BUNDLEGEN_EXTRA_ARGS", "BUNDLEGEN_WORKDIR"}
TASK_READS = {
    "do_bundlegen_bundles": GENERATE_READS | {"BUNDLEGEN_PLATFORMS", "BUNDLEGEN_RUNTIME", "BUNDLEGEN_COMPRESSION",
                                              "BUNDLEGEN_APPMETADATA", "BUNDLEGEN_APPID"},
    "do_rootfs": GENERATE_READS | {"BUNDLEGEN_CONTAINERS", "BUNDLEGEN_RUNTIME", "BUNDLEGEN_RUNTIMES",
                                   "BUNDLEGEN_POLICIES", "BUNDLEGEN_UID_BASE", "BUNDLEGEN_PLATFORM",
                                   "BUNDLEGEN_PLATFORM_NAME", "BUNDLEGEN_PLATFORM_TEMPLATE", "BUNDLEGEN_INSTALL_DIR"},
    "do_bundlegen_platform": {"BUNDLEGEN_PLATFORM_NAME", "BUNDLEGEN_PLATFORM_TEMPLATE",
                              "BUNDLEGEN_PLATFORM_SEARCHPATH", "BUNDLEGEN_WORKDIR"},
}
# Read at parse time only: they decide whether a task exists, or what goes
# into IMAGE_INSTALL (which is in do_rootfs's signature by its value).
PARSE_TIME_ONLY = {"BUNDLEGEN_DEPLOY_PLATFORM", "BUNDLEGEN_RUNTIME_PACKAGES"}


def class_variables():
    """The BUNDLEGEN_* variables the classes let users set (?= or ??=)."""
    return {line.split()[0] for path in sorted((harness.REPO / "classes").glob("bundlegen*.bbclass"))
            for line in open(path) if line.startswith("BUNDLEGEN_") and ("?=" in line or "??=" in line)}


@pytest.mark.parametrize("task", sorted(SIGNED_TASKS))
def test_each_task_signature_holds_exactly_the_values_it_reads(build, task):
    pn, conf = SIGNED_TASKS[task]
    b = build(conf)
    assert {v for v in b.vardeps(pn, task) if v.startswith("BUNDLEGEN_")} == TASK_READS[task]


def test_every_user_variable_is_in_some_signature():
    variables = class_variables()
    assert len(variables) >= 19
    assert variables - PARSE_TIME_ONLY - set().union(*TASK_READS.values()) == set()


def test_issue13_containers_do_not_change_the_platform_task(tmp_path, build):
    """BUNDLEGEN_CONTAINERS is the host side's: the BSP side's task keeps its
    hash when it changes, and the host side's do_rootfs does not."""
    conf = 'BUNDLEGEN_DEPLOY_PLATFORM:pn-%s = "1"\n' % DEVICE
    a = build(conf, topdir=tmp_path / "a")
    b = build(conf + 'BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun"\n' % (DEVICE, APP), topdir=tmp_path / "b")
    c = build(conf + 'BUNDLEGEN_CONTAINERS:pn-%s = "%s:crun:always"\n' % (DEVICE, APP), topdir=tmp_path / "c")
    assert "BUNDLEGEN_CONTAINERS" not in b.vardeps(DEVICE, "do_bundlegen_platform")
    assert a.basehash(DEVICE, "do_bundlegen_platform") == b.basehash(DEVICE, "do_bundlegen_platform") \
        == c.basehash(DEVICE, "do_bundlegen_platform")
    assert b.basehash(DEVICE, "do_rootfs") != c.basehash(DEVICE, "do_rootfs")


def test_issue13_a_role_variable_changes_only_its_own_task(tmp_path, build):
    conf = 'BUNDLEGEN_PLATFORMS:pn-%s = "qemux86-64"\n' % APP
    a = build(conf, topdir=tmp_path / "a")
    b = build(conf + 'BUNDLEGEN_PLATFORM_NAME = "mybox"\nBUNDLEGEN_INSTALL_DIR = "/opt/apps"\n',
              topdir=tmp_path / "b")
    assert a.basehash(APP, "do_bundlegen_bundles") == b.basehash(APP, "do_bundlegen_bundles")


def test_issue13_one_way_to_run_bundlegen():
    """Every bundlegen call of every task goes through bundlegen.tool.run
    (SOURCE_DATE_EPOCH, PATH, no RDK_PLATFORM*): no other file of the class
    or its library starts a process."""
    files = sorted((harness.REPO / "classes").glob("bundlegen*.bbclass")) + \
        sorted((harness.REPO / "lib" / "bundlegen").glob("*.py"))
    assert len(files) >= 10
    starts = [str(f.relative_to(harness.REPO)) for f in files
              if "subprocess" in f.read_text() or "os.system" in f.read_text()]
    assert starts == ["lib/bundlegen/tool.py"]


@pytest.mark.parametrize("var,value", [("BUNDLEGEN_COMPRESSION", "zstd"), ("BUNDLEGEN_RUNTIME", "crun"),
                                       ("BUNDLEGEN_LIBMATCHING", "host"), ("BUNDLEGEN_STRICT", "0")])
def test_a_changed_value_changes_the_task_hash(tmp_path, build, var, value):
    conf = SIGNED_TASKS["do_bundlegen_bundles"][1]
    a = build(conf, topdir=tmp_path / "a")
    b = build(conf + '%s = "%s"\n' % (var, value), topdir=tmp_path / "b")
    assert a.basehash(APP, "do_bundlegen_bundles") != b.basehash(APP, "do_bundlegen_bundles")


def test_platform_files_are_in_the_task_hash_and_paths_are_not(tmp_path, build, device_rootfs, tool):
    """Two builders with the layer and templates in different places share
    the hash; a changed template changes it."""
    hashes = []
    for name in ("one", "two"):
        search = tmp_path / name / "platforms"
        subprocess.run([tool, "platform", "init", "--rootfs", str(device_rootfs), "--name", "testdev",
                        "-o", str(search)], check=True)
        b = build('BUNDLEGEN_PLATFORMS:pn-%s = "testdev"\nBUNDLEGEN_PLATFORM_SEARCHPATH = "%s"\n'
                  % (APP, search), topdir=tmp_path / name / "build")
        hashes.append(b.taskhash(APP, "do_bundlegen_bundles"))
    assert hashes[0] == hashes[1]
    template = search / "testdev.json"
    data = json.load(open(template))
    data["hostname"] = "changed"
    template.write_text(json.dumps(data))
    assert b.taskhash(APP, "do_bundlegen_bundles") != hashes[1]

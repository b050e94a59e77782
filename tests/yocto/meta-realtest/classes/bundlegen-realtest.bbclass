# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS (tests/yocto/test_real_tasks.py): lets `bitbake -b IMAGE -c
# TASK` run bundlegen.bbclass's tasks, image-oci's do_image_oci and oe-core's
# do_image_complete for real on the real layers, by standing in for what
# cannot run here. `bitbake -b` drops other recipes' dependencies but still
# runs the image's own earlier tasks; those are the stand-ins:
#
# - every task of an image other than do_image_oci, do_bundlegen_bundles,
#   do_bundlegen_platform, do_image_complete and do_clean does nothing
#   (noexec): they install packages (do_rootfs: no package feeds, and the
#   packages need the cross toolchain, whose sources are not reachable),
#   post-process images, or stage native tools that are built from sources;
# - do_realtest_rootfs (after do_rootfs, before do_image) fills
#   ${IMAGE_ROOTFS} from ${REALTEST_DIR}/rootfs/${PN}, a small tree the test
#   makes from this machine's x86-64 files, in place of package installation;
#   it then runs the class's real ROOTFS_POSTPROCESS_COMMAND entries
#   (bundlegen_check_accounts, bundlegen_install_containers) and oe-core's
#   extrausers entry (set_user_group) in their order, as do_rootfs would at
#   that point;
# - set_user_group runs oe-core's useradd_base functions, which call
#   shadow-native's groupadd and useradd through pseudo
#   (${STAGING_BINDIR_NATIVE}/pseudo): that link points at
#   meta-harness/scripts/shadow-standin, which adds the entries to the
#   rootfs's group and passwd (pseudo-native and shadow-native are built
#   from source, and the host's own useradd needs root to write there);
# - the native tools tasks run from ${STAGING_BINDIR_NATIVE} are this
#   machine's: bundlegen (the test's cargo build, for bundlegen-native:
#   building it needs oe-core's Rust from source) and Debian's umoci, rsync
#   and jq (for umoci-native, rsync-native, jq-native);
# - do_image_oci's multi-layer prefunc oci_multilayer_install_packages
#   (package installation per layer) is replaced by copying
#   ${REALTEST_DIR}/oci-layers/${PN}/layer-<n>-<name> to where image-oci's
#   shell code reads each layer from;
# - tasks run without pseudo (fakeroot), which is built from source;
# - bundlegen's do_update_crates runs nativepython3 (python3-native, built
#   from source): this machine's python3 stands in, through a link in
#   ${STAGING_BINDIR_NATIVE}.

REALTEST_DIR = "${TOPDIR}/stand-ins"
REALTEST_REAL_TASKS = "do_image_oci do_bundlegen_bundles do_bundlegen_platform do_image_complete do_realtest_rootfs do_clean"
REALTEST_HOST_TOOLS = "umoci rsync jq"

python realtest_standins() {
    d = e.data
    if not bb.data.inherits_class("image", d):
        return
    keep = d.getVar("REALTEST_REAL_TASKS").split()
    for task in e.tasklist:
        if task not in keep:
            d.setVarFlag(task, "noexec", "1")
        d.delVarFlag(task, "fakeroot")
    prefuncs = (d.getVarFlag("do_image_oci", "prefuncs") or "").split()
    prefuncs = ["realtest_oci_layers" if f == "oci_multilayer_install_packages" else f for f in prefuncs]
    d.setVarFlag("do_image_oci", "prefuncs", " ".join(prefuncs))
}
addhandler realtest_standins
realtest_standins[eventmask] = "bb.event.RecipeTaskPreProcess"

python do_realtest_rootfs() {
    import shutil
    rootfs = d.getVar("IMAGE_ROOTFS")
    source = os.path.join(d.getVar("REALTEST_DIR"), "rootfs", d.getVar("PN"))
    shutil.copytree(source, rootfs, symlinks=True, dirs_exist_ok=True)
    bindir = d.getVar("STAGING_BINDIR_NATIVE")
    bb.utils.mkdirhier(bindir)
    tools = [(os.path.join(d.getVar("REALTEST_DIR"), "bin", "bundlegen"), "bundlegen"),
             (os.path.join(d.getVar("REALTEST_DIR"), "bin", "shadow-standin"), "pseudo")]
    tools += [(shutil.which(t, path="/usr/bin:/bin"), t) for t in d.getVar("REALTEST_HOST_TOOLS").split()]
    for src, name in tools:
        if not src or not os.path.exists(src):
            bb.fatal("stand-in tool %s is missing" % name)
        dst = os.path.join(bindir, name)
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(src, dst)
    commands = (d.getVar("ROOTFS_POSTPROCESS_COMMAND") or "").replace(";", " ").split()
    ours = [c for c in commands if c.startswith("bundlegen_") or c == "set_user_group"]
    with open(os.path.join(d.getVar("WORKDIR"), "realtest-postprocess"), "w") as f:
        f.write(" ".join(ours) + "\n")
    for cmd in ours:
        bb.build.exec_func(cmd, d)
}
do_realtest_rootfs[doc] = "TEST HARNESS stand-in for do_rootfs's package installation"
# as do_rootfs[cleandirs] and do_image[cleandirs] (IMGMANIFESTDIR)
do_realtest_rootfs[cleandirs] = "${IMAGE_ROOTFS} ${IMGDEPLOYDIR} ${IMGMANIFESTDIR}"

python () {
    if bb.data.inherits_class("image", d):
        bb.build.addtask("do_realtest_rootfs", "do_image do_image_qa", "do_rootfs", d)
}

python realtest_oci_layers() {
    import shutil
    target = os.path.join(d.getVar("WORKDIR"), "oci-layer-rootfs")
    source = os.path.join(d.getVar("REALTEST_DIR"), "oci-layers", d.getVar("PN"))
    bb.utils.remove(target, recurse=True)
    shutil.copytree(source, target, symlinks=True)
}

python realtest_nativepython3() {
    bindir = d.getVar("STAGING_BINDIR_NATIVE")
    bb.utils.mkdirhier(bindir)
    link = os.path.join(bindir, "nativepython3")
    if os.path.lexists(link):
        os.remove(link)
    os.symlink("/usr/bin/python3", link)
}
do_update_crates[prefuncs] += "realtest_nativepython3"

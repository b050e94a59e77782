# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for oe-core's image.bbclass: the task chain
# do_rootfs -> do_image -> do_image_<fstype> -> do_image_complete with
# oe-core's variable names. In place of installing packages, do_rootfs copies
# the directory HARNESS_ROOTFS_SOURCE (made by the test) and records
# IMAGE_INSTALL in ${WORKDIR}/harness-image-install; then it runs
# ROOTFS_POSTPROCESS_COMMAND as oe-core does. do_image_complete copies
# ${IMGDEPLOYDIR} to ${DEPLOY_DIR_IMAGE}, as its sstate does. As oe-core's,
# it inherits image-container only when "container" is in IMAGE_FSTYPES
# itself, and every type IMAGE_TYPEDEP adds needs its command unless masked:
# so "oci" alone fails as it does with the real classes.

IMAGE_BASENAME ?= "${PN}"
IMAGE_MACHINE_SUFFIX ?= "-${MACHINE}"
IMAGE_VERSION_SUFFIX ?= "-${DATETIME}"
IMAGE_NAME = "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_VERSION_SUFFIX}"
IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}"
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
IMAGE_FSTYPES ?= "tar"
IMAGE_TYPES_MASKED ?= ""
IMAGE_INSTALL ?= ""
IMAGE_FEATURES ?= ""
ROOTFS_POSTPROCESS_COMMAND ?= ""
HARNESS_ROOTFS_SOURCE ?= ""

python do_rootfs() {
    import shutil
    rootfs = d.getVar("IMAGE_ROOTFS")
    source = d.getVar("HARNESS_ROOTFS_SOURCE")
    if source:
        shutil.copytree(source, rootfs, symlinks=True, dirs_exist_ok=True)
    with open(os.path.join(d.getVar("WORKDIR"), "harness-image-install"), "w") as f:
        f.write(" ".join((d.getVar("IMAGE_INSTALL") or "").split()) + "\n")
    for cmd in (d.getVar("ROOTFS_POSTPROCESS_COMMAND") or "").replace(";", " ").split():
        bb.build.exec_func(cmd, d)
}
do_rootfs[cleandirs] = "${IMAGE_ROOTFS} ${IMGDEPLOYDIR}"
do_rootfs[vardeps] += "ROOTFS_POSTPROCESS_COMMAND IMAGE_INSTALL"
addtask rootfs before do_build

do_image[noexec] = "1"
addtask image after do_rootfs before do_build

python do_image_complete() {
    import shutil
    shutil.copytree(d.getVar("IMGDEPLOYDIR"), d.getVar("DEPLOY_DIR_IMAGE"), symlinks=True, dirs_exist_ok=True)
}
addtask image_complete after do_image before do_build

harness_image_cmd_tar_bz2() {
    tar --sort=name --mtime=@${SOURCE_DATE_EPOCH} -C ${IMAGE_ROOTFS} -cjf ${IMGDEPLOYDIR}/${IMAGE_NAME}.rootfs.tar.bz2 .
}

harness_image_cmd_tar() {
    tar --sort=name --mtime=@${SOURCE_DATE_EPOCH} -C ${IMAGE_ROOTFS} -cf ${IMGDEPLOYDIR}/${IMAGE_NAME}.rootfs.tar .
}

inherit_defer ${@bb.utils.contains('IMAGE_FSTYPES', 'container', 'image-container', '', d)}

python () {
    types = []
    todo = (d.getVar("IMAGE_FSTYPES") or "").split()
    while todo:
        t = todo.pop(0)
        if t not in types:
            types.append(t)
            todo += (d.getVar("IMAGE_TYPEDEP:" + t) or "").split()
    masked = (d.getVar("IMAGE_TYPES_MASKED") or "").split()
    for fstype in [t for t in types if t not in masked]:
        cmd = "harness_image_cmd_" + fstype.replace("-", "_").replace(".", "_")
        if d.getVar(cmd, False) is None:
            bb.fatal("No IMAGE_CMD defined for IMAGE_FSTYPES entry '%s' - possibly invalid type name or missing support class" % fstype)
        task = "do_image_" + fstype.replace("-", "_").replace(".", "_")
        d.setVar(task, "    %s\n" % cmd)
        d.setVarFlag(task, "func", "1")
        d.setVarFlag(task, "vardeps", cmd)
        bb.build.addtask(task, "do_image_complete", "do_image", d)
}

# SPDX-License-Identifier: Apache-2.0
#
# bundlegen_bsp.bbclass: the BSP side of bundlegen.bbclass. A device image
# with BUNDLEGEN_DEPLOY_PLATFORM = "1" gets task do_bundlegen_platform,
# after do_image and before do_image_complete, which deploys
# ${BUNDLEGEN_PLATFORM_NAME}.json and ${BUNDLEGEN_PLATFORM_NAME}_libs.json
# generated from the rootfs. Inherit bundlegen; docs/yocto.md has the
# details.
#
#     inherit core-image bundlegen
#     BUNDLEGEN_DEPLOY_PLATFORM = "1"

inherit bundlegen_common

# BSP side: "1" deploys the platform generated from the rootfs.
# Default: "0".
BUNDLEGEN_DEPLOY_PLATFORM ?= "0"

# The task exists only with BUNDLEGEN_DEPLOY_PLATFORM set.
# nooelint: oelint.task.noanonpython
python () {
    bundlegen.bsp.setup(d)
}

python do_bundlegen_platform() {
    bundlegen.bsp.deploy_platform(d)
}
do_bundlegen_platform[doc] = "Deploys BUNDLEGEN_PLATFORM_NAME.json and _libs.json generated from the image rootfs"
do_bundlegen_platform[cleandirs] = "${BUNDLEGEN_WORKDIR}/deploy-platform"
# Exactly the BUNDLEGEN_* values the task reads (tests/yocto checks the list).
do_bundlegen_platform[vardeps] += "BUNDLEGEN_PLATFORM_NAME BUNDLEGEN_PLATFORM_TEMPLATE \
                                   BUNDLEGEN_PLATFORM_SEARCHPATH BUNDLEGEN_WORKDIR"
do_bundlegen_platform[vardepsexclude] = "DATETIME DATE"

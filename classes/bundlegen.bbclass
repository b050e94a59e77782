# SPDX-License-Identifier: Apache-2.0
#
# bundlegen.bbclass: turn OCI images into device-specific OCI runtime
# bundles (Dobby, crun, runc) while images are built, with bundlegen-native.
#
# One class, three uses in image recipes (docs/yocto.md has the details),
# each in a class of its own that this one inherits; each does nothing
# until its variable is set:
#
# Container side (bundlegen_container.bbclass): an OCI image recipe writes
# one bundle archive per platform (plus its JSON report) into
# ${IMGDEPLOYDIR}, from task do_bundlegen_bundles (after do_image_oci,
# before do_image_complete):
#
#     inherit image image-oci bundlegen
#     IMAGE_FSTYPES = "container oci"
#     IMAGE_CONTAINER_NO_DUMMY = "1"
#     BUNDLEGEN_PLATFORMS = "qemuarm64 rpi4"
#
# (image-oci's "oci" type builds on "container", which oe-core adds only
# when "container" is in IMAGE_FSTYPES itself; a container image needs
# IMAGE_CONTAINER_NO_DUMMY = "1" or linux-dummy as its kernel.)
#
# Host side (bundlegen_host.bbclass): a device image gets bundles of other
# container image recipes in ${IMAGE_ROOTFS}${BUNDLEGEN_INSTALL_DIR}, made
# for the device's own library inventory (generated from ${IMAGE_ROOTFS}),
# each app with its own uid/gid (an account made by oe-core's extrausers),
# and a systemd unit for every autostarted one:
#
#     inherit bundlegen
#     BUNDLEGEN_CONTAINERS = "my-app-container:crun:autostart other:dobby"
#
# BSP side (bundlegen_bsp.bbclass): a device image deploys
# ${BUNDLEGEN_PLATFORM_NAME}.json and ${BUNDLEGEN_PLATFORM_NAME}_libs.json,
# generated from its rootfs, so apps can be bundled for the device outside
# the build later:
#
#     inherit bundlegen
#     BUNDLEGEN_DEPLOY_PLATFORM = "1"
#
# The variables every role reads are in bundlegen_common.bbclass; the Python
# code is the layer's lib/bundlegen (conf/layer.conf: addpylib). bundlegen
# writes only under ${IMGDEPLOYDIR} and ${IMAGE_ROOTFS}, honours
# SOURCE_DATE_EPOCH, and each task's signature holds the BUNDLEGEN_* values
# it reads (its [vardeps]) and the platform, app metadata and operator files
# it reads (its [file-checksums]), and nothing else of the class.

inherit bundlegen_container bundlegen_host bundlegen_bsp

# SPDX-License-Identifier: Apache-2.0
SUMMARY = "bundlegen demo: a device image that runs the demo app's bundle with crun"
DESCRIPTION = "core-image-minimal plus the demo container's bundle, made at \
               build time for this image's own libraries, started at boot by \
               a systemd unit, and the device platform deployed for later use."
HOMEPAGE = "https://github.com/bundlegen/bundlegen"
BUGTRACKER = "https://github.com/bundlegen/bundlegen/issues"
SECTION = "images"
CVE_PRODUCT = "bundlegen-demo"
LICENSE = "MIT"

# What core-image-minimal has, plus an SSH server for the runtime test.
IMAGE_INSTALL = "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL}"
IMAGE_FEATURES += "ssh-server-dropbear"
IMAGE_LINGUAS = ""

# Host side: the app as uid 30000, started at boot, restarted if it stops.
BUNDLEGEN_CONTAINERS = "bundlegen-demo-container:crun:always:appid=demo"
# BSP side: ${MACHINE}.json and ${MACHINE}_libs.json in DEPLOY_DIR_IMAGE.
BUNDLEGEN_DEPLOY_PLATFORM = "1"

inherit core-image bundlegen

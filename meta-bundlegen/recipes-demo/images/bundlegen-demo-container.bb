# SPDX-License-Identifier: Apache-2.0
SUMMARY = "bundlegen demo: the app's multi-layer OCI container image"
DESCRIPTION = "Three OCI layers (base, shell, app) made by image-oci, and \
               container-side bundles for the machine's platform."
HOMEPAGE = "https://github.com/bundlegen/bundlegen"
BUGTRACKER = "https://github.com/bundlegen/bundlegen/issues"
SECTION = "images"
CVE_PRODUCT = "bundlegen-demo"
LICENSE = "MIT"

# image-oci builds on the "container" type (IMAGE_TYPEDEP:oci), which oe-core
# adds only when "container" is in IMAGE_FSTYPES itself; a container needs
# no kernel.
IMAGE_FSTYPES = "container oci"
IMAGE_CONTAINER_NO_DUMMY = "1"
IMAGE_FEATURES = ""
IMAGE_LINGUAS = ""
NO_RECOMMENDATIONS = "1"
IMAGE_INSTALL = "base-files base-passwd busybox bundlegen-demo"

OCI_LAYER_MODE = "multi"
OCI_LAYERS = "base:packages:base-files+base-passwd+glibc \
              shell:packages:busybox \
              app:packages:bundlegen-demo+bundlegen-demo-appmetadata"
OCI_IMAGE_ENTRYPOINT = "${bindir}/bundlegen-demo"
OCI_IMAGE_CMD = ""

# Container side: bundles for the machine's built-in platform, deployed
# beside the OCI layout.
BUNDLEGEN_PLATFORMS = "${MACHINE}"
BUNDLEGEN_RUNTIME = "crun"

inherit image image-oci bundlegen

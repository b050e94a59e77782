# SPDX-License-Identifier: Apache-2.0
SUMMARY = "TEST HARNESS: an image that does not use bundlegen (the layer must not change it)"
LICENSE = "MIT"

IMAGE_FSTYPES = "tar"
inherit image

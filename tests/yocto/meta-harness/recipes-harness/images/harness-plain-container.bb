# SPDX-License-Identifier: Apache-2.0
SUMMARY = "TEST HARNESS: an image without the oci type, for the class's error"
LICENSE = "MIT"

IMAGE_FSTYPES = "tar"
inherit image bundlegen

# SPDX-License-Identifier: Apache-2.0
SUMMARY = "TEST HARNESS: a device (host) image that bundles containers"
LICENSE = "MIT"

IMAGE_FSTYPES = "tar"
inherit image bundlegen

# SPDX-License-Identifier: Apache-2.0
SUMMARY = "TEST HARNESS: an app's OCI container image for bundlegen.bbclass tests"
LICENSE = "MIT"

IMAGE_FSTYPES = "oci"
inherit image image-oci bundlegen

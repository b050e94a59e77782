# SPDX-License-Identifier: Apache-2.0
SUMMARY = "TEST HARNESS: an app's OCI container image for bundlegen.bbclass tests"
LICENSE = "MIT"

IMAGE_FSTYPES = "container oci"
IMAGE_CONTAINER_NO_DUMMY = "1"
inherit image image-oci bundlegen

# SPDX-License-Identifier: Apache-2.0
#
# bundlegen_container.bbclass: the container side of bundlegen.bbclass. An
# OCI image recipe (meta-virtualization's image-oci) with BUNDLEGEN_PLATFORMS
# set gets task do_bundlegen_bundles, after do_image_oci and before
# do_image_complete, which writes one bundle archive and report per platform
# into ${IMGDEPLOYDIR}, with stable ${IMAGE_LINK_NAME} links. Inherit
# bundlegen; docs/yocto.md has the details.
#
#     inherit image image-oci bundlegen
#     IMAGE_FSTYPES = "container oci"
#     IMAGE_CONTAINER_NO_DUMMY = "1"
#     BUNDLEGEN_PLATFORMS = "qemuarm64 rpi4"

inherit bundlegen_common

# Platforms to make bundles for, container side: space-separated platform
# names (built-in, or a <name>.json template in BUNDLEGEN_PLATFORM_SEARCHPATH).
# Default: empty (no bundles). Needs "oci" in IMAGE_FSTYPES.
BUNDLEGEN_PLATFORMS ?= ""

# App metadata file (bundlegen -a), container side. Default: empty (the
# image's /appmetadata.json).
BUNDLEGEN_APPMETADATA ?= ""

# App id (bundlegen -x), container side. Default: empty (the metadata's id).
BUNDLEGEN_APPID ?= ""

# Compression of container-side bundle archives: gzip, zstd or none.
# Default: gzip.
BUNDLEGEN_COMPRESSION ?= "gzip"

# In the signature by content (file-checksums), not by path.
BUNDLEGEN_APPMETADATA[vardepvalue] = "${@'set' if d.getVar('BUNDLEGEN_APPMETADATA') else ''}"

# The image types must be right before image.bbclass's own anonymous python
# looks at IMAGE_FSTYPES, so this check runs on RecipePreFinalise.
python bundlegen_image_types_handler() {
    bundlegen.container.check_image_types(e.data)
}
bundlegen_image_types_handler[doc] = "RecipePreFinalise: checks IMAGE_FSTYPES of container-side images"
addhandler bundlegen_image_types_handler
bundlegen_image_types_handler[eventmask] = "bb.event.RecipePreFinalise"

# The task exists only with BUNDLEGEN_PLATFORMS set: only anonymous python
# can add it, and it fails early with clear messages.
# nooelint: oelint.task.noanonpython
python () {
    bundlegen.container.setup(d)
}

python do_bundlegen_bundles() {
    bundlegen.container.write_bundles(d)
}
do_bundlegen_bundles[doc] = "Writes one bundle archive and report per BUNDLEGEN_PLATFORMS entry into IMGDEPLOYDIR, from one bundlegen call"
do_bundlegen_bundles[cleandirs] = "${BUNDLEGEN_WORKDIR}"
# Exactly the BUNDLEGEN_* values the task reads (tests/yocto checks the list).
do_bundlegen_bundles[vardeps] += "BUNDLEGEN_PLATFORMS BUNDLEGEN_RUNTIME BUNDLEGEN_COMPRESSION \
                                  BUNDLEGEN_APPMETADATA BUNDLEGEN_APPID BUNDLEGEN_LIBMATCHING \
                                  BUNDLEGEN_CREATE_MOUNTPOINTS BUNDLEGEN_STRICT BUNDLEGEN_OPERATOR \
                                  BUNDLEGEN_PLATFORM_SEARCHPATH BUNDLEGEN_EXTRA_ARGS BUNDLEGEN_WORKDIR"
do_bundlegen_bundles[vardepsexclude] = "DATETIME DATE"

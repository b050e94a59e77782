# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for meta-virtualization's image-oci.bbclass: the
# "oci" image type, made with umoci from ${IMAGE_ROOTFS}, with image-oci's
# names: ${IMGDEPLOYDIR}/${IMAGE_NAME}-oci and the stable link
# ${IMAGE_BASENAME}-${OCI_IMAGE_TAG}-oci. OCI_LAYER_MODE = "multi" makes one
# layer per OCI_LAYERS entry "name:directories|files:path+path"; otherwise
# the whole rootfs is one layer. OCI_IMAGE_ARCH sets the config's
# architecture (a test stand-in for the machine's).

# As image-oci does: the oci type builds on "container" (and tar.bz2).
IMAGE_TYPEDEP:oci = "container tar.bz2"

OCI_IMAGE_TAG ?= "latest"
OCI_IMAGE_CMD ?= "/bin/sh"
OCI_IMAGE_ARCH ?= "amd64"
OCI_LAYER_MODE ?= "single"
OCI_LAYERS ?= ""

harness_image_cmd_oci() {
    layout=${IMGDEPLOYDIR}/${IMAGE_NAME}-oci
    image=$layout:${OCI_IMAGE_TAG}
    work=${WORKDIR}/oci-bundle
    rm -rf $layout $work
    umoci init --layout $layout
    umoci new --image $image
    umoci unpack --rootless --image $image $work
    if [ "${OCI_LAYER_MODE}" = "multi" ]; then
        for layer in ${OCI_LAYERS}; do
            paths=$(echo $layer | cut -d: -f3 | tr '+' ' ')
            for path in $paths; do
                mkdir -p $work/rootfs/$(dirname $path)
                cp -a ${IMAGE_ROOTFS}/$path $work/rootfs/$path
            done
            umoci repack --image $image $work
            rm -rf $work
            umoci unpack --rootless --image $image $work
        done
    else
        cp -a ${IMAGE_ROOTFS}/. $work/rootfs/
        umoci repack --image $image $work
    fi
    umoci config --image $image --architecture ${OCI_IMAGE_ARCH} --config.cmd "${OCI_IMAGE_CMD}"
    umoci gc --layout $layout
    ln -sfn ${IMAGE_NAME}-oci ${IMGDEPLOYDIR}/${IMAGE_BASENAME}-${OCI_IMAGE_TAG}-oci
}

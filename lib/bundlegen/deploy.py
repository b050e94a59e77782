# SPDX-License-Identifier: Apache-2.0
"""Names in the deploy directories: image-oci's OCI layouts, which bundles
are made from, and the stable links to what the tasks deploy."""

import os


def oci_link(basename, tag):
    """The name of image-oci's link to an image's OCI layout:
    ${IMAGE_BASENAME}-<tag>-oci, with each ':' of the tag written as '_'
    (file names cannot hold it); the layout's index keeps the tag itself."""
    return "%s-%s-oci" % (basename, tag.replace(":", "_"))


def oci_layout(directory, basename, tag):
    """The OCI layout image-oci wrote for an image, as an image reference,
    or None."""
    layout = os.path.join(directory, oci_link(basename, tag))
    if not os.path.isdir(layout):
        return None
    return "oci:%s:%s" % (os.path.realpath(layout), tag)


def link(d, name, suffix):
    """Points ${IMAGE_LINK_NAME}<suffix> at `name` in ${IMGDEPLOYDIR}, with
    oe-core's oe.path.symlink (image.bbclass's create_symlinks links only
    ${IMAGE_LINK_NAME}.<type> of a do_image_<type> task's [subimages])."""
    import oe.path  # oe-core's lib, imported when its layer.conf has run

    link_name = d.getVar("IMAGE_LINK_NAME")
    if not link_name or link_name + suffix == name:
        return
    oe.path.symlink(name, os.path.join(d.getVar("IMGDEPLOYDIR"), link_name + suffix), force=True)

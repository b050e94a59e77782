# SPDX-License-Identifier: Apache-2.0
#
# TEST HARNESS stand-in for oe-core's image-container.bbclass: masks the
# "container" type (image types that build on it run after it) and, as
# oe-core does, skips a container image that would build a kernel.

IMAGE_TYPES_MASKED += "container"
IMAGE_TYPEDEP:container = "tar.bz2"

python __anonymous() {
    if "container" in d.getVar("IMAGE_FSTYPES") and d.getVar("IMAGE_CONTAINER_NO_DUMMY") != "1" and \
            "linux-dummy" not in (d.getVar("PREFERRED_PROVIDER_virtual/kernel") or ""):
        raise bb.parse.SkipRecipe('"container" is in IMAGE_FSTYPES, but PREFERRED_PROVIDER_virtual/kernel is '
                                  'not "linux-dummy"')
}

# SPDX-License-Identifier: Apache-2.0
#
# bundlegen_host.bbclass: the host side of bundlegen.bbclass. A device image
# with BUNDLEGEN_CONTAINERS set gets the bundles of those container images
# in ${IMAGE_ROOTFS}${BUNDLEGEN_INSTALL_DIR}, made for the device's own
# library inventory, each app with its own account (oe-core's extrausers,
# EXTRA_USERS_PARAMS) and, when autostarted, a systemd unit; all from
# ROOTFS_POSTPROCESS_COMMAND, so in do_rootfs. Inherit bundlegen;
# docs/yocto.md has the details.
#
#     inherit core-image bundlegen
#     BUNDLEGEN_CONTAINERS = "my-app-container:crun:autostart other:dobby"

inherit bundlegen_common

# Container images to bundle into this (host) image: space-separated
# entries "recipe[:option...]". Options, in any order:
#   dobby | crun | runc        runtime (default: BUNDLEGEN_RUNTIME)
#   autostart | always | unless-stopped | on-failure
#                              start at boot with that restart policy
#                              (default: installed, not started)
#   platform=NAME              platform for this bundle (default: the device's)
#   appid=ID                   app id, bundle directory and unit name
#                              (default: the recipe name)
#   uid=N                      uid and gid the app runs as
#                              (default: BUNDLEGEN_UID_BASE + position - 1)
#   tag=TAG                    OCI image tag (default: latest)
# Default: empty.
BUNDLEGEN_CONTAINERS ?= ""

# Host side: platform the device's bundles are made for, by name. Default:
# empty, which generates the platform from ${IMAGE_ROOTFS} itself.
BUNDLEGEN_PLATFORM ?= ""

# Host side: where bundles go in the device rootfs, one directory per app.
# Dobby rewrites config.json at start, so it must be writable.
# Default: ${localstatedir}/lib/bundlegen.
BUNDLEGEN_INSTALL_DIR ?= "${localstatedir}/lib/bundlegen"

# Host side: first uid/gid given to apps; the Nth entry of
# BUNDLEGEN_CONTAINERS runs as BUNDLEGEN_UID_BASE + N - 1 unless it says
# uid=. Default: 30000.
BUNDLEGEN_UID_BASE ?= "30000"

# Host side: package that provides each runtime, added to IMAGE_INSTALL when
# a container uses it: space-separated runtime:package pairs.
# Default: "dobby:dobby crun:crun runc:runc-opencontainers".
BUNDLEGEN_RUNTIME_PACKAGES ?= "dobby:dobby crun:crun runc:runc-opencontainers"

# The apps' accounts: oe-core's extrausers adds set_user_group to
# ROOTFS_POSTPROCESS_COMMAND, which runs the groupadd and useradd commands
# the anonymous python below appends to EXTRA_USERS_PARAMS.
inherit_defer ${@'extrausers' if (d.getVar('BUNDLEGEN_CONTAINERS') or '').split() else ''}

# The dependencies depend on the entries: only anonymous python can add
# them, and it fails early with clear messages.
# nooelint: oelint.task.noanonpython
python () {
    bundlegen.host.setup(d)
}

python bundlegen_check_accounts() {
    bundlegen.host.check_accounts(d)
}
bundlegen_check_accounts[doc] = "ROOTFS_POSTPROCESS_COMMAND: fails when an app's uid/gid belongs to another account"
bundlegen_check_accounts[vardeps] += "BUNDLEGEN_CONTAINERS BUNDLEGEN_RUNTIME BUNDLEGEN_UID_BASE"

python bundlegen_install_containers() {
    bundlegen.host.install_containers(d)
}
bundlegen_install_containers[doc] = "ROOTFS_POSTPROCESS_COMMAND: installs the BUNDLEGEN_CONTAINERS bundles and units"
# Exactly the BUNDLEGEN_* values it reads (tests/yocto checks the list).
bundlegen_install_containers[vardeps] += "BUNDLEGEN_CONTAINERS BUNDLEGEN_RUNTIME BUNDLEGEN_UID_BASE \
                                          BUNDLEGEN_PLATFORM BUNDLEGEN_PLATFORM_NAME BUNDLEGEN_PLATFORM_TEMPLATE \
                                          BUNDLEGEN_INSTALL_DIR BUNDLEGEN_LIBMATCHING BUNDLEGEN_CREATE_MOUNTPOINTS \
                                          BUNDLEGEN_STRICT BUNDLEGEN_OPERATOR BUNDLEGEN_PLATFORM_SEARCHPATH \
                                          BUNDLEGEN_EXTRA_ARGS BUNDLEGEN_WORKDIR"
bundlegen_install_containers[vardepsexclude] = "DATETIME DATE"

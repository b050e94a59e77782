# SPDX-License-Identifier: Apache-2.0
#
# bundlegen_common.bbclass: the variables and lists every role of
# bundlegen.bbclass reads (the container, host and BSP classes inherit it).
# Not meant to be inherited on its own: inherit bundlegen.

# Runtime the bundles are made for: dobby, crun or runc (crun and runc get
# plain OCI bundles, bundlegen -u). Default: dobby.
BUNDLEGEN_RUNTIME ?= "dobby"

# Directories searched, recursively, for platform templates <name>.json and
# inventories <name>_libs.json: space-separated absolute paths.
# Default: empty (built-in platforms and generated ones only).
BUNDLEGEN_PLATFORM_SEARCHPATH ?= ""

# Name of the platform generated from the rootfs (host and BSP side): file
# names <name>.json and <name>_libs.json and platformName. Default: ${MACHINE}.
BUNDLEGEN_PLATFORM_NAME ?= "${MACHINE}"

# Template (name or absolute path) whose device fields (GPU, hardware,
# storage, ...) the generated platform keeps; a machine configuration sets
# it. Default: empty (bundlegen's defaults for the architecture).
BUNDLEGEN_PLATFORM_TEMPLATE ??= ""

# Operator policy file (bundlegen --operator). Default: empty (none).
BUNDLEGEN_OPERATOR ?= ""

# Library matching mode: normal, image or host (bundlegen -m).
# Default: normal.
BUNDLEGEN_LIBMATCHING ?= "normal"

# "1" creates every mount point in the bundle rootfs (bundlegen -r), needed
# when the device rootfs is read-only. Default: "1" with the
# read-only-rootfs image feature, else "0".
BUNDLEGEN_CREATE_MOUNTPOINTS ?= "${@bb.utils.contains('IMAGE_FEATURES', 'read-only-rootfs', '1', '0', d)}"

# "1" makes unknown keys in platform templates and metadata errors
# (bundlegen --strict). Default: "1".
BUNDLEGEN_STRICT ?= "1"

# Extra arguments for every bundlegen generate call. Default: empty.
BUNDLEGEN_EXTRA_ARGS ?= ""

BUNDLEGEN_RUNTIMES = "dobby crun runc"
BUNDLEGEN_POLICIES = "autostart always unless-stopped on-failure"
BUNDLEGEN_COMPRESSIONS = "gzip zstd none"
BUNDLEGEN_LIBMATCHING_MODES = "normal image host"
# Platforms bundlegen carries itself (`bundlegen platform list`); a test
# keeps this list in step with the tool.
BUNDLEGEN_BUILTIN_PLATFORMS = "qemuarm64 qemux86-64"

BUNDLEGEN_WORKDIR = "${WORKDIR}/bundlegen"

# The files these name are in the signatures by content and relative name
# (file-checksums), not by where the layer or build directory happens to be,
# so builders with other paths share sstate and hash equivalence.
BUNDLEGEN_PLATFORM_SEARCHPATH[vardepvalue] = "${@'dirs:%d' % len((d.getVar('BUNDLEGEN_PLATFORM_SEARCHPATH') or '').split())}"
BUNDLEGEN_OPERATOR[vardepvalue] = "${@'set' if d.getVar('BUNDLEGEN_OPERATOR') else ''}"

# SPDX-License-Identifier: Apache-2.0
# TEST HARNESS stand-in for oe-core's lib/oe: only what bundlegen's lib uses.
BBIMPORTS = ["path"]

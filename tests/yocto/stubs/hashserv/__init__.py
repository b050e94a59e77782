# SPDX-License-Identifier: Apache-2.0
"""TEST HARNESS stand-in for bitbake's hashserv package.

The bitbake-setup wheel carries bitbake's bb library but not the hash
equivalence server that bb.siggen and bb.cooker import. The harness runs no
server: local unihashes equal taskhashes, which is what bitbake does
without BB_HASHSERVE. Only the names bb imports exist here.
"""

import re

_UNIHASH = re.compile(r"^[0-9a-f]{64}$")


def is_valid_unihash(unihash):
    return bool(_UNIHASH.match(unihash or ""))


def create_client(*args, **kwargs):
    raise RuntimeError("the test harness has no hash equivalence server (BB_HASHSERVE must be unset)")


def create_server(*args, **kwargs):
    raise RuntimeError("the test harness has no hash equivalence server (BB_HASHSERVE must be unset)")

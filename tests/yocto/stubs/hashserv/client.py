# SPDX-License-Identifier: Apache-2.0
"""TEST HARNESS stand-in for hashserv.client (imported by bb.siggen only)."""

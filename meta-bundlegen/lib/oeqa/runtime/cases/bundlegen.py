# SPDX-License-Identifier: Apache-2.0
"""Runtime test for bundlegen-demo-host (bitbake -c testimage): the demo
bundle's systemd unit runs the app in a crun container."""

import time

from oeqa.core.decorator.depends import OETestDepends
from oeqa.runtime.case import OERuntimeTestCase

UNIT = "bundlegen-demo.service"


class BundlegenDemoTest(OERuntimeTestCase):

    @OETestDepends(["ssh.SSHTest.test_ssh"])
    def test_bundle_service_runs(self):
        for _ in range(30):
            status, output = self.target.run("systemctl is-active %s" % UNIT)
            if output.strip() == "active":
                break
            time.sleep(2)
        self.assertEqual(output.strip(), "active", msg=self.target.run("systemctl status %s" % UNIT)[1])

        status, output = self.target.run("crun list")
        self.assertEqual(status, 0, msg=output)
        self.assertIn("demo", output)

        status, output = self.target.run("journalctl --no-pager -u %s" % UNIT)
        self.assertIn("hello from bundlegen-demo (uid 30000)", output)

    @OETestDepends(["bundlegen.BundlegenDemoTest.test_bundle_service_runs"])
    def test_bundle_is_installed_with_its_own_user(self):
        status, output = self.target.run("cat /var/lib/bundlegen/demo/config.json")
        self.assertEqual(status, 0, msg=output)
        self.assertIn('"uid": 30000', output.replace('"uid":30000', '"uid": 30000'))
        status, output = self.target.run("grep app-demo /etc/passwd")
        self.assertEqual(status, 0, msg=output)

/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The bundlegen demo app: says hello, then prints a heartbeat every ten
 * seconds until it is told to stop. The runtime test looks for its lines in
 * the journal of the unit that bundlegen.bbclass installed.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

int main(void)
{
	unsigned long beat = 0;

	signal(SIGTERM, on_signal);
	signal(SIGINT, on_signal);
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("hello from bundlegen-demo (uid %u)\n", (unsigned)getuid());
	while (!stop) {
		sleep(10);
		printf("bundlegen-demo heartbeat %lu\n", ++beat);
	}
	printf("bundlegen-demo stopping\n");
	return 0;
}

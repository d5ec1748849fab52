package main

import "gw/lib/program"

func proxy(c *config) error {
	return program.Fail(program.ExitPermanent, "proxy: not yet")
}

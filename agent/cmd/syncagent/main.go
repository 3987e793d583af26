// Command syncagent is the clinic box's sync agent and, with sync_id = 1, the
// primary server. See `syncagent --help`.
package main

import (
	"os"

	"syncagent/agent/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

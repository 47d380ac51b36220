// What prometheus/common's expfmt answers to an Accept header: for each line
// of stdin (one Accept field value), the Content-Type that
// expfmt.NegotiateIncludingOpenMetrics returns, on a line of its own.
//
// Built offline by tests/negotiation.rs against Debian's
// golang-github-prometheus-common-dev (prometheus/common 0.39):
// GO111MODULE=off GOPATH=/usr/share/gocode go build.
package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"

	"github.com/prometheus/common/expfmt"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 0, 1<<16), 1<<16)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		h := http.Header{}
		h.Set("Accept", in.Text())
		fmt.Fprintln(out, expfmt.NegotiateIncludingOpenMetrics(h))
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

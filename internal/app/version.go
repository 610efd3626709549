package app

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"runtime/debug"

	millrace "github.com/millrace/millrace"
)

// version is set at build time with -ldflags "-X main.version=v1.2.3".
var version = ""

func printVersion(w io.Writer) {
	v := version
	if v == "" {
		v = "dev"
		if bi, ok := debug.ReadBuildInfo(); ok {
			if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v += "+" + s.Value[:12]
				}
			}
		}
	}
	sum := sha256.Sum256(millrace.ContractBaseline)
	fmt.Fprintf(w, "millrace %s\ncontracts: millrace.*.v1, baseline sha256 %s\n", v, hex.EncodeToString(sum[:]))
}

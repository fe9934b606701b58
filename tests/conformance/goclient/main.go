// A fixed sequence of calls through Toxiproxy's official Go client package, printed
// one line each, for tests/compat to run against the real server and the engine and
// diff. Usage: goclient <api-url> <upstream-address>
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	toxiproxy "github.com/Shopify/toxiproxy/v2/client"
)

func show(step string, value interface{}, err error) {
	if err != nil {
		fmt.Printf("%s: error: %v\n", step, err)
		return
	}
	out, _ := json.Marshal(value)
	fmt.Printf("%s: %s\n", step, out)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: goclient <api-url> <upstream-address>")
		os.Exit(2)
	}
	client := toxiproxy.NewClient(os.Args[1])
	upstream := os.Args[2]

	version, err := client.Version()
	show("version", string(version), err)

	proxy, err := client.CreateProxy("compat_b", "127.0.0.1:0", upstream)
	show("create compat_b", proxy, err)
	_, err = client.CreateProxy("compat_a", "127.0.0.1:0", upstream)
	show("create compat_a", nil, err)
	_, err = client.CreateProxy("compat_a", "127.0.0.1:0", upstream)
	show("create compat_a again", nil, err)

	proxies, err := client.Proxies()
	names := []string{}
	for name := range proxies {
		names = append(names, name)
	}
	sort.Strings(names)
	show("proxies", names, err)

	got, err := client.Proxy("compat_b")
	show("proxy compat_b", got, err)
	_, err = client.Proxy("nope")
	show("proxy nope", nil, err)

	if got != nil {
		toxic, err := got.AddToxic("lag", "latency", "downstream", 1, toxiproxy.Attributes{"latency": 100, "jitter": 5})
		show("add lag", toxic, err)
		toxic, err = got.AddToxic("", "bandwidth", "upstream", 0.5, toxiproxy.Attributes{"rate": 10})
		show("add bandwidth", toxic, err)
		toxic, err = got.AddToxic("lag", "latency", "downstream", 1, nil)
		show("add lag again", toxic, err)
		toxic, err = got.AddToxic("odd", "nope", "downstream", 1, nil)
		show("add unknown type", toxic, err)
		toxic, err = got.AddToxic("sideways", "latency", "sideways", 1, nil)
		show("add bad stream", toxic, err)
		toxic, err = got.UpdateToxic("lag", 0.25, toxiproxy.Attributes{"jitter": 7})
		show("update lag", toxic, err)
		toxic, err = got.UpdateToxic("nope", 0.25, nil)
		show("update nope", toxic, err)
		toxics, err := got.Toxics()
		show("toxics", toxics, err)
		show("remove bandwidth_upstream", nil, got.RemoveToxic("bandwidth_upstream"))
		show("remove nope", nil, got.RemoveToxic("nope"))
		show("disable", nil, got.Disable())
		again, err := client.Proxy("compat_b")
		show("disabled compat_b", again, err)
		show("enable", nil, got.Enable())
		got.Upstream = "127.0.0.1:1"
		show("save upstream", nil, got.Save())
	}

	populated, err := client.Populate([]toxiproxy.Proxy{
		{Name: "compat_c", Listen: "127.0.0.1:0", Upstream: upstream, Enabled: true},
	})
	show("populate", populated, err)
	_, err = client.Populate([]toxiproxy.Proxy{{Name: "", Upstream: upstream}})
	show("populate without a name", nil, err)

	show("reset", nil, client.ResetState())
	after, err := client.Proxy("compat_b")
	show("after reset compat_b", after, err)

	for _, name := range []string{"compat_a", "compat_b", "compat_c"} {
		if p, err := client.Proxy(name); err == nil {
			show("delete "+name, nil, p.Delete())
		}
	}
	_, err = client.Proxy("compat_a")
	show("deleted compat_a", nil, err)
}

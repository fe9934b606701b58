"""HTTP services on real clients: client -> tap -> Toxiproxy -> HTTP layer -> stub or upstream."""

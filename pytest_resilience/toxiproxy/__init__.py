"""Control plane: one client adapter, three ways to get a Toxiproxy API."""

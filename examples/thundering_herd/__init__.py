"""A herd of workers that an outage failed together: with jitter they come back apart."""

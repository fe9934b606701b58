"""Services the code under test talks to, each behind Toxiproxy."""

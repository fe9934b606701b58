"""What a run reports: per-test records (JSON-able), the terminal summary, the JSON file."""

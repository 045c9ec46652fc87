"""The model room: configs, suites, seeded cases, shards, hashes and the environment fingerprint."""

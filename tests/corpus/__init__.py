"""The corruption corpus (cases.toml) and the tools that plant its inputs."""

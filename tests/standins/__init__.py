"""Stand-ins for services that cannot run here, speaking their real HTTP API on 127.0.0.1."""

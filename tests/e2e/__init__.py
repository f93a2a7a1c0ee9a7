"""The whole system end to end: a browser, the real hub, proxy, database and images, on one machine."""

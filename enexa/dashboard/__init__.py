"""The operator dashboard under /app/: the fleet and each site, server-rendered, live via htmx."""

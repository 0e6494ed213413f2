"""Serving: the BentoML service, its build script and the command that serves a built bento."""

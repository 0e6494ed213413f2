"""Watching production: drift of captured traffic, live accuracy from late labels, shadow evidence."""

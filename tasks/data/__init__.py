"""Data stage: read and sniff files, infer the spec, validate (GX), drift, the data report."""

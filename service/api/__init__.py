"""HTTP only: parse, call below, answer."""

"""The rule language: loading, validation with file:line, matchers and templates; no I/O."""

"""The pure pipeline that runs events through rules, and the injectable clock."""

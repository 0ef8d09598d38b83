"""One package per unlearning method (registry.register(..., module="methods.<name>")): each imports only
core and itself."""

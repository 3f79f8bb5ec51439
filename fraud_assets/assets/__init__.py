"""Software-defined assets, one module per business area."""

"""A plugin module that cannot be imported: the registry must warn and carry on."""

raise ImportError("steadycast_chaos_models.broken needs a library that is not installed")

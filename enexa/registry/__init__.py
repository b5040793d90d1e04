"""Asset registry: sites, their members, controllers and equipment with specifications."""

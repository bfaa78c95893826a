"""Neural-network building blocks and the YAML model builder."""

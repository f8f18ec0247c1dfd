"""Weight-free adapters shipped with the engine: bounds, oracles, replay and the shapes reasoner."""

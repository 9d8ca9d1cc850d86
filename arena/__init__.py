"""The private arena: votes and their ratings (pure logic; stores/ holds the I/O)."""

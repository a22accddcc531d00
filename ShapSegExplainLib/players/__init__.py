"""Players: the anatomy map, the FCC lattice, connected pieces, and the organ / fcc / hybrid / slic player maps with their summaries (no torch)."""

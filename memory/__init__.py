"""Long-term memory: local sentence embeddings and the vector memory port."""

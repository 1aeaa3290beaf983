"""Everything remembered: the unified profile store (profiles, conversations, decisions, CRM,
handoffs, jobs, the outbox; SQL behind one ``Store`` facade), its schema and migrations, the
LangGraph checkpointer, and the vector memory with its embeddings. The only package that talks
to a database."""

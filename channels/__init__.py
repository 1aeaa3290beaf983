"""Channel adapters behind one port: the outbox relay hands each a :class:`Delivery`."""

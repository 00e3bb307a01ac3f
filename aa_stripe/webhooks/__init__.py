"""The webhook endpoint (``view``) and the built-in event handlers (``handlers``)."""

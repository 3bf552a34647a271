"""Browser viewers: HTTP-FLV and WebSocket-FLV on the ``[flv]`` listener."""

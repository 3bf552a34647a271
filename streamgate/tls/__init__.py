"""TLS that says why it failed: the certificate reader (``x509``) and the one
diagnosis of TLS failures (``diagnosis``) the probe, the RTMPS listener and
the edge's ``rtmps://`` links share."""

"""The built-in page's files: package data, no code.

:mod:`streamgate.api.page` serves them (``GET /`` and ``GET /static/...`` on
the ``[http]`` listener). ``pages/`` holds the two HTML shells (the page, and
the 401 answer's token form), ``static/`` the script, the style and the
vendored mpegts.js (``static/vendor/mpegts/README.md``). Nothing here holds
state: what the page shows it fetches from ``/api/v1/*``.
"""
